"""The refine stage: ContraCAM soft masks -> CRF masks, object boxes, background patch.

For every row of a mask shard: read the image, decode the soft mask, bring both to
the CRF working resolution (shorter side ``work_size``; smaller images stay at their
size with the CRF kernels scaled unless ``upsample``, see crf.py), then

1. background rectangle: largest rectangle of zeros of the soft mask binarised at
   ``bg_threshold`` (0.2, paper Sec. 3 / background mixup);
2. binary mask: dense CRF (``crf: true``) keeping pixels whose foreground marginal is
   >= ``box_threshold``; without CRF the soft mask binarised at ``box_threshold``;
3. cleaning: drop connected components under ``min_component`` of the image;
4. boxes: outer contours, boxes under ``min_box_area`` dropped, ``margin`` added.

A soft mask with no pixel reaching ``bg_threshold`` is "empty": zero boxes, all-zero
mask, full-image background rectangle, ``empty=True`` (never an error). A mask with no
pixel below ``bg_threshold`` has no background: ``bg_rect = [0, 0, 0, 0]`` (zero
area), counted in the log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import artifacts
from ..geometry import background_rect, binarize, clean_components, decode_mask, mask_to_boxes, resize
from ..io import ImageError, encode_png, read_rgb
from ..params import merge_params, params_json
from .crf import CRF_DEFAULTS, dense_crf, scaled_params, work_shape

log = logging.getLogger(__name__)

DEFAULTS = {
    "crf": True,  # dense CRF before box extraction (paper: yes)
    "work_size": 224,  # shorter side (px) of the CRF / mask working resolution
    "upsample": False,  # smaller images: False = own size, CRF sxy scaled; True = upscale
    "crf_params": dict(CRF_DEFAULTS),  # pydensecrf defaults as the authors used
    "box_threshold": 0.5,  # on the CRF foreground marginal, or on the soft mask if crf is off
    "min_box_area": 0.01,  # boxes under 1% of the image are dropped
    "margin": 0.2,  # each side grows by 20% of the box width (x) / height (y)
    "largest_only": False,  # keep only the largest box
    "bg_threshold": 0.2,  # soft mask < 0.2 is background for the background patch
    "min_component": 0.001,  # connected components under 0.1% of the image are noise
    "skip_bad": False,  # missing/corrupt image: skip and count instead of failing
}


def refine_one(image: np.ndarray, soft: np.ndarray, params: dict) -> dict:
    """Refine one image. Returns boxes (normalised), binary mask (uint8 0/1 at the
    working resolution), bg_rect (normalised), empty, full."""
    work_size, crf_params = int(params["work_size"]), params["crf_params"]
    side = min(image.shape[0], image.shape[1])
    if side < work_size and not params["upsample"]:
        crf_params = scaled_params(crf_params, side / work_size)
        work_size = side
    shape = work_shape(image.shape[0], image.shape[1], work_size)
    img = resize(image, shape, "shrink_all")
    prob = np.clip(resize(soft.astype(np.float32), shape, "shrink_all"), 0.0, 1.0)
    rect, empty, full = background_rect(prob, params["bg_threshold"])
    if empty:
        return {"boxes": [], "mask": np.zeros(shape, np.uint8), "bg_rect": rect, "empty": True, "full": False}
    if params["crf"]:
        binary = dense_crf(img, prob, crf_params, threshold=params["box_threshold"])
    else:
        binary = binarize(prob, params["box_threshold"])
    binary = clean_components(binary, params["min_component"])
    boxes = mask_to_boxes(binary, params["min_box_area"], params["margin"], params["largest_only"])
    return {"boxes": boxes, "mask": binary, "bg_rect": rect, "empty": False, "full": full}


def refine_shard(params: dict, manifest_path, masks_path, out_path, progress: bool = True) -> dict:
    """Refine every image of one mask shard and write the box shard atomically.

    ``params`` may be partial; it is merged over DEFAULTS (unknown keys rejected).
    Returns counts: images, skipped, empty, full, boxes.
    """
    params = merge_params(DEFAULTS, params, "refine cfg")
    manifest = artifacts.read_manifest(manifest_path)
    paths = dict(zip(manifest["image_id"], manifest["abspath"]))
    table = artifacts.read_table(masks_path, artifacts.MASK_SCHEMA.names, "mask shard")
    pjson = params_json(params)
    rows, counts = [], {"images": 0, "skipped": 0, "empty": 0, "full": 0, "boxes": 0}
    for row in tqdm(
        table.to_pylist(), desc=f"refine {Path(masks_path).name}", unit="img", disable=not progress
    ):
        image_id = row["image_id"]
        if image_id not in paths:
            raise ValueError(
                f"mask shard {masks_path}: image_id {image_id!r} is not in manifest {manifest_path}"
            )
        try:
            image = read_rgb(paths[image_id])
        except (ImageError, FileNotFoundError) as exc:
            if not params["skip_bad"]:
                raise ValueError(f"image {image_id!r}: cannot read {paths[image_id]}: {exc}") from exc
            log.warning("skipping image %r: cannot read %s: %s", image_id, paths[image_id], exc)
            counts["skipped"] += 1
            continue
        try:
            soft = decode_mask(row["mask_png"])
        except ImageError as exc:
            raise ValueError(f"mask shard {masks_path}: image_id {image_id!r}: {exc}") from exc
        res = refine_one(image, soft, params)
        counts["images"] += 1
        counts["empty"] += res["empty"]
        counts["full"] += res["full"]
        counts["boxes"] += len(res["boxes"])
        h, w = res["mask"].shape
        rows.append(
            {
                "image_id": image_id,
                "boxes": res["boxes"],
                "n_boxes": len(res["boxes"]),
                "height": h,
                "width": w,
                "mask_png": encode_png(res["mask"] * 255),
                "bg_rect": res["bg_rect"],
                "empty": res["empty"],
                "params": pjson,
            }
        )
    artifacts.write_rows(out_path, rows, artifacts.BOX_SCHEMA)
    log.info("refine %s -> %s: %s", masks_path, out_path, json.dumps(counts))
    return counts
