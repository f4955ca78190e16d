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
                     boxes of the binarised soft mask (same box rules, no CRF).
box_union_iou        IoU of the union-of-predicted-boxes region with the
                     union-of-GT-boxes region (a set-level alternative).
pixel_auc            per image, ROC AUC of the soft map's values against the GT mask
                     pixels, averaged (oacl.evaluate.references.pixel_auc).
pointing             pointing game: share of images whose map maximum is a GT pixel.
mass_inside          mean share of the map's mass inside the GT mask.
pred_area, gt_area   mean share of the image above ``threshold`` / inside the GT mask.
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
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
from tqdm import tqdm

from .. import artifacts
from ..geometry import clean_components, decode_mask, mask_to_boxes, resize
from ..io import decode_png, read_mask, read_rgb, write_json
from ..params import merge_params, params_json
from ..refine import params as refine_params_module
from ..refine.refinement import refine_one
from . import protocols
from .references import (
    centred_gaussian,
    colour_saliency,
    mask_iou,
    mass_inside,
    pixel_auc,
    pointing_hit,
)

# trivial reference maps scored beside every CAM; ``cam_mean`` is the CAM configuration's
# own average map over the evaluated images: its positional prior (e.g. a centre blob from
# zero padding), which a map with no per-image content ties with
REFERENCES = ("gaussian", "colour", "cam_mean")
MEAN_GRID = 64  # side of the grid the soft maps are averaged on for cam_mean

log = logging.getLogger(__name__)

DEFAULTS = {
    "threshold": 0.5,  # mask binarisation for mask_miou
    "threshold_grid": [round(0.05 * i, 2) for i in range(1, 20)],  # for best_threshold_miou
    "maxbox_cam_step": 0.01,  # CAM threshold step for MaxBoxAccV2 (wsolevaluation default)
    "maxbox_iou_thresholds": [30, 50, 70],  # delta in percent
    "gaussian_sigma": 0.25,  # baseline: std of the centred Gaussian, fraction of width/height
    "splits": [],  # evaluate only these manifest splits ([] = every image in the shards)
    "variants": [],  # ... and only these variants, e.g. ["original"] ([] = all)
    "min_box_area": 0.01,  # box rules for box_miou_nocrf (as in refine)
    "margin": 0.2,
    "min_component": 0.001,
    "references": list(REFERENCES),  # reference maps to score beside the CAM
    "refine": {},  # refine-stage parameters for the references' CRF masks (the workflow passes its own)
    "protocol": "oacl",  # mask mIoU protocol: "oacl" (above) or "paper" (protocols.py)
}


# --------------------------------------------------------------------------- primitives


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


# --------------------------------------------------------------------------- evaluation


class _Acc:
    """Per-method accumulator of per-image scores."""

    def __init__(self, grid):
        self.grid_ious, self.box, self.box_union, self.maxbox = [], [], [], []
        self.auc, self.pointing, self.mass, self.pred_area, self.gt_area, self.crf = (
            [],
            [],
            [],
            [],
            [],
            [],
        )
        self.grid = grid

    def add_map(self, cam, gt_mask, threshold) -> None:
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
        if self.box:
            out["box_miou_nocrf"] = float(np.mean(self.box))
            out["box_union_iou_nocrf"] = float(np.mean(self.box_union))
            out.update(maxboxacc(np.array(self.maxbox), cam_thresholds, deltas))
        return out


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


def mean_soft_map(masks: dict, ids) -> np.ndarray:
    """The average of the soft maps of ``ids`` on a MEAN_GRID square, min-max normalised to
    [0, 1] as every CAM is (a constant average becomes all zeros)."""
    total = np.zeros((MEAN_GRID, MEAN_GRID), np.float64)
    for image_id in ids:
        total += resize(decode_mask(masks[image_id]["mask_png"]), (MEAN_GRID, MEAN_GRID))
    lo, hi = total.min(), total.max()
    return ((total - lo) / (hi - lo) if hi > lo else np.zeros_like(total)).astype(np.float32)


