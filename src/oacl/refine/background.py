"""The background patch for background mixup: the largest rectangle of zeros.

The paper takes "the largest rectangle in the zeros of the binarized CAM mask"
(threshold 0.2). ``largest_rectangle`` is the exact maximal-rectangle dynamic
programme: row by row it keeps, for every column, the height of the run of zeros
ending at this row and how far a rectangle of that height extends left and right.
The largest such rectangle over all cells is the largest rectangle of zeros. Each row
is a few vectorised numpy operations, O(H*W) in total.
"""

from __future__ import annotations

import numpy as np


def largest_rectangle(zero_mask: np.ndarray) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle whose pixels are all True in ``zero_mask``.

    Returns pixel coordinates (x1, y1, x2, y2), x2/y2 exclusive; (0, 0, 0, 0) when there
    is no True pixel. Ties (equal area) are broken deterministically: the rectangle
    with the smallest bottom edge y2 wins, then the one found at the smallest column.
    """
    zeros = np.asarray(zero_mask, dtype=bool)
    h, w = zeros.shape
    cols = np.arange(w)
    height = np.zeros(w, dtype=np.int64)
    left = np.zeros(w, dtype=np.int64)  # first column of the rectangle (inclusive)
    right = np.full(w, w, dtype=np.int64)  # last column (exclusive)
    best_area, best = 0, (0, 0, 0, 0)
    for y in range(h):
        row = zeros[y]
        height = np.where(row, height + 1, 0)
        # nearest blocked column to the left / right of each column in this row
        cur_left = np.maximum.accumulate(np.where(row, 0, cols + 1))
        cur_right = np.minimum.accumulate(np.where(row, w, cols)[::-1])[::-1]
        left = np.where(row, np.maximum(left, cur_left), 0)
        right = np.where(row, np.minimum(right, cur_right), w)
        area = (right - left) * height
        j = int(area.argmax())  # first column on ties
        if area[j] > best_area:  # strict: earlier rows win ties
            best_area = int(area[j])
            best = (int(left[j]), y + 1 - int(height[j]), int(right[j]), y + 1)
    return best


def background_rect(soft_mask: np.ndarray, bg_threshold: float = 0.2) -> tuple[list[float], bool, bool]:
    """Normalised background rectangle [x1, y1, x2, y2] of a soft mask in [0, 1].

    Pixels with ``soft_mask < bg_threshold`` are background ("zeros"). Returns
    (rect, empty, full): ``empty`` when every pixel is background (rect = [0, 0, 1, 1]);
    ``full`` when no pixel is (rect = [0, 0, 0, 0], zero area: consumers must treat it
    as "no background patch").
    """
    h, w = soft_mask.shape
    zeros = np.asarray(soft_mask) < bg_threshold
    if zeros.all():
        return [0.0, 0.0, 1.0, 1.0], True, False
    if not zeros.any():
        return [0.0, 0.0, 0.0, 0.0], False, True
    x1, y1, x2, y2 = largest_rectangle(zeros)
    return [x1 / w, y1 / h, x2 / w, y2 / h], False, False
