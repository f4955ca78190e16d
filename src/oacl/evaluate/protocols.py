"""Mask-mIoU scoring protocols of ``oacl evaluate localization`` (option ``protocol``).

``oacl`` (default) is the protocol localization.py documents: masks compared with the
ground truth at the original image size, the soft mask binarised at ``threshold``.

``paper`` scores ``mask_miou`` and ``crf_mask_miou`` as the authors' released
evaluation does, so the numbers can be set beside the paper's Table 1:

1. every image is scored at ``PAPER_SIZE`` x ``PAPER_SIZE`` (224 x 224, aspect ratio
   not kept): the ground-truth mask (8-bit, 0..255) is resized bilinearly (PIL) and a
   pixel is object when its value / 255 > 0.5;
2. the prediction at 224 x 224 in [0, 1] -- the ContraCAM soft mask (resized
   bilinearly from the mask shard; the authors compute it at 224 x 224 directly) or the
   CRF mask of the box shards (resized nearest) -- is quantised to 8 bits by truncation
   (value * 255, rounded down) and *every* pixel above zero is object (no 0.5 threshold);
3. cleaning: 4-connected components with an area of at most 0.1 % of the image are
   dropped. Like the reference, the first component that passes the size test is taken
   to be the background and skipped, so a prediction whose background is itself under
   0.1 % of the image (e.g. all object) scores as empty; such images are counted in
   ``n_first_component_dropped``;
4. per-image IoU, an image where both masks are empty counts 1, then the mean.

Differences that remain: the CRF masks of the box shards are already binarised at the
CRF foreground marginal >= ``box_threshold`` (oacl.refine.refinement), where the authors keep every
pixel whose CRF marginal reaches 1/255; and the mask shards' soft CAM is 8-bit and
possibly of another resolution than 224 x 224. Box metrics and MaxBoxAccV2 do not
depend on the protocol.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry import decode_mask, resize

PAPER_SIZE = 224
PAPER_MIN_COMPONENT = 0.001  # of the image


def paper_gt(mask_u8: np.ndarray, size: int = PAPER_SIZE) -> np.ndarray:
    """Boolean (size, size) ground truth: 8-bit mask resized bilinearly (PIL), > 0.5."""
    from PIL import Image

    small = Image.fromarray(np.asarray(mask_u8, np.uint8), mode="L").resize(
        (size, size), Image.BILINEAR
    )
    return np.asarray(small, np.float32) / np.float32(255) > 0.5


def quantise(prob: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 by truncation (value * 255 rounded down)."""
    return (np.clip(np.asarray(prob, np.float32), 0.0, 1.0) * np.float32(255)).astype(np.uint8)


def paper_clean(
    prob: np.ndarray, min_component: float = PAPER_MIN_COMPONENT
) -> tuple[np.ndarray, bool]:
    """Step 2-3 on a (size, size) prediction in [0, 1]: (boolean mask, whether the first
    size-passing component was a foreground component and was dropped)."""
    u8 = quantise(prob)
    h, w = u8.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(u8, connectivity=4)
    passing = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] > h * w * min_component)
    skipped_fg = bool(len(passing)) and passing[0] != 0
    return np.isin(labels, passing[1:]), skipped_fg


def paper_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; both empty -> 1."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def resize_prob(prob: np.ndarray, size: int = PAPER_SIZE, nearest: bool = False) -> np.ndarray:
    return resize(prob.astype(np.float32), (size, size), "nearest" if nearest else "linear")


class PaperScores:
    """Per-image paper-protocol IoUs for one prediction source."""

    def __init__(self):
        self.ious: list[float] = []
        self.dropped = 0

    def add(self, prob: np.ndarray, gt: np.ndarray, nearest: bool = False) -> None:
        pred, dropped = paper_clean(resize_prob(prob, gt.shape[0], nearest))
        self.dropped += dropped
        self.ious.append(paper_iou(pred, gt))

    def mean(self) -> float | None:
        return float(np.mean(self.ious)) if self.ious else None


def rescore_paper(metrics: dict, manifest, ids, masks: dict, boxes: dict, gaussian) -> None:
    """Replace the mask metrics of ``metrics`` (localization.py's dict) by the paper's.

    ``gaussian(h, w)`` gives the baseline soft mask. Threshold-sweep metrics
    (best_threshold*) belong to the oacl protocol and are removed.
    """
    from ..io import decode_png, read_mask

    scores = {name: PaperScores() for name in ("contracam", "gaussian") if name in metrics}
    crf = PaperScores()
    for image_id in ids:
        m = manifest.loc[image_id]
        if not m["mask_abspath"]:
            continue
        gt = paper_gt(read_mask(m["mask_abspath"]))
        soft = decode_mask(masks[image_id]["mask_png"])
        scores["contracam"].add(soft, gt)
        if "gaussian" in scores:
            scores["gaussian"].add(gaussian(PAPER_SIZE, PAPER_SIZE), gt)
        row = boxes.get(image_id)
        if row is not None:
            binary = decode_png(row["mask_png"])
            crf.add((binary > 0).astype(np.float32), gt, nearest=True)
    for name, sc in scores.items():
        out = metrics[name]
        for key in ("mask_miou", "best_threshold", "best_threshold_miou", "crf_mask_miou"):
            out.pop(key, None)
        out["n_mask_images"] = len(sc.ious)
        if sc.ious:
            out["mask_miou"] = sc.mean()
            out["n_first_component_dropped"] = sc.dropped
    if crf.ious:
        metrics["contracam"]["crf_mask_miou"] = crf.mean()
        metrics["contracam"]["n_first_component_dropped_crf"] = crf.dropped
