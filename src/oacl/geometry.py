"""Image, mask and box geometry shared by the stages, each rule implemented once.

Ground floor: imports only numpy, OpenCV, torch (lazily) and ``oacl.io``, never a stage
package, so every stage may use it.

Normalisation. ``IMAGENET_MEAN`` / ``IMAGENET_STD`` (the statistics every model is
trained and read with), ``normalise`` and ``eval_transform`` (the evaluation view of the
kNN monitor and of the linear probe: shorter side to ``image_size / crop_ratio``, centre
crop).

Resizing. ``resize`` is every stage's OpenCV resize; the caller names the
interpolation, so each keeps its own convention (see ``resize``).

Masks. ``decode_mask`` reads the 8-bit soft mask of a mask shard as float32 in [0, 1].

Boxes of masks. ``mask_box``: the bounding box of a mask's non-zero pixels, in
inclusive pixel bounds or normalised (the ground-truth boxes of the datasets).

Boxes (paper Appendix B.2). From a binary foreground mask: drop connected components
smaller than ``min_component`` of the image (noise), take the bounding rectangle of
every outer contour found by OpenCV ``findContours``, drop boxes smaller than
``min_box_area`` (1 %) of the image (``filter_boxes``), add a margin (``expand_box``),
clip, and normalise to [0, 1]. Ground-truth boxes get the same 1 % filter and margin
(``oa_crop_boxes``).

Margin convention (decision): "20 % of margins (width for left-and-right and height for
up-and-down)" is read as the authors' released code does it: EACH side is moved out by
``margin`` times the box's own size, i.e. x1 -= m*w, x2 += m*w, y1 -= m*h, y2 += m*h
(a box grows to (1 + 2m) times its size before clipping).

Normalisation of CAM boxes: boxes are divided by the mask's width/height. The mask
covers the whole original image (only rescaled), so these are also the normalised
coordinates of the original image, whatever its size or aspect ratio.

Background rectangle. The paper takes "the largest rectangle in the zeros of the
binarized CAM mask" (threshold 0.2). ``largest_rectangle`` is the exact
maximal-rectangle dynamic programme: for every cell it takes the height of the run of
zeros ending there and extends a rectangle of that height as far left and right as the
run allows; the largest of these over all cells is the largest rectangle of zeros. The
row-by-row recurrences (running max/min of the left/right limits within each vertical
run) are computed for all rows at once with accumulate tricks, so it is O(H*W) numpy
work with no Python loop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .imagenet import IMAGENET_MEAN, IMAGENET_STD  # defined there, for light importers
from .io import decode_png

_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


# --------------------------------------------------------------------------- resizing


def resize(array: np.ndarray, shape: tuple[int, int], interp: str = "linear") -> np.ndarray:
    """Resize an image (H, W, C) or a mask (H, W) to ``shape`` = (h, w) with OpenCV.

    ``interp``: "nearest", "linear" (bilinear) or "area", or one of the rules that take
    area when shrinking and bilinear otherwise, which differ when one side shrinks and
    the other grows: "shrink_any" takes area when h OR w is smaller than the array's
    (squashing images to the CAM / training size), "shrink_all" only when h AND w are
    (the CRF working resolution). Returns ``array`` itself when it has that size.
    """
    h, w = shape
    H, W = array.shape[:2]
    if (H, W) == (h, w):
        return array
    if interp == "shrink_any":
        interp = "area" if h < H or w < W else "linear"
    elif interp == "shrink_all":
        interp = "area" if h < H and w < W else "linear"
    return cv2.resize(array, (w, h), interpolation=_INTERP[interp])


# --------------------------------------------------------------------------- normalisation


def normalise(y, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=None):
    """(y - mean) / std per channel of a (B, 3, H, W) tensor, with python-scalar
    constants (no host->device copy); ``dtype`` of the result defaults to float32."""
    import torch

    out = torch.empty(y.shape, dtype=torch.float32 if dtype is None else dtype, device=y.device)
    for c in range(3):
        out[:, c] = (y[:, c] - mean[c]) / std[c]
    return out


def eval_transform(
    images_uint8, image_size, crop_ratio=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD
):
    """Resize to image_size / crop_ratio, centre crop image_size, normalise.

    images_uint8: (B, 3, H, W) or (3, H, W) uint8 (any device). The standard evaluation
    transform (Resize(256) + CenterCrop(224) at 224 px), applied to the stored square image.
    """
    import torch.nn.functional as F

    x = images_uint8
    single = x.dim() == 3
    if single:
        x = x[None]
    x = x.float() / 255
    H, W = x.shape[-2:]
    short = int(round(image_size / crop_ratio))
    nh, nw = (
        (short, max(short, round(W * short / H)))
        if H <= W
        else (max(short, round(H * short / W)), short)
    )
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - image_size) // 2, (nw - image_size) // 2
    x = normalise(x[:, :, top : top + image_size, left : left + image_size].clamp(0, 1), mean, std)
    return x[0] if single else x


# --------------------------------------------------------------------------- masks


def decode_mask(png: bytes) -> np.ndarray:
    """A stored soft mask (the 8-bit PNG of a mask shard) as float32 (H, W) in [0, 1]."""
    m = decode_png(png)
    if m.ndim == 3:
        m = m[:, :, 0]
    return m.astype(np.float32) / 255.0


def binarize(mask: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 {0, 1} mask: 1 where ``mask >= threshold`` (mask in [0, 1])."""
    return (np.asarray(mask, dtype=np.float32) >= threshold).astype(np.uint8)


