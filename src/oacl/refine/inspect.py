"""`oacl inspect`: render an image with its ContraCAM heat map, boxes and background rectangle.

The overlay (three panels: boxes | heat map | CRF mask + background rectangle) is
drawn by oacl.overlay.render_overlay.

Shards are found from the results layout when not given:
  results/cam/{dataset}/{model}/{cam}/masks_*.parquet
  results/refine/{dataset}/{model}/{cam}/boxes_*.parquet
  results/data/{dataset}/manifest.parquet
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .. import artifacts
from ..geometry import decode_mask
from ..io import encode_png, read_rgb, write_bytes, write_text
from ..overlay import gallery_ids, render_overlay

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- locating files


def _layout(shard: Path) -> tuple[Path, str, str, str] | None:
    """(results root, dataset, model, cam) of a shard stored in the results layout."""
    parts = shard.resolve().parts
    if len(parts) >= 6 and parts[-5] in ("cam", "refine"):
        return Path(*parts[:-5]), parts[-4], parts[-3], parts[-2]
    return None


def _layout_folder(folder: Path) -> tuple[Path, str, str, str] | None:
    """(results root, dataset, model, cam) of a CAM or refine folder of the results layout."""
    shards = sorted(folder.glob("masks_*.parquet")) + sorted(folder.glob("boxes_*.parquet"))
    return _layout(shards[0]) if shards else None


def _counterparts(root: Path, dataset: str, model: str, cam: str) -> dict:
    return {
        "manifest": root / "data" / dataset / "manifest.parquet",
        "masks": sorted((root / "cam" / dataset / model / cam).glob("masks_*.parquet")),
        "boxes": sorted((root / "refine" / dataset / model / cam).glob("boxes_*.parquet")),
    }


def _parquet(read, path: Path):
    """``read(path)``; a file pyarrow cannot read is an error naming it (pyarrow's own
    message, e.g. "Parquet magic bytes not found", does not)."""
    try:
        return read(path)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise ValueError(f"inspect: {path} is not a readable Parquet file: {exc}") from None


def _image_ids(path: Path) -> list[str]:
    table = _parquet(lambda p: pq.read_table(p, columns=["image_id"]), path)
    return table.column("image_id").to_pylist()


def resolve_sources(args) -> dict:
    """Manifest, mask shards and box shards for the inspect arguments (explicit flags win)."""
    found = {"manifest": None, "masks": [], "boxes": []}
    src = Path(args.source) if args.source else None
    if src is not None and not src.exists():
        raise FileNotFoundError(f"inspect: {src} does not exist")
    if src is not None and src.is_file():
        cols = _parquet(pq.read_schema, src).names
        kind = "boxes" if "bg_rect" in cols else "masks" if "orig_height" in cols else None
        if kind is None:
            raise ValueError(
                f"inspect: {src} is neither a mask shard nor a box shard (columns {cols})"
            )
        found[kind] = [src]
        lay = _layout(src)
        if lay:
            other = _counterparts(*lay)
            found["manifest"] = other["manifest"]
            # the shard with the same index in the other stage
            idx = src.stem.split("_")[-1]
            twin = "boxes" if kind == "masks" else "masks"
            found[twin] = [p for p in other[twin] if p.stem.split("_")[-1] == idx]
    elif src is not None and _layout_folder(src):  # results/{cam,refine}/<ds>/<model>/<cam>
        found.update(_counterparts(*_layout_folder(src)))
    elif src is not None:  # a results folder
        groups = sorted(
            p.parent
            for p in src.glob("cam/*/*/*/masks_*.parquet")
            if (
                args.dataset in (None, p.parts[-4])
                and args.model in (None, p.parts[-3])
                and args.cam in (None, p.parts[-2])
            )
        )
        groups = sorted(set(groups))
        if not groups:
            raise FileNotFoundError(
                f"inspect: no mask shards under {src}/cam/ (check --dataset/--model/--cam)"
            )
        chosen = groups[0]
        if args.image_id:
            for g in groups:
                if any(args.image_id in _image_ids(p) for p in g.glob("masks_*.parquet")):
                    chosen = g
                    break
            else:
                raise ValueError(
                    f"inspect: image_id {args.image_id!r} is in no mask shard under {src}"
                )
        if len(groups) > 1:
            log.info("inspect: using %s (of %d CAM folders)", chosen, len(groups))
        found.update(_counterparts(src, *chosen.parts[-3:]))
    if args.manifest:
        found["manifest"] = Path(args.manifest)
    if args.masks:
        found["masks"] = [Path(p) for p in args.masks]
    if args.boxes:
        found["boxes"] = [Path(p) for p in args.boxes]
    if found["manifest"] is None:
        raise ValueError("inspect: cannot locate the manifest; pass --manifest")
    if not found["masks"] and not found["boxes"]:
        raise ValueError("inspect: no mask or box shard given or found")
    return found


# --------------------------------------------------------------------------- command


def _overlay_for(image_id: str, manifest, masks: dict, boxes: dict, size: int) -> np.ndarray:
    if image_id not in manifest.index:
        raise ValueError(f"inspect: image_id {image_id!r} is not in the manifest")
    if image_id not in masks and image_id not in boxes:
        raise ValueError(
            f"inspect: image_id {image_id!r} is in neither the mask nor the box shards"
        )
    m = manifest.loc[image_id]
    image = read_rgb(m["abspath"])
    soft = None
    if image_id in masks:
        soft = decode_mask(masks[image_id]["mask_png"])
    gt = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
    title = f"{image_id}  split={m['split']}  {image.shape[1]}x{image.shape[0]}"
    return render_overlay(image, soft, boxes.get(image_id), gt, title, size)


def run_inspect(args) -> int:
    src = resolve_sources(args)
    manifest = artifacts.read_manifest(src["manifest"]).set_index("image_id", drop=False)
    masks = artifacts.read_masks(src["masks"]) if src["masks"] else {}
    boxes = artifacts.read_boxes(src["boxes"]) if src["boxes"] else {}
    if args.gallery:
        ids = gallery_ids(set(masks) | set(boxes), args.gallery)
        figures = []
        for image_id in ids:
            png = encode_png(_overlay_for(image_id, manifest, masks, boxes, args.size))
            b64 = base64.b64encode(png).decode("ascii")
            figures.append(
                f'<figure><img alt="{html.escape(image_id)}" src="data:image/png;base64,{b64}">'
                f"<figcaption>{html.escape(image_id)}</figcaption></figure>"
            )
        shards = ", ".join(html.escape(str(p)) for p in src["masks"] + src["boxes"])
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>oacl inspect gallery</title>"
            "<style>body{font-family:sans-serif;background:#222;color:#eee}figure{margin:12px 0}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>ContraCAM gallery ({len(ids)} images)</h1><p>{shards}</p>"
            "<p>green: boxes, yellow: ground-truth boxes, cyan: background rectangle, "
            "magenta: CRF mask outline</p>" + "\n".join(figures) + "</body></html>\n"
        )
        write_text(args.out, page)
    else:
        if not args.image_id:
            raise ValueError("inspect: give --image-id ID (or --gallery N)")
        write_bytes(
            args.out, encode_png(_overlay_for(args.image_id, manifest, masks, boxes, args.size))
        )
    log.info("inspect: wrote %s", args.out)
    return 0
