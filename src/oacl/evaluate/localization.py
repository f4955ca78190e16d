"""Object localisation quality of ContraCAM masks and boxes (paper Sec. 3.1, App. B.1).

Metrics, each for the CAM soft masks and for a centred-Gaussian baseline mask:

mask_miou            soft mask resized bilinearly to the ground-truth (original) size,
                     binarised at ``threshold`` (0.5), IoU with the GT mask per image,
                     averaged; an image where both are empty counts as IoU 1 (as the
                     authors' compute_mask_miou does).
best_threshold_miou  the same with the single threshold from ``threshold_grid`` that
                     maximises the dataset mIoU (reported with the threshold).
crf_mask_miou        the refined (CRF + cleaned) binary mask from the box shards,
                     resized (nearest) to the GT size.
box_miou             per image: for every GT box the best IoU with any predicted box,
                     averaged over GT boxes (the authors' definition; no prediction ->
                     0), then averaged over images with GT boxes. ``box_miou`` uses the
                     box shards (CRF, 20 % margin as stored); ``box_miou_nocrf`` the
                     boxes of the binarised soft mask (no CRF) by the refine stage's
                     box rules and parameters (oacl.refine.refinement.clean_and_box).
box_union_iou        IoU of the union-of-predicted-boxes region with the
                     union-of-GT-boxes region (a set-level alternative).
pixel_auc            per image, ROC AUC of the soft map's values against the GT mask
                     pixels, averaged (oacl.evaluate.references.pixel_auc).
pointing             pointing game: share of images whose map maximum is a GT pixel.
mass_inside          mean share of the map's mass inside the GT mask.
pred_area, gt_area   mean share of the image above ``threshold`` / inside the GT mask.
auc_rot180           pixel AUC of the map turned by 180 degrees: a map that marks the
                     background away from the object scores higher turned than upright.
shuffled_auc         per image, the mean pixel AUC of the map against the GT masks of 10
                     other evaluated images (oacl.evaluate.references.shuffled_auc): what
                     the map's placement alone earns (the centre-bias correction of
                     saliency evaluation, Borji et al. 2013; Bylinskii et al. 2019).
content_auc          per image, pixel AUC minus shuffled AUC, averaged, with its 95 %
                     percentile bootstrap interval over images (``content_auc_ci95``):
                     ~0 for a map that ignores the image, +0.5 for the GT mask itself
                     when objects do not overlap across images.
maxboxacc_v2         Choe et al. 2020 (wsolevaluation): soft mask min-max normalised,
                     for every CAM threshold in [0, 1) step ``maxbox_cam_step`` the
                     boxes of ALL contours are compared with all GT boxes and the best
                     IoU is kept; BoxAcc(delta) = share of images with best IoU >= delta
                     at the best threshold for that delta; averaged over delta = 30, 50,
                     70 %.

Every metric is computed for the ContraCAM maps and, through the same code on the
same images, for reference maps that know nothing about objects
(oacl.evaluate.references): ``gaussian`` (centred prior), ``colour`` (colour
distance to the border) and ``cam_mean`` (the average of the evaluated CAM maps
themselves, mean_soft_map: the positional prior the CAM draws on every image).
``crf_mask_miou`` is given for each: ContraCAM's from the refine stage's box shards,
the references' by running the same refinement (oacl.refine.refinement.refine_one with the
``refine`` parameters) on their maps, so the CRF is credited to no one.
``trivial_best`` names the best reference per metric, and ``below_trivial`` lists the
metrics where ContraCAM does not beat it.

``protocol: paper`` scores mask_miou and crf_mask_miou as the authors' evaluation does
instead (per image at 224 x 224; see protocols.py); the result's ``protocol`` names it.

Parameters: oacl.evaluate.params ``DEFAULTS["localization"]``. The metrics' arithmetic is
loc_metrics.py, the markdown table loc_markdown.py; `oacl evaluate localization` is
defined in cli.py.
"""

from __future__ import annotations

import json
import logging
from typing import NamedTuple

import numpy as np

from .. import artifacts
from ..geometry import decode_mask, resize
from ..io import decode_png, read_mask, read_rgb
from ..params import merge_params, params_json
from ..progress import progress as progress_bar
from ..refine import params as refine_stage
from ..refine.refinement import clean_and_box, refine_one
from . import protocols
from .loc_markdown import markdown_table
from .loc_metrics import Scores, box_miou, box_union_iou, compare_to_references
from .params import DEFAULTS, check_localization
from .references import centred_gaussian, colour_saliency, mask_iou, mean_soft_map

