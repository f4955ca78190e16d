import numpy as np
import pytest

from oacl.geometry import background_rect, largest_rectangle


def _bruteforce_area(zeros):
    """Area of the largest all-True rectangle, checking every rectangle."""
    z = zeros.astype(np.int64)
    h, w = z.shape
    s = np.zeros((h + 1, w + 1), np.int64)
    s[1:, 1:] = z.cumsum(0).cumsum(1)
    best = 0
    for y1 in range(h):
        for y2 in range(y1 + 1, h + 1):
            for x1 in range(w):
                for x2 in range(x1 + 1, w + 1):
                    a = (y2 - y1) * (x2 - x1)
                    if a > best and s[y2, x2] - s[y1, x2] - s[y2, x1] + s[y1, x1] == a:
                        best = a
    return best


@pytest.mark.parametrize("seed", range(40))
def test_matches_bruteforce_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 10, size=2)
    zeros = rng.random((h, w)) < rng.uniform(0.3, 0.95)
    x1, y1, x2, y2 = largest_rectangle(zeros)
    area = (x2 - x1) * (y2 - y1)
    assert area == _bruteforce_area(zeros)
    if area:
        assert zeros[y1:y2, x1:x2].all()


def test_known_rectangle_and_ties_deterministic():
    z = np.zeros((6, 8), bool)
    z[1:4, 2:7] = True  # 3x5 = 15
    z[5, :] = True  # 1x8 = 8
    assert largest_rectangle(z) == (2, 1, 7, 4)
    t = np.zeros((5, 5), bool)
    t[0:2, 0:2] = True
    t[3:5, 3:5] = True  # two 2x2 ties: the one with the smaller bottom edge
    assert largest_rectangle(t) == (0, 0, 2, 2)
    assert largest_rectangle(t) == largest_rectangle(t.copy())


def test_no_zeros_and_all_zeros():
    assert largest_rectangle(np.zeros((4, 4), bool)) == (0, 0, 0, 0)
    assert largest_rectangle(np.ones((4, 7), bool)) == (0, 0, 7, 4)


def test_background_rect_empty_full_and_normalised():
    rect, empty, full = background_rect(np.zeros((10, 20), np.float32))
    assert rect == [0.0, 0.0, 1.0, 1.0] and empty and not full
    rect, empty, full = background_rect(np.ones((10, 20), np.float32))
    assert rect == [0.0, 0.0, 0.0, 0.0] and full and not empty
    soft = np.zeros((10, 20), np.float32)
    soft[:, 15:] = 0.3  # >= 0.2 is object: background is the left 15 columns
    soft[:, 12] = 0.19  # below threshold: still background
    rect, empty, full = background_rect(soft, 0.2)
    assert rect == pytest.approx([0.0, 0.0, 0.75, 1.0]) and not empty and not full
