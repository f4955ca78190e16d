"""The arithmetic of the localisation metrics (their definitions: oacl.evaluate.localization).

Box metrics of one image (box IoUs, MaxBoxAccV2 of Choe et al. 2020), ``Scores``, the
per-map accumulator of per-image scores and its summary, and ``compare_to_references``.
Mask-level scores of one image are oacl.evaluate.references'.
"""

from __future__ import annotations

import cv2
import numpy as np

from .params import REFERENCES
from .references import (
    bootstrap_ci,
    mask_iou,
    mass_inside,
    pixel_auc,
    pointing_hit,
    shuffled_auc,
)

SHUFFLE_K = 10  # mismatched GT masks each map is scored against (shuffled_auc)

# --------------------------------------------------------------------------- boxes


def box_iou_matrix(a, b) -> np.ndarray:
    """Pairwise IoU of [x1, y1, x2, y2] boxes (any consistent units), shape (len(a), len(b))."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    ih = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = iw * ih
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_miou(gt_boxes, pred_boxes) -> float | None:
    """Mean over GT boxes of the best IoU with a predicted box; None without GT boxes."""
    if len(gt_boxes) == 0:
        return None
    if len(pred_boxes) == 0:
        return 0.0
    return float(box_iou_matrix(gt_boxes, pred_boxes).max(axis=1).mean())


def boxes_region(boxes, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) union of normalised boxes (pixel centres inside a box)."""
    region = np.zeros((height, width), bool)
    xs, ys = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    for x1, y1, x2, y2 in boxes:
        region[np.ix_((ys >= y1) & (ys < y2), (xs >= x1) & (xs < x2))] = True
    return region


def box_union_iou(gt_boxes, pred_boxes, height: int, width: int) -> float | None:
    if len(gt_boxes) == 0:
        return None
    return mask_iou(boxes_region(pred_boxes, height, width), boxes_region(gt_boxes, height, width))


def all_contour_boxes(cam: np.ndarray, threshold: float) -> np.ndarray:
    """Normalised boxes of every contour (outer and inner) of ``cam > threshold``; a zero
    box if there is none (as wsolevaluation)."""
    h, w = cam.shape
    binary = (cam > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((1, 4))
    rects = np.array([cv2.boundingRect(c) for c in contours], np.float64)
    return np.stack(
        [
            rects[:, 0] / w,
            rects[:, 1] / h,
            (rects[:, 0] + rects[:, 2]) / w,
            (rects[:, 1] + rects[:, 3]) / h,
        ],
        1,
    )


def maxbox_best_ious(cam: np.ndarray, gt_boxes, cam_thresholds) -> np.ndarray:
    """Best IoU between any contour box and any GT box, for every CAM threshold."""
    lo, hi = float(cam.min()), float(cam.max())
    cam = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)  # min-max, as wsolevaluation
    return np.array(
        [box_iou_matrix(all_contour_boxes(cam, t), gt_boxes).max() for t in cam_thresholds]
    )


def maxboxacc(best_ious: np.ndarray, cam_thresholds, deltas) -> dict:
    """MaxBoxAcc per delta and MaxBoxAccV2 from per-image best IoUs (n_images, n_thresholds)."""
    out = {"maxboxacc": {}, "maxboxacc_threshold": {}}
    for d in deltas:
        acc = (best_ious >= d / 100.0).mean(axis=0)
        k = int(acc.argmax())
        out["maxboxacc"][str(d)] = float(acc[k])
        out["maxboxacc_threshold"][str(d)] = float(cam_thresholds[k])
    out["maxboxacc_v2"] = float(np.mean(list(out["maxboxacc"].values())))
    return out


# --------------------------------------------------------------------------- one map's scores