def evaluate_localization(params: dict, manifest_path, mask_paths, box_paths=()) -> dict:
    """Compute every metric over the images of the mask shards; returns the result dict."""
    params = merge_params(DEFAULTS, params, "localization cfg")
    if params["protocol"] not in protocols.PROTOCOLS:
        raise ValueError(
            f"localization cfg: protocol must be one of {protocols.PROTOCOLS}, got {params['protocol']!r}"
        )
    bad = [r for r in params["references"] if r not in REFERENCES]
    if bad:
        raise ValueError(f"localization cfg: unknown references {bad} (known: {list(REFERENCES)})")
    refine_params = merge_params(
        refine_params_module.DEFAULTS, params["refine"], "localization cfg refine"
    )
    manifest = artifacts.read_manifest(manifest_path).set_index("image_id", drop=False)
    masks = artifacts.read_masks(list(mask_paths))
    boxes = artifacts.read_boxes(list(box_paths)) if box_paths else {}
    grid = list(params["threshold_grid"]) + [params["threshold"]]
    cam_thr = np.arange(0.0, 1.0, params["maxbox_cam_step"])
    deltas = list(params["maxbox_iou_thresholds"])
    box_rules = {k: params[k] for k in ("min_box_area", "margin")}

    names = ["contracam", *params["references"]]
    accs = {name: _Acc(grid) for name in names}
    refined_box, refined_union = [], []
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
    n_no_box_row = 0
    mean_map = mean_soft_map(masks, ids) if "cam_mean" in params["references"] and ids else None
    for image_id in tqdm(ids, desc="localization", unit="img"):
        m = manifest.loc[image_id]
        H, W = int(m["height"]), int(m["width"])
        gt_mask = None
        if m["mask_abspath"]:
            gt_mask = read_mask(m["mask_abspath"]) > 0
            H, W = gt_mask.shape
        gt_boxes = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
        soft = decode_mask(masks[image_id]["mask_png"])
        candidates = {"contracam": resize(soft, (H, W))}
        image = None
        if params["references"]:
            image = read_rgb(m["abspath"])
            image = resize(image, (H, W), "area")
        if "gaussian" in params["references"]:
            candidates["gaussian"] = centred_gaussian(H, W, params["gaussian_sigma"])
        if "colour" in params["references"]:
            candidates["colour"] = colour_saliency(image)
        if mean_map is not None:
            candidates["cam_mean"] = resize(mean_map, (H, W))
        for name, cam in candidates.items():
            acc = accs[name]
            if gt_mask is not None:
                acc.add_map(cam, gt_mask, params["threshold"])
                if name != "contracam":  # the same refinement the CAM got in the refine stage
                    crf = refine_one(image, cam, refine_params)["mask"]
                    acc.crf.append(mask_iou(resize(crf, (H, W), "nearest") > 0, gt_mask))
            if gt_boxes:
                binary = clean_components(
                    (cam >= params["threshold"]).astype(np.uint8), params["min_component"]
                )
                pred = mask_to_boxes(binary, **box_rules)
                acc.box.append(box_miou(gt_boxes, pred))
                acc.box_union.append(box_union_iou(gt_boxes, pred, H, W))
                acc.maxbox.append(maxbox_best_ious(cam, gt_boxes, cam_thr))
        if boxes:
            row = boxes.get(image_id)
            if row is None:
                n_no_box_row += 1
                continue
            if gt_mask is not None:
                crf = decode_png(row["mask_png"]) > 0
                accs["contracam"].crf.append(
                    mask_iou(resize(crf.astype(np.uint8), (H, W), "nearest"), gt_mask)
                )
            if gt_boxes:
                pred = [list(b) for b in row["boxes"]]
                refined_box.append(box_miou(gt_boxes, pred))
                refined_union.append(box_union_iou(gt_boxes, pred, H, W))

    if not ids:
        raise ValueError(
            f"no images to evaluate in {list(mask_paths)} (splits={params['splits']}, variants={params['variants']})"
        )
    if n_no_box_row:
        log.warning("%d image(s) of the mask shards have no row in the box shards", n_no_box_row)
    tidx = len(grid) - 1
    metrics = {name: acc.summary(tidx, cam_thr, deltas) for name, acc in accs.items()}
    if refined_box:
        metrics["contracam"]["box_miou"] = float(np.mean(refined_box))
        metrics["contracam"]["box_union_iou"] = float(np.mean(refined_union))
    if params["protocol"] == "paper":
        sigma = params["gaussian_sigma"]
        protocols.rescore_paper(
            metrics, manifest, ids, masks, boxes, lambda h, w: centred_gaussian(h, w, sigma)
        )
        for name in metrics:  # references not rescored: no mixed-protocol comparisons
            if name not in ("contracam", "gaussian"):
                for key in ("mask_miou", "best_threshold", "best_threshold_miou", "crf_mask_miou"):
                    metrics[name].pop(key, None)
    best, below = compare_to_references(metrics)
    first = next(iter(masks.values()))
    try:
        cam_method = json.loads(first.get("params") or "{}").get("method", "contracam")
    except (json.JSONDecodeError, AttributeError):
        cam_method = "contracam"
    result = {
        "protocol": params["protocol"],
        "cam_method": cam_method,
        "n_images": len(ids),
        "n_missing_box_rows": n_no_box_row,
        "metrics": metrics,
        "trivial_best": best,
        "below_trivial": below,
        "params": json.loads(params_json(params)),
        "inputs": {
            "manifest": str(manifest_path),
            "masks": [str(p) for p in mask_paths],
            "boxes": [str(p) for p in box_paths],
        },
    }
    result["table_md"] = protocols.label_table(params["protocol"], markdown_table(metrics))
    return result


