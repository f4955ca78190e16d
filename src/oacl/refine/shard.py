"""The refine stage: ContraCAM soft masks -> CRF masks, object boxes, background patch.

``refine_shard`` runs ``refine_one`` (oacl.refine.refinement, the refinement itself;
parameters: oacl.refine.params) on every row of a mask shard and writes the box shard.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import artifacts
from ..geometry import decode_mask
from ..io import ImageError, encode_png, read_rgb
from ..params import merge_params, params_json
from ..progress import progress as progress_bar
from .params import DEFAULTS, check_params
from .refinement import refine_one

log = logging.getLogger(__name__)


def refine_shard(
    params: dict, manifest_path, masks_path, out_path, progress: bool = True, n_shards: int = 0
) -> dict:
    """Refine every image of one mask shard and write the box shard atomically; with
    ``n_shards``, box shards of a higher index beside it (a run with more shards) are removed.

    ``params`` may be partial; it is merged over DEFAULTS (unknown keys rejected) and
    checked. Returns counts: images, skipped, empty, full, boxes.
    """
    params = merge_params(DEFAULTS, params, "refine cfg")
    check_params(params)
    manifest = artifacts.read_manifest(manifest_path)
    paths = dict(zip(manifest["image_id"], manifest["abspath"]))
    table = artifacts.read_table(masks_path, artifacts.MASK_SCHEMA.names, "mask shard")
    pjson = params_json(params)
    rows, counts = [], {"images": 0, "skipped": 0, "empty": 0, "full": 0, "boxes": 0}
    for row in progress_bar(
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
                raise ValueError(
                    f"image {image_id!r}: cannot read {paths[image_id]}: {exc}"
                ) from exc
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
    if n_shards:
        artifacts.remove_stale_shards(out_path, n_shards)
    log.info("refine %s -> %s: %s", masks_path, out_path, json.dumps(counts))
    return counts
