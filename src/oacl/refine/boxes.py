"""Boxes from a binary foreground mask (paper Appendix B.2).

Pipeline: drop connected components smaller than ``min_component`` of the image
(noise), take the bounding rectangle of every outer contour found by OpenCV
``findContours``, drop boxes smaller than ``min_box_area`` (1 %) of the image, add a
margin, clip, and normalise to [0, 1].

Margin convention (decision): "20 % of margins (width for left-and-right and height for
up-and-down)" is read as the authors' released code does it: EACH side is moved out by
``margin`` times the box's own size, i.e. x1 -= m*w, x2 += m*w, y1 -= m*h, y2 += m*h
(a box grows to (1 + 2m) times its size before clipping).

Normalisation: boxes are divided by the mask's width/height. The mask covers the whole
original image (only rescaled), so these are also the normalised coordinates of the
original image, whatever its size or aspect ratio.
"""

from __future__ import annotations

import cv2
import numpy as np


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


def expand_box(box, height: int, width: int, margin: float) -> list[float]:
    """Add ``margin`` x box width to left and right, x box height to top and bottom; clip;
    normalise to [0, 1] by the mask's width/height."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return [
        max(0.0, x1 - margin * bw) / width,
        max(0.0, y1 - margin * bh) / height,
        min(float(width), x2 + margin * bw) / width,
        min(float(height), y2 + margin * bh) / height,
    ]


def mask_to_boxes(
    binary: np.ndarray,
    min_box_area: float = 0.01,
    margin: float = 0.2,
    largest_only: bool = False,
) -> list[list[float]]:
    """Normalised [x1, y1, x2, y2] boxes of a binary mask (already cleaned).

    Boxes whose (pre-margin) area is under ``min_box_area`` of the image are dropped;
    ``largest_only`` keeps the single largest remaining box.
    """
    h, w = binary.shape
    boxes = [b for b in contour_boxes(binary) if (b[2] - b[0]) * (b[3] - b[1]) >= min_box_area * h * w]
    if largest_only and boxes:
        # largest area; ties go to the first in sorted order
        boxes = [max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))]
    return [expand_box(b, h, w, margin) for b in boxes]