log = logging.getLogger(__name__)


class Truth(NamedTuple):
    """One image's ground truth: its size, mask (None without one) and normalised boxes."""

    height: int
    width: int
    mask: np.ndarray | None
    boxes: list


class CrfBoxes:
    """The box metrics of the refine stage's boxes (box shards) for ContraCAM."""

    def __init__(self):
        self.box, self.union = [], []
        self.n_missing = 0  # images of the mask shards without a box row


def evaluate_localization(params: dict, manifest_path, mask_paths, box_paths=()) -> dict:
    """Compute every metric over the images of the mask shards; returns the result dict."""
    params = merge_params(DEFAULTS["localization"], params, "localization cfg")
    check_localization(params)
    refine_params = merge_params(refine_stage.DEFAULTS, params["refine"], "localization cfg refine")
    manifest = artifacts.read_manifest(manifest_path).set_index("image_id", drop=False)
    masks = artifacts.read_masks(list(mask_paths))
    boxes = artifacts.read_boxes(list(box_paths)) if box_paths else {}
    ids = select_images(params, manifest, masks, manifest_path)
    grid = list(params["threshold_grid"]) + [params["threshold"]]
    cam_thr = np.arange(0.0, 1.0, params["maxbox_cam_step"])
    scores = {name: Scores(grid) for name in ["contracam", *params["references"]]}
    crf_boxes = CrfBoxes()
    mean_map = mean_soft_map(masks, ids) if "cam_mean" in params["references"] and ids else None
    truths = {i: ground_truth(manifest.loc[i]) for i in ids}  # GT masks kept for the shuffle
    gts = [t.mask for t in truths.values() if t.mask is not None]
    for image_id in progress_bar(ids, desc="localization", unit="img"):
        m = manifest.loc[image_id]
        truth = truths[image_id]
        maps, image = candidate_maps(params, m, masks[image_id], mean_map, truth)
        score_maps(scores, maps, image, truth, params, refine_params, cam_thr, gts)
        if boxes:
            score_box_row(scores["contracam"], crf_boxes, boxes.get(image_id), truth)
    if not ids:
        raise ValueError(
            f"no images to evaluate in {list(mask_paths)} (splits={params['splits']}, variants={params['variants']})"
        )
    if crf_boxes.n_missing:
        log.warning(
            "%d image(s) of the mask shards have no row in the box shards", crf_boxes.n_missing
        )
    metrics = summarise(scores, crf_boxes, cam_thr, list(params["maxbox_iou_thresholds"]))
    if params["protocol"] == "paper":
        rescore_paper(metrics, params, manifest, ids, masks, boxes)
    return result(params, metrics, masks, ids, crf_boxes, (manifest_path, mask_paths, box_paths))


def select_images(params: dict, manifest, masks: dict, manifest_path) -> list:
    """The ids of the mask shards to evaluate, sorted: those of ``splits`` and ``variants``."""
    ids = sorted(masks)
    missing = [i for i in ids if i not in manifest.index]
    if missing:
        raise ValueError(
            f"mask shards have image_id(s) not in manifest {manifest_path}: {missing[:5]}"
        )
    if params["splits"]:
        ids = [i for i in ids if manifest.at[i, "split"] in set(params["splits"])]
    if params["variants"]:
        ids = [i for i in ids if manifest.at[i, "variant"] in set(params["variants"])]
    return ids


def ground_truth(m) -> Truth:
    """The ground truth of manifest row ``m``; its size is the GT mask's when it has one."""
    height, width = int(m["height"]), int(m["width"])
    mask = None
    if m["mask_abspath"]:
        mask = read_mask(m["mask_abspath"]) > 0
        height, width = mask.shape
    boxes = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
    return Truth(height, width, mask, boxes)


def candidate_maps(params: dict, m, mask_row: dict, mean_map, truth: Truth):
    """({name: soft map at the GT size} of ContraCAM and the references, the image at that
    size, or None when no reference needs it)."""
    size = (truth.height, truth.width)
    maps = {"contracam": resize(decode_mask(mask_row["mask_png"]), size)}
    image = None
    if params["references"]:
        image = resize(read_rgb(m["abspath"]), size, "area")
    if "gaussian" in params["references"]:
        maps["gaussian"] = centred_gaussian(*size, params["gaussian_sigma"])
    if "colour" in params["references"]:
        maps["colour"] = colour_saliency(image)
    if mean_map is not None:
        maps["cam_mean"] = resize(mean_map, size)
    return maps, image