def clean_components(binary: np.ndarray, min_component: float) -> np.ndarray:
    """Remove 4-connected foreground components smaller than ``min_component`` of the image."""
    binary = (np.asarray(binary) > 0).astype(np.uint8)
    if min_component <= 0 or not binary.any():
        return binary
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
    min_pixels = min_component * binary.size
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels  # label 0 is the background
    return keep[labels].astype(np.uint8)


# --------------------------------------------------------------------------- boxes


def mask_box(mask: np.ndarray, normalised: bool = False) -> list | None:
    """Bounding box of the non-zero pixels of a (H, W) mask; None when it has none.

    Inclusive pixel bounds [x0, y0, x1, y1] (ints); with ``normalised``, the box
    [x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H] (floats in [0, 1]).
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    if not normalised:
        return [x0, y0, x1, y1]
    h, w = mask.shape[:2]
    return [x0 / w, y0 / h, (x1 + 1) / w, (y1 + 1) / h]


def expand_box(
    box, margin: float, width: float = 1.0, height: float = 1.0, xywh: bool = False
) -> list[float]:
    """Grow a box by ``margin`` x its width on the left and on the right and x its height
    at the top and at the bottom, clipped to [0, width] x [0, height].

    ``box`` is [x1, y1, x2, y2] (or [x, y, w, h] with ``xywh``) in the units of
    width/height: normalised with the defaults, pixels when the image size is given.
    Returns [x1, y1, x2, y2] as floats in the same units.
    """
    if xywh:
        x1, y1, bw, bh = box
        x2, y2 = x1 + bw, y1 + bh
    else:
        x1, y1, x2, y2 = box
        bw, bh = x2 - x1, y2 - y1
    dx, dy = margin * bw, margin * bh
    return [
        max(0.0, x1 - dx),
        max(0.0, y1 - dy),
        min(float(width), x2 + dx),
        min(float(height), y2 + dy),
    ]


def crop_window(
    box, margin: float, width: int, height: int, xywh: bool = False
) -> tuple[int, int, int, int]:
    """Pixel window (x1, y1, x2, y2), x2/y2 exclusive, of a pixel box grown by ``margin``
    (``expand_box``) and rounded outwards (floor / ceil)."""
    x1, y1, x2, y2 = expand_box(box, margin, width, height, xywh)
    return math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)


def filter_boxes(boxes, min_area: float, width: float = 1.0, height: float = 1.0) -> list:
    """The boxes [x1, y1, x2, y2] whose area is at least ``min_area`` of the
    width x height image (the paper's 1 % filter)."""
    return [b for b in boxes if (b[2] - b[0]) * (b[3] - b[1]) >= min_area * height * width]


def oa_crop_boxes(boxes, min_area: float = 0.01, margin: float = 0.2) -> list[list[float]]:
    """Normalised ground-truth boxes as OA-Crop (GT) uses them: drop boxes under
    ``min_area`` of the image, add ``margin`` x width (height) on the left and right (top
    and bottom), clipped: the rules of the CAM boxes."""
    return [expand_box(b, margin) for b in filter_boxes(boxes, min_area)]


def contour_boxes(binary: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x1, y1, x2, y2), x2/y2 exclusive, of the outer contours, sorted."""
    contours, _ = cv2.findContours(
        (np.asarray(binary) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    boxes = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        boxes.append((x, y, x + w, y + h))
    return sorted(boxes)  # OpenCV's contour order is not part of its contract


def mask_to_boxes(
    binary: np.ndarray,
    min_box_area: float = 0.01,
    margin: float = 0.2,
    largest_only: bool = False,
) -> list[list[float]]:
    """Normalised [x1, y1, x2, y2] boxes of a binary mask (already cleaned).

    Boxes whose (pre-margin) area is under ``min_box_area`` of the image are dropped;
    ``largest_only`` keeps the single largest remaining box. The margin is added in
    pixels and the box then divided by the mask's width/height.
    """
    h, w = binary.shape
    boxes = filter_boxes(contour_boxes(binary), min_box_area, w, h)
    if largest_only and boxes:
        # largest area; ties go to the first in sorted order
        boxes = [max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))]
    out = []
    for b in boxes:
        x1, y1, x2, y2 = expand_box(b, margin, w, h)
        out.append([x1 / w, y1 / h, x2 / w, y2 / h])
    return out


# --------------------------------------------------------------------------- background rectangle


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


def background_rect(
    soft_mask: np.ndarray, bg_threshold: float = 0.2
) -> tuple[list[float], bool, bool]:
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
