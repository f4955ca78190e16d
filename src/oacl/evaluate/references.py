"""Reference localisation maps and map-level scores for the localisation table.

A localiser is only worth its cost if it beats maps that know nothing about objects
(docs/architecture.md, "Localisation"). The references here are computed on the
same images, at the same size, and scored by the same code as ContraCAM:

centred_gaussian   a centred Gaussian prior (objects tend to be central)
colour_saliency    per-pixel colour distance (CIE Lab) to the image's border colour:
                   the trivial "the object is whatever differs from the frame" map
mean_soft_map      the average of the evaluated CAM's own maps (reference ``cam_mean``):
                   the positional prior the CAM draws on every image
The feature-based reference (normalised cut on the SSL backbone's last feature map,
TokenCut, Wang et al. CVPR 2022) lives in oacl.cam.ncut, since it needs the model.

Map-level scores (soft map vs boolean GT mask of one image):

pixel_auc      area under the ROC of the map's values as a foreground score
               (Mann-Whitney U with tied ranks averaged); None if the GT is all
               foreground or all background
pointing_hit   whether the map's maximum lies inside the GT mask (pointing game,
               Zhang et al. 2016; the first maximal pixel in row-major order)
mass_inside    share of the map's total mass that falls inside the GT mask
shuffled_auc   the map scored against the GT masks of *other* images: what its
               placement prior alone earns (the centre-bias correction of saliency
               evaluation, Borji et al. 2013); pixel AUC minus it is the map's
               per-image content (``content_auc``)
bootstrap_ci   percentile interval of a mean over images (resampling images)
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry import decode_mask, resize

MEAN_GRID = 64  # side of the grid the soft maps are averaged on for cam_mean


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; both empty -> 1.0 (as the authors' compute_mask_miou)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def centred_gaussian(height: int, width: int, sigma: float) -> np.ndarray:
    """A centred Gaussian with std sigma*width (x), sigma*height (y), peak 1."""
    y = ((np.arange(height) + 0.5) / height - 0.5) / sigma
    x = ((np.arange(width) + 0.5) / width - 0.5) / sigma
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def colour_saliency(image: np.ndarray, border: float = 0.06) -> np.ndarray:
    """Lab distance of every pixel to the median colour of the image border, min-max to [0, 1].

    ``image`` uint8 RGB (H, W, 3); the border band is ``border`` x the side (>= 1 px).
    """
    lab = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
    h, w = lab.shape[:2]
    b = max(1, round(border * min(h, w)))
    band = np.concatenate(
        [
            lab[:b].reshape(-1, 3),
            lab[-b:].reshape(-1, 3),
            lab[:, :b].reshape(-1, 3),
            lab[:, -b:].reshape(-1, 3),
        ]
    )
    d = np.linalg.norm(lab - np.median(band, axis=0), axis=-1)
    lo, hi = float(d.min()), float(d.max())
    return ((d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)).astype(np.float32)


def mean_soft_map(masks: dict, ids) -> np.ndarray:
    """The average of the soft maps of ``ids`` on a MEAN_GRID square, min-max normalised to
    [0, 1] as every CAM is (a constant average becomes all zeros)."""
    total = np.zeros((MEAN_GRID, MEAN_GRID), np.float64)
    for image_id in ids:
        total += resize(decode_mask(masks[image_id]["mask_png"]), (MEAN_GRID, MEAN_GRID))
    lo, hi = total.min(), total.max()
    return ((total - lo) / (hi - lo) if hi > lo else np.zeros_like(total)).astype(np.float32)


def pixel_auc(score: np.ndarray, gt: np.ndarray) -> float | None:
    """ROC AUC of ``score`` separating GT foreground from background pixels (ties averaged)."""
    return _auc_of_ranks(_ranks(score), gt)


def _ranks(score: np.ndarray) -> np.ndarray:
    """1-based ranks of the map's values (row-major), ties given their average rank."""
    s = np.asarray(score, np.float64).ravel()
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    # average rank of each run of equal values (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _auc_of_ranks(ranks: np.ndarray, gt: np.ndarray) -> float | None:
    """Mann-Whitney U / (n_pos n_neg) from the map's ranks; None for a one-class GT."""
    gt = np.asarray(gt, bool).ravel()
    n_pos = int(gt.sum())
    n_neg = gt.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    u = ranks[gt].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pointing_hit(score: np.ndarray, gt: np.ndarray) -> bool:
    """Pointing game: the (first, row-major) maximum of the map is a GT pixel."""
    return bool(np.asarray(gt, bool).ravel()[int(np.argmax(score))])


def mass_inside(score: np.ndarray, gt: np.ndarray) -> float | None:
    """Share of the map's mass inside the GT mask (None for an all-zero map)."""
    s = np.clip(np.asarray(score, np.float64), 0, None)
    total = s.sum()
    return None if total <= 0 else float(s[np.asarray(gt, bool)].sum() / total)


def shuffled_auc(
    score: np.ndarray, gts: list, index: int, k: int = 10, seed: int = 0
) -> float | None:
    """Mean pixel AUC of ``score`` (the map of image ``index``) against the GT masks of ``k``
    other images of ``gts`` (drawn without replacement, fixed by ``seed`` and ``index``;
    masks of another size are resized to the map's). None if no drawn mask is scorable."""
    others = [j for j in range(len(gts)) if j != index]
    if not others:
        return None
    rng = np.random.default_rng([seed, index])
    picks = rng.choice(others, size=min(k, len(others)), replace=False)
    h, w = np.asarray(score).shape[:2]
    ranks = _ranks(score)  # one sort of the map for every drawn mask
    aucs = []
    for j in picks:
        g = np.asarray(gts[j], bool)
        if g.shape != (h, w):
            g = cv2.resize(g.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        a = _auc_of_ranks(ranks, g)
        if a is not None:
            aucs.append(a)
    return float(np.mean(aucs)) if aucs else None


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """(mean, low, high): percentile bootstrap interval of the mean of ``values`` over
    images (NaN and None dropped); (None, None, None) when nothing is left."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return None, None, None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)
