import numpy as np
import pytest

from oacl.geometry import binarize, clean_components, contour_boxes, expand_box, mask_to_boxes


def test_two_blobs_give_two_boxes():
    m = np.zeros((100, 100), np.uint8)
    m[10:30, 10:40] = 1
    m[60:90, 50:95] = 1
    boxes = mask_to_boxes(m, min_box_area=0.01, margin=0.0)
    assert boxes == [[0.10, 0.10, 0.40, 0.30], [0.50, 0.60, 0.95, 0.90]]


def test_small_blob_dropped_by_area_filter():
    m = np.zeros((100, 100), np.uint8)
    m[10:30, 10:40] = 1  # 6% of the image
    m[70:79, 70:79] = 1  # 81 px = 0.81% < 1%
    assert len(mask_to_boxes(m, min_box_area=0.01, margin=0.0)) == 1
    m[70:80, 70:80] = 1  # exactly 1%: kept
    assert len(mask_to_boxes(m, min_box_area=0.01, margin=0.0)) == 2


def test_margin_math_exact():
    # box 20 wide, 10 high at (30, 40): each side grows by 0.2*w in x, 0.2*h in y
    assert expand_box((30, 40, 50, 50), 0.2, 200, 100) == pytest.approx(
        [30 - 4, 40 - 2, 50 + 4, 50 + 2]
    )
    # clipped at the image border
    assert expand_box((0, 0, 10, 100), 0.2, 100, 100) == pytest.approx([0.0, 0.0, 12.0, 100.0])
    # normalised boxes (the defaults) clip to [0, 1]
    assert expand_box((0.0, 0.5, 0.1, 1.0), 0.2) == pytest.approx([0.0, 0.4, 0.12, 1.0])


def test_normalised_to_original_for_non_square():
    h, w = 60, 150
    m = np.zeros((h, w), np.uint8)
    m[15:45, 30:90] = 1
    (box,) = mask_to_boxes(m, margin=0.0)
    assert box == pytest.approx([30 / 150, 15 / 60, 90 / 150, 45 / 60])
    (box,) = mask_to_boxes(m, margin=0.1)
    assert box == pytest.approx([24 / 150, 12 / 60, 96 / 150, 48 / 60])


def test_empty_mask_no_boxes_and_largest_only():
    assert mask_to_boxes(np.zeros((50, 50), np.uint8)) == []
    assert mask_to_boxes(np.zeros((50, 50), np.uint8), largest_only=True) == []
    m = np.zeros((100, 100), np.uint8)
    m[10:20, 10:20] = 1
    m[50:90, 50:90] = 1
    assert mask_to_boxes(m, margin=0.0, largest_only=True) == [[0.5, 0.5, 0.9, 0.9]]


def test_clean_components_and_hole_not_a_box():
    m = np.zeros((100, 100), np.uint8)
    m[10:50, 10:50] = 1
    m[20:30, 20:30] = 0  # a hole: RETR_EXTERNAL gives no inner box
    m[80, 80] = 1  # 1 px noise < 0.1%
    cleaned = clean_components(m, 0.001)
    assert cleaned[80, 80] == 0 and cleaned[10:50, 10:50].sum() == m[10:50, 10:50].sum()
    assert contour_boxes(cleaned) == [(10, 10, 50, 50)]
    assert np.array_equal(clean_components(m, 0.0), m)


def test_binarize_threshold_inclusive():
    assert binarize(np.array([[0.49, 0.5, 0.9]]), 0.5).tolist() == [[0, 1, 1]]