def score_maps(scores, maps, image, truth: Truth, params, refine_params, cam_thr, gts=()) -> None:
    """Every map's mask scores, the references' CRF mask (the refinement the CAM got in the
    refine stage) and the boxes of each binarised map (the refine stage's box rules).
    ``gts``: the GT masks of every evaluated image with one (this image's among them), for
    the shuffled and content AUCs."""
    index = next((k for k, g in enumerate(gts) if g is truth.mask), None)
    for name, cam in maps.items():
        sc = scores[name]
        if truth.mask is not None:
            shuffle = None if index is None else (gts, index)
            sc.add_map(cam, truth.mask, params["threshold"], shuffle)
            if name != "contracam":
                crf = refine_one(image, cam, refine_params)["mask"]
                sc.crf.append(
                    mask_iou(resize(crf, (truth.height, truth.width), "nearest") > 0, truth.mask)
                )
        if truth.boxes:
            binary = (cam >= params["threshold"]).astype(np.uint8)
            sc.add_boxes(cam, truth.boxes, clean_and_box(binary, refine_params)[1], cam_thr)


def score_box_row(contracam: Scores, crf_boxes: CrfBoxes, row: dict | None, truth: Truth) -> None:
    """ContraCAM's CRF mask and boxes from its row of the box shards (None: counted)."""
    if row is None:
        crf_boxes.n_missing += 1
        return
    if truth.mask is not None:
        crf = decode_png(row["mask_png"]) > 0
        size = (truth.height, truth.width)
        contracam.crf.append(mask_iou(resize(crf.astype(np.uint8), size, "nearest"), truth.mask))
    if truth.boxes:
        pred = [list(b) for b in row["boxes"]]
        crf_boxes.box.append(box_miou(truth.boxes, pred))
        crf_boxes.union.append(box_union_iou(truth.boxes, pred, truth.height, truth.width))


def summarise(scores: dict, crf_boxes: CrfBoxes, cam_thr, deltas) -> dict:
    """{map name: metrics}; the fixed threshold is the last of each map's grid."""
    metrics = {name: sc.summary(len(sc.grid) - 1, cam_thr, deltas) for name, sc in scores.items()}
    if crf_boxes.box:
        metrics["contracam"]["box_miou"] = float(np.mean(crf_boxes.box))
        metrics["contracam"]["box_union_iou"] = float(np.mean(crf_boxes.union))
    return metrics


def rescore_paper(metrics: dict, params: dict, manifest, ids, masks, boxes) -> None:
    """The mask metrics of ContraCAM and the Gaussian by the authors' protocol; the other
    references lose theirs (no mixed-protocol comparisons)."""
    sigma = params["gaussian_sigma"]
    protocols.rescore_paper(
        metrics, manifest, ids, masks, boxes, lambda h, w: centred_gaussian(h, w, sigma)
    )
    for name in metrics:
        if name not in ("contracam", "gaussian"):
            for key in ("mask_miou", "best_threshold", "best_threshold_miou", "crf_mask_miou"):
                metrics[name].pop(key, None)


def result(params: dict, metrics: dict, masks: dict, ids, crf_boxes: CrfBoxes, inputs) -> dict:
    """The localization_{cam}.json record."""
    manifest_path, mask_paths, box_paths = inputs
    best, below = compare_to_references(metrics)
    first = next(iter(masks.values()))
    try:
        cam_method = json.loads(first.get("params") or "{}").get("method", "contracam")
    except (json.JSONDecodeError, AttributeError):
        cam_method = "contracam"
    return {
        "protocol": params["protocol"],
        "cam_method": cam_method,
        "n_images": len(ids),
        "n_missing_box_rows": crf_boxes.n_missing,
        "metrics": metrics,
        "trivial_best": best,
        "below_trivial": below,
        "params": json.loads(params_json(params)),
        "inputs": {
            "manifest": str(manifest_path),
            "masks": [str(p) for p in mask_paths],
            "boxes": [str(p) for p in box_paths],
        },
        "table_md": markdown_table(metrics, params["protocol"]),
    }
