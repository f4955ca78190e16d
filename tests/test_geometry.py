"""oacl.geometry: the shared resize, box and mask rules, checked against the formulas the
stages used before they shared them (their results must not change)."""

import math

import cv2
import numpy as np
import pytest

from oacl import geometry as G
from oacl.io import encode_png


def test_oa_crop_boxes_filter_and_margin():
    # 0.5 x 0.25 box gets 20% of its width left/right and of its height top/bottom
    out = G.oa_crop_boxes([[0.2, 0.4, 0.7, 0.65], [0.0, 0.0, 0.05, 0.1], [0.9, 0.9, 0.99, 0.99]])
    assert len(out) == 1  # areas 0.005 and 0.0081 are under 1%: dropped
    np.testing.assert_allclose(out[0], [0.1, 0.35, 0.8, 0.7], atol=1e-9)
    # clipped to the image
    np.testing.assert_allclose(G.oa_crop_boxes([[0.0, 0.0, 1.0, 1.0]])[0], [0, 0, 1, 1])


def test_expand_box_equals_the_former_copies():
    rng = np.random.default_rng(0)
    for _ in range(500):
        x1, y1 = rng.random(2) * 0.9
        x2, y2 = x1 + rng.random() * (1 - x1), y1 + rng.random() * (1 - y1)
        m = float(rng.choice([0.0, 0.1, 0.2, 0.35]))
        # readers.expand_box (normalised)
        dx, dy = (x2 - x1) * m, (y2 - y1) * m
        assert G.expand_box([x1, y1, x2, y2], m) == [
            max(x1 - dx, 0.0),
            max(y1 - dy, 0.0),
            min(x2 + dx, 1.0),
            min(y2 + dy, 1.0),
        ]
        # train.data.gt_crop_boxes (normalised, 1% filter)
        w, h = x2 - x1, y2 - y1
        old = (
            []
            if w * h < 0.01
            else [
                [
                    max(0.0, x1 - m * w),
                    max(0.0, y1 - m * h),
                    min(1.0, x2 + m * w),
                    min(1.0, y2 + m * h),
                ]
            ]
        )
        assert G.oa_crop_boxes([[x1, y1, x2, y2]], 0.01, m) == old
        # refine.boxes.expand_box (pixels -> normalised)
        H, W = (int(v) for v in rng.integers(8, 300, 2))
        px = sorted(int(v) for v in rng.integers(0, W + 1, 2))
        py = sorted(int(v) for v in rng.integers(0, H + 1, 2))
        b = (px[0], py[0], px[1], py[1])
        bw, bh = b[2] - b[0], b[3] - b[1]
        old = [
            max(0.0, b[0] - m * bw) / W,
            max(0.0, b[1] - m * bh) / H,
            min(float(W), b[2] + m * bw) / W,
            min(float(H), b[3] + m * bh) / H,
        ]
        e = G.expand_box(b, m, W, H)
        assert [e[0] / W, e[1] / H, e[2] / W, e[3] / H] == old


def test_crop_windows_equal_the_former_copies():
    rng = np.random.default_rng(1)
    for _ in range(500):
        W, H = (int(v) for v in rng.integers(20, 700, 2))
        x, y = rng.random() * W * 0.9, rng.random() * H * 0.9
        bw, bh = rng.random() * (W - x) + 0.5, rng.random() * (H - y) + 0.5
        m = float(rng.choice([0.0, 0.2, 0.33]))
        # coco._add_crops (xywh, floored / ceiled)
        mx, my = bw * m, bh * m
        old = (
            int(max(np.floor(x - mx), 0)),
            int(max(np.floor(y - my), 0)),
            int(min(np.ceil(x + bw + mx), W)),
            int(min(np.ceil(y + bh + my), H)),
        )
        assert G.crop_window([x, y, bw, bh], m, W, H, xywh=True) == old
        # coco.paper_crop_box (xywh, rounded)
        old = (
            max(0.0, x - bw * m),
            max(0.0, y - bh * m),
            min(float(W), x + bw + bw * m),
            min(float(H), y + bh + bh * m),
        )
        assert G.expand_box([x, y, bw, bh], m, W, H, xywh=True) == list(old)
        # scenes.write._write_crops (inclusive pixel bounds)
        s = W
        x0, y0 = (int(v) for v in rng.integers(0, s, 2))
        x1, y1 = int(rng.integers(x0, s)), int(rng.integers(y0, s))
        mx, my = m * (x1 - x0 + 1), m * (y1 - y0 + 1)
        old = (
            max(0, math.floor(x0 - mx)),
            max(0, math.floor(y0 - my)),
            min(s, math.ceil(x1 + 1 + mx)),
            min(s, math.ceil(y1 + 1 + my)),
        )
        assert G.crop_window((x0, y0, x1 + 1, y1 + 1), m, s, s) == old


def test_filter_boxes_pixels_and_normalised():
    boxes = [(0, 0, 10, 10), (0, 0, 9, 11), (5, 5, 6, 6)]
    assert G.filter_boxes(boxes, 0.01, 100, 100) == [(0, 0, 10, 10)]  # 1% inclusive
    assert G.filter_boxes([[0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.05, 0.1]], 0.01) == [
        [0.0, 0.0, 0.1, 0.1]
    ]


def test_mask_box_pixels_and_normalised():
    """One mask_box for the scenes (inclusive pixel bounds) and the readers (normalised,
    as their former copies computed it)."""
    mask = np.zeros((40, 30), np.uint8)
    mask[5:20, 3:12] = 255
    assert G.mask_box(mask) == [3, 5, 11, 19]
    ys, xs = np.nonzero(mask)
    old = [float(xs.min() / 30), float(ys.min() / 40), float((xs.max() + 1) / 30),
           float((ys.max() + 1) / 40)]  # fmt: skip
    assert G.mask_box(mask > 0, normalised=True) == old == [0.1, 0.125, 0.4, 0.5]
    assert G.mask_box(np.zeros((4, 4), bool)) is None
    assert G.mask_box(np.zeros((4, 4), bool), normalised=True) is None


def test_resize_rules():
    rng = np.random.default_rng(2)
    a = (rng.random((40, 90, 3)) * 255).astype(np.uint8)
    assert G.resize(a, (40, 90), "shrink_any") is a  # same size: the array itself
    # one side shrinks, the other grows: the two shrink rules differ
    any_ = G.resize(a, (64, 64), "shrink_any")
    assert np.array_equal(any_, cv2.resize(a, (64, 64), interpolation=cv2.INTER_AREA))
    all_ = G.resize(a, (64, 64), "shrink_all")
    assert np.array_equal(all_, cv2.resize(a, (64, 64), interpolation=cv2.INTER_LINEAR))
    # both shrink: area for both rules
    for rule in ("shrink_any", "shrink_all", "area"):
        assert np.array_equal(
            G.resize(a, (20, 45), rule), cv2.resize(a, (45, 20), interpolation=cv2.INTER_AREA)
        )
    m = (rng.random((10, 10)) > 0.5).astype(np.uint8)
    assert set(np.unique(G.resize(m, (33, 17), "nearest"))) <= {0, 1}
    with pytest.raises(KeyError):
        G.resize(a, (5, 5), "cubic")


def test_decode_mask_grey_and_colour():
    m = np.array([[0, 51, 255]], np.uint8)
    out = G.decode_mask(encode_png(m))
    assert out.dtype == np.float32 and out.shape == (1, 3)
    np.testing.assert_array_equal(out, m.astype(np.float32) / 255.0)
    rgb = np.repeat(m[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(G.decode_mask(encode_png(rgb)), out)
