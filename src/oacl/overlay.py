"""Overlays of an image with its ContraCAM heat map, boxes and background rectangle.

Drawn by `oacl inspect` (oacl.refine.inspect) and by the report's gallery
(oacl.report), so it lives on the ground floor. One overlay is three panels side by side:
  1. the image with the predicted boxes (green) and ground-truth boxes (yellow, thin);
  2. the soft ContraCAM mask as a jet heat map blended over the image;
  3. the refined (CRF) binary mask: background dimmed, mask outline in magenta, and the
     background rectangle used for background mixup in cyan.
Small images are upscaled (nearest neighbour, so pixels stay honest) to ``size`` px.
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import resize
from .io import decode_png

BOX_COLOUR, GT_COLOUR, RECT_COLOUR, EDGE_COLOUR = (
    (0, 220, 0),
    (255, 220, 0),
    (0, 230, 255),
    (255, 0, 255),
)


def _label(panel: np.ndarray, text: str) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(panel, (0, 0), (tw + 8, th + 8), (0, 0, 0), -1)
    cv2.putText(
        panel, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
    )


def _draw_boxes(panel: np.ndarray, boxes, colour, thickness: int) -> None:
    h, w = panel.shape[:2]
    for x1, y1, x2, y2 in boxes:
        p1 = (int(round(x1 * w)), int(round(y1 * h)))
        p2 = (max(int(round(x2 * w)) - 1, p1[0]), max(int(round(y2 * h)) - 1, p1[1]))
        cv2.rectangle(panel, p1, p2, colour, thickness)


def render_overlay(
    image,
    soft=None,
    box_row=None,
    gt_boxes=(),
    title: str = "",
    size: int = 256,
    heat_label: str = "ContraCAM",
) -> np.ndarray:
    """Three panels (boxes | heat map | CRF mask + background rectangle) as uint8 RGB.
    ``heat_label``: the method that drew the soft map (e.g. a Grad-CAM or normalised cut)."""
    h0, w0 = image.shape[:2]
    scale = size / min(h0, w0)
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    img = resize(image, (h, w), "nearest" if scale >= 1 else "area")

    boxes_panel = img.copy()
    _draw_boxes(boxes_panel, gt_boxes, GT_COLOUR, 1)
    if box_row is not None:
        _draw_boxes(boxes_panel, box_row["boxes"], BOX_COLOUR, 2)
    _label(
        boxes_panel,
        f"boxes: {len(box_row['boxes'])}" if box_row is not None else "image (no box shard)",
    )

    if soft is not None:
        heat = resize(soft.astype(np.float32), (h, w), "linear")
        jet = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[
            :, :, ::-1
        ]
        heat_panel = (0.5 * img + 0.5 * jet).astype(np.uint8)
        _label(heat_panel, f"{heat_label} (max {soft.max():.2f})")
    else:
        heat_panel = np.full_like(img, 64)
        _label(heat_panel, "no mask shard")

    if box_row is not None:
        crf = resize(decode_png(box_row["mask_png"]), (h, w), "nearest") > 0
        mask_panel = np.where(crf[:, :, None], img, (img * 0.3).astype(np.uint8))
        contours, _ = cv2.findContours(
            crf.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(mask_panel, contours, -1, EDGE_COLOUR, 1)
        _draw_boxes(mask_panel, [box_row["bg_rect"]], RECT_COLOUR, 2)
        _label(mask_panel, "CRF mask + bg rect" + (" (empty CAM)" if box_row["empty"] else ""))
    else:
        mask_panel = np.full_like(img, 64)
        _label(mask_panel, "no box shard")

    gap = np.full((h, 4, 3), 255, np.uint8)
    strip = np.concatenate([boxes_panel, gap, heat_panel, gap, mask_panel], axis=1)
    header = np.full((24, strip.shape[1], 3), 32, np.uint8)
    cv2.putText(
        header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return np.concatenate([header, strip], axis=0)


def gallery_ids(ids, n: int) -> list[str]:
    """N image ids spread evenly over the sorted ids (deterministic)."""
    ids = sorted(ids)
    if n >= len(ids):
        return ids
    return [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]