class Scores:
    """The per-image scores of one map (ContraCAM or a reference) and their summary.
    ``grid``: the mask thresholds swept for best_threshold_miou, the fixed one last."""

    def __init__(self, grid):
        self.grid = grid
        self.grid_ious, self.box, self.box_union, self.maxbox = [], [], [], []
        self.auc, self.pointing, self.mass, self.pred_area, self.gt_area = [], [], [], [], []
        self.crf = []  # IoU of the map's CRF mask with the GT mask
        self.rot180, self.shuffled, self.content = [], [], []  # per-image content scores

    def add_map(self, cam, gt_mask, threshold, shuffle=None) -> None:
        """One image's mask scores; ``shuffle`` = (the GT masks of the evaluated images,
        this image's index among them) adds its content scores (add_content)."""
        self.grid_ious.append([mask_iou(cam >= t, gt_mask) for t in self.grid])
        self.pred_area.append(float((cam >= threshold).mean()))
        self.gt_area.append(float(gt_mask.mean()))
        if gt_mask.any():  # pointing and mass need an object in the image
            self.pointing.append(pointing_hit(cam, gt_mask))
            m = mass_inside(cam, gt_mask)
            self.mass.append(0.0 if m is None else m)
        a = pixel_auc(cam, gt_mask)
        if a is not None:
            self.auc.append(a)
            if shuffle is not None:
                self.add_content(cam, gt_mask, a, *shuffle)

    def add_content(self, cam, gt_mask, auc, gts, index) -> None:
        """The map's AUC turned by 180 degrees, its shuffled AUC (against SHUFFLE_K other
        images' GT masks) and content AUC (its pixel AUC ``auc`` minus the shuffled one)."""
        rot = pixel_auc(np.ascontiguousarray(cam[::-1, ::-1]), gt_mask)
        if rot is not None:
            self.rot180.append(rot)
        shuf = shuffled_auc(cam, gts, index, k=SHUFFLE_K, seed=0)
        if shuf is not None:
            self.shuffled.append(shuf)
            self.content.append(auc - shuf)

    def add_boxes(self, cam, gt_boxes, pred_boxes, cam_thresholds) -> None:
        """The boxes ``pred_boxes`` drawn from ``cam`` (no CRF), and MaxBoxAcc's sweep."""
        h, w = cam.shape
        self.box.append(box_miou(gt_boxes, pred_boxes))
        self.box_union.append(box_union_iou(gt_boxes, pred_boxes, h, w))
        self.maxbox.append(maxbox_best_ious(cam, gt_boxes, cam_thresholds))

    def summary(self, threshold_index, cam_thresholds, deltas) -> dict:
        out = {"n_mask_images": len(self.grid_ious), "n_box_images": len(self.box)}
        if self.grid_ious:
            g = np.array(self.grid_ious)
            means = g.mean(axis=0)
            out["mask_miou"] = float(means[threshold_index])
            k = int(means[:-1].argmax())  # last column is the fixed threshold
            out["best_threshold"] = float(self.grid[k])
            out["best_threshold_miou"] = float(means[k])
            out["pred_area"] = float(np.mean(self.pred_area))
            out["gt_area"] = float(np.mean(self.gt_area))
        for key, vals in (
            ("pixel_auc", self.auc),
            ("pointing", self.pointing),
            ("mass_inside", self.mass),
            ("crf_mask_miou", self.crf),
        ):
            if vals:
                out[key] = float(np.mean(vals))
        out.update(self.content_summary())
        if self.box:
            out["box_miou_nocrf"] = float(np.mean(self.box))
            out["box_union_iou_nocrf"] = float(np.mean(self.box_union))
            out.update(maxboxacc(np.array(self.maxbox), cam_thresholds, deltas))
        return out

    def content_summary(self) -> dict:
        """auc_rot180, shuffled_auc and content_auc (mean over images, with its 95 %
        bootstrap interval over images ``content_auc_ci95``) where they were scored."""
        out = {}
        if self.rot180:
            out["auc_rot180"] = float(np.mean(self.rot180))
        if self.content:
            mean, lo, hi = bootstrap_ci(self.content)
            out["shuffled_auc"] = float(np.mean(self.shuffled))
            out["content_auc"] = mean
            out["content_auc_ci95"] = [lo, hi]
            out["n_content_images"] = len(self.content)
        return out


# --------------------------------------------------------------------------- references

# metrics where higher is better, compared against the best trivial reference
COMPARED = (
    "mask_miou",
    "best_threshold_miou",
    "crf_mask_miou",
    "pixel_auc",
    "pointing",
    "mass_inside",
    "maxboxacc_v2",
)


def compare_to_references(metrics: dict, name: str = "contracam") -> tuple[dict, list]:
    """Best reference value per metric and the metrics where ``name`` does not beat it."""
    best, below = {}, []
    for key in COMPARED:
        vals = [(metrics[r][key], r) for r in REFERENCES if r in metrics and key in metrics[r]]
        if not vals or key not in metrics.get(name, {}):
            continue
        value, ref = max(vals)
        best[key] = {"reference": ref, "value": value}
        if metrics[name][key] <= value:
            below.append(key)
    return best, below
