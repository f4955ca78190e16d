"""The localisation gallery: per dataset, LOC_GALLERY_IMAGES fixed test images (spread
evenly over the sorted test ids by oacl.overlay.gallery_ids, not chosen by any score),
one row each: image | GT mask | ContraCAM iter1 (lowest seed) | iter1 without NSR |
colour map | supervised Grad-CAM. Maps come from the mask shards under
results/cam/<dataset>/<model>/<cam>/ (only the report's inputs when it has them); the
colour map is the evaluation's own reference (oacl.evaluate.references), so the picture
shows what was scored. A column whose maps were not made is left out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from ..variants import parse_model
from .fair_test import FAIR_CAM, NONSR_CAM
from .html import array_img, esc, not_run, table
from .readers import cam_method, method_name, variant_order

log = logging.getLogger(__name__)

LOC_GALLERY_IMAGES = 8  # fixed: the same test images whatever the maps show
PANEL = 96  # px, the shorter side of each panel


def mask_shards(results: Path, dataset: str, inputs: list[Path] | None) -> dict:
    """{(model, cam): [mask shards]} of ``dataset``: the inputs' (or every one on disk)."""
    if inputs is None:
        paths = sorted((results / "cam" / dataset).glob("*/*/masks_*.parquet"))
    else:
        paths = sorted(
            p
            for p in inputs
            if p.name.startswith("masks_")
            and p.suffix == ".parquet"
            and len(p.parts) >= 5
            and p.parts[-5] == "cam"
            and p.parts[-4] == dataset
        )
    out: dict = {}
    for p in paths:
        out.setdefault((p.parent.parent.name, p.parent.name), []).append(p)
    return out


def _recorded_method(shard: Path) -> str | None:
    """The ``method`` in the first row's params of a mask shard (None if absent)."""
    import pyarrow.parquet as pq

    col = pq.read_table(shard, columns=["params"]).column(0)
    try:
        return json.loads(col[0].as_py() or "{}").get("method") if len(col) else None
    except (json.JSONDecodeError, AttributeError):
        return None


def _lowest(keys: list) -> tuple | None:
    """The (model, cam) of the lowest seed, baseline variant first."""
    if not keys:
        return None
    info = {m: parse_model(m) or {"variant": m, "seed": 0} for m, _ in keys}
    order = variant_order({i["variant"] for i in info.values()})
    return min(
        keys, key=lambda k: (order.index(info[k[0]]["variant"]), info[k[0]]["seed"], k[0], k[1])
    )


def gallery_columns(shards: dict, cfg: dict | None) -> list[tuple[str, tuple | None]]:
    """[(column title, (model, cam) or None for the colour map)], maps that exist only."""
    method = {k: cam_method(cfg, k[1], _recorded_method(v[0])) for k, v in shards.items()}
    contracam = [k for k in shards if method[k] == "contracam"]
    cols = []
    first = _lowest([k for k in contracam if k[1] == FAIR_CAM])
    if first:
        cols.append((f"{method_name('contracam')} {FAIR_CAM} · {first[0]}", first))
    nonsr = [k for k in contracam if k[1] == NONSR_CAM]
    same = [k for k in nonsr if first and k[0] == first[0]]
    second = _lowest(same or nonsr)
    if second:
        cols.append((f"{method_name('contracam')} {FAIR_CAM} without NSR · {second[0]}", second))
    cols.append(("colour map (reference)", None))
    sup = _lowest([k for k in shards if method[k] == "classifier"])
    if sup:
        cols.append((f"{method_name('classifier')} ({sup[1]}) · {sup[0]}", sup))
    return cols


def _heat(img: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """The soft map (any size, [0, 1]) as a jet heat map blended over ``img``."""
    h, w = img.shape[:2]
    s = cv2.resize(np.asarray(soft, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    jet = cv2.applyColorMap((np.clip(s, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return (0.5 * img + 0.5 * jet[:, :, ::-1]).astype(np.uint8)


def _gt_panel(img: np.ndarray, row) -> np.ndarray:
    """The image dimmed outside the GT mask (or its GT boxes when it has no mask)."""
    from ..io import read_mask

    h, w = img.shape[:2]
    if row["mask_abspath"]:
        gt = read_mask(row["mask_abspath"]) > 0
        gt = cv2.resize(gt.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    else:
        gt = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in row["boxes"] if row["boxes"] is not None else []:
            gt[round(y1 * h) : round(y2 * h), round(x1 * w) : round(x2 * w)] = True
    return np.where(gt[:, :, None], img, (img * 0.25).astype(np.uint8))


def dataset_gallery(results: Path, dataset: str, cfg: dict | None, inputs=None) -> str:
    """The gallery of one dataset ("" when no map of it was made)."""
    from .. import artifacts
    from ..evaluate.references import colour_saliency
    from ..geometry import decode_mask, resize
    from ..io import read_rgb
    from ..overlay import gallery_ids

    shards = mask_shards(results, dataset, inputs)
    cols = gallery_columns(shards, cfg) if shards else []
    if not any(key for _, key in cols):
        return ""
    manifest_path = results / "data" / dataset / "manifest.parquet"
    if not manifest_path.exists():
        return not_run(f"gallery: no manifest {manifest_path}")
    manifest = artifacts.read_manifest(manifest_path).set_index("image_id", drop=False)
    masks = {key: artifacts.read_masks(shards[key]) for _, key in cols if key}
    ids = set.intersection(*(set(m) for m in masks.values())) & set(manifest.index)
    test = manifest.loc[sorted(ids)]
    test = test[(test["split"] == "test") & (test["variant"] == "original")]
    picked = gallery_ids(list(test.index), LOC_GALLERY_IMAGES)
    rows = []
    for image_id in picked:
        m = manifest.loc[image_id]
        full = read_rgb(m["abspath"])
        h0, w0 = full.shape[:2]
        size = (PANEL, max(1, round(PANEL * w0 / h0)))
        img = resize(full, size, "nearest" if PANEL >= h0 else "area")
        cells = [
            esc(image_id),
            array_img(img, f"{image_id} image"),
            array_img(_gt_panel(img, m), f"{image_id} GT mask"),
        ]
        for title, key in cols:
            soft = (
                colour_saliency(full)
                if key is None
                else decode_mask(masks[key][image_id]["mask_png"])
            )
            cells.append(array_img(_heat(img, soft), f"{image_id} {title}"))
        rows.append(cells)
    return (
        f"<h4>Gallery: {len(picked)} fixed test images</h4>"
        + table(["image id", "image", "GT mask"] + [t for t, _ in cols], rows, raw=True)
        + '<p class="muted">The images are spread evenly over the sorted test image ids '
        "(oacl.overlay.gallery_ids), the same for every map, not chosen by score. Heat maps: "
        "jet, blue 0 to red 1, over the image; GT: the image dimmed outside the object.</p>"
    )