METRIC_ROWS = [
    ("mask_miou", "mask mIoU @0.5"),
    ("pixel_auc", "pixel AUC"),
    ("pointing", "pointing game"),
    ("mass_inside", "map mass inside GT"),
    ("pred_area", "area above 0.5"),
    ("gt_area", "GT area"),
    ("best_threshold_miou", "mask mIoU @best threshold"),
    ("best_threshold", "best threshold"),
    ("crf_mask_miou", "CRF mask mIoU"),
    ("box_miou", "box mIoU (CRF boxes)"),
    ("box_miou_nocrf", "box mIoU (no CRF)"),
    ("box_union_iou", "box-union IoU (CRF boxes)"),
    ("box_union_iou_nocrf", "box-union IoU (no CRF)"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
]


def markdown_table(metrics: dict) -> str:
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label in METRIC_ROWS:
        if not any(key in metrics[n] for n in names):
            continue
        cells = [f"{metrics[n][key]:.4f}" if key in metrics[n] else "–" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def register(subparsers) -> None:
    """Add `localization` to the `oacl evaluate` sub-commands."""
    p = subparsers.add_parser(
        "localization",
        help="mask mIoU, box mIoU and MaxBoxAccV2 of ContraCAM masks vs ground truth",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--cfg", default="{}", help="JSON of localization parameters (over DEFAULTS)")
    p.add_argument("--manifest", required=True, help="manifest.parquet with GT masks/boxes")
    # list options accumulate (action="extend"): `--masks a b` == `--masks a --masks b`
    p.add_argument(
        "--masks", nargs="+", action="extend", required=True, metavar="SHARD", help="mask shards"
    )
    p.add_argument(
        "--boxes",
        nargs="+",
        action="extend",
        default=[],
        metavar="SHARD",
        help="box shards (for CRF-mask and box metrics)",
    )
    p.add_argument("--out", required=True, help="output JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    result = evaluate_localization(args.cfg, args.manifest, args.masks, args.boxes or [])
    write_json(args.out, result)
    print(result["table_md"], end="")
    return 0
