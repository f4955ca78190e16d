"""The background patch for background mixup: the largest rectangle of zeros.

The paper takes "the largest rectangle in the zeros of the binarized CAM mask"
(threshold 0.2). ``largest_rectangle`` is the exact maximal-rectangle dynamic
programme: for every cell it takes the height of the run of zeros ending there and
extends a rectangle of that height as far left and right as the run allows; the
largest of these over all cells is the largest rectangle of zeros. The row-by-row
recurrences (running max/min of the left/right limits within each vertical run) are
computed for all rows at once with accumulate tricks, so it is O(H*W) numpy work with
no Python loop.
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
    if not zeros.any():
        return (0, 0, 0, 0)
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    blocked = ~zeros
    # height of the run of zeros ending at each cell (0 on blocked cells)
    last_blocked = np.maximum.accumulate(np.where(blocked, rows, -1), axis=0)
    height = np.where(zeros, rows - last_blocked, 0)
    # how far each cell's own row extends left (inclusive) / right (exclusive) in zeros
    row_left = np.maximum.accumulate(np.where(zeros, 0, cols + 1), axis=1)
    row_right = np.minimum.accumulate(np.where(zeros, w, cols)[:, ::-1], axis=1)[:, ::-1]
    # running max of row_left / min of row_right down each vertical run of zeros:
    # offsetting by run index * k (k > w) makes one accumulate restart at every run
    k = w + 1
    run = np.cumsum(blocked, axis=0) * k
    left = np.maximum.accumulate(run + np.where(zeros, row_left, 0), axis=0) - run
    right = w - (np.maximum.accumulate(run + np.where(zeros, w - row_right, 0), axis=0) - run)
    area = np.where(zeros, (right - left) * height, 0)
    y, x = np.unravel_index(int(area.argmax()), area.shape)  # first in raster order on ties
    return (int(left[y, x]), int(y + 1 - height[y, x]), int(right[y, x]), int(y + 1))


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
