"""`oacl inspect`: render an image with its ContraCAM heat map, boxes and background rectangle.

One overlay is three panels side by side:
  1. the image with the predicted boxes (green) and ground-truth boxes (yellow, thin);
  2. the soft ContraCAM mask as a jet heat map blended over the image;
  3. the refined (CRF) binary mask: background dimmed, mask outline in magenta, and the
     background rectangle used for background mixup in cyan.
Small images are upscaled (nearest neighbour, so pixels stay honest) to ``size`` px.

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

import cv2
import numpy as np
import pyarrow.parquet as pq

from .. import artifacts
from ..geometry import decode_mask
from ..io import decode_png, encode_png, read_rgb, write_bytes, write_text

log = logging.getLogger(__name__)

BOX_COLOUR, GT_COLOUR, RECT_COLOUR, EDGE_COLOUR = (0, 220, 0), (255, 220, 0), (0, 230, 255), (255, 0, 255)


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


def _image_ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()


def resolve_sources(args) -> dict:
    """Manifest, mask shards and box shards for the inspect arguments (explicit flags win)."""
    found = {"manifest": None, "masks": [], "boxes": []}
    src = Path(args.source) if args.source else None
    if src is not None and not src.exists():
        raise FileNotFoundError(f"inspect: {src} does not exist")
    if src is not None and src.is_file():
        cols = pq.read_schema(src).names
        kind = "boxes" if "bg_rect" in cols else "masks" if "orig_height" in cols else None
        if kind is None:
            raise ValueError(f"inspect: {src} is neither a mask shard nor a box shard (columns {cols})")
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
                raise ValueError(f"inspect: image_id {args.image_id!r} is in no mask shard under {src}")
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


# --------------------------------------------------------------------------- drawing


def _label(panel: np.ndarray, text: str) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(panel, (0, 0), (tw + 8, th + 8), (0, 0, 0), -1)
    cv2.putText(panel, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def _draw_boxes(panel: np.ndarray, boxes, colour, thickness: int) -> None:
    h, w = panel.shape[:2]
    for x1, y1, x2, y2 in boxes:
        p1 = (int(round(x1 * w)), int(round(y1 * h)))
        p2 = (max(int(round(x2 * w)) - 1, p1[0]), max(int(round(y2 * h)) - 1, p1[1]))
        cv2.rectangle(panel, p1, p2, colour, thickness)


def render_overlay(
    image, soft=None, box_row=None, gt_boxes=(), title: str = "", size: int = 256
) -> np.ndarray:
    """Three panels (boxes | heat map | CRF mask + background rectangle) as uint8 RGB."""
    h0, w0 = image.shape[:2]
    scale = size / min(h0, w0)
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    interp = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    img = cv2.resize(image, (w, h), interpolation=interp)

    boxes_panel = img.copy()
    _draw_boxes(boxes_panel, gt_boxes, GT_COLOUR, 1)
    if box_row is not None:
        _draw_boxes(boxes_panel, box_row["boxes"], BOX_COLOUR, 2)
    _label(boxes_panel, f"boxes: {len(box_row['boxes'])}" if box_row is not None else "image (no box shard)")

    if soft is not None:
        heat = cv2.resize(soft.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        jet = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        heat_panel = (0.5 * img + 0.5 * jet).astype(np.uint8)
        _label(heat_panel, f"ContraCAM (max {soft.max():.2f})")
    else:
        heat_panel = np.full_like(img, 64)
        _label(heat_panel, "no mask shard")

    if box_row is not None:
        crf = cv2.resize(decode_png(box_row["mask_png"]), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        mask_panel = np.where(crf[:, :, None], img, (img * 0.3).astype(np.uint8))
        contours, _ = cv2.findContours(crf.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(mask_panel, contours, -1, EDGE_COLOUR, 1)
        _draw_boxes(mask_panel, [box_row["bg_rect"]], RECT_COLOUR, 2)
        _label(mask_panel, "CRF mask + bg rect" + (" (empty CAM)" if box_row["empty"] else ""))
    else:
        mask_panel = np.full_like(img, 64)
        _label(mask_panel, "no box shard")

    gap = np.full((h, 4, 3), 255, np.uint8)
    strip = np.concatenate([boxes_panel, gap, heat_panel, gap, mask_panel], axis=1)
    header = np.full((24, strip.shape[1], 3), 32, np.uint8)
    cv2.putText(header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([header, strip], axis=0)


# --------------------------------------------------------------------------- command


def _overlay_for(image_id: str, manifest, masks: dict, boxes: dict, size: int) -> np.ndarray:
    if image_id not in manifest.index:
        raise ValueError(f"inspect: image_id {image_id!r} is not in the manifest")
    if image_id not in masks and image_id not in boxes:
        raise ValueError(f"inspect: image_id {image_id!r} is in neither the mask nor the box shards")
    m = manifest.loc[image_id]
    image = read_rgb(m["abspath"])
    soft = None
    if image_id in masks:
        soft = decode_mask(masks[image_id]["mask_png"])
    gt = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
    title = f"{image_id}  split={m['split']}  {image.shape[1]}x{image.shape[0]}"
    return render_overlay(image, soft, boxes.get(image_id), gt, title, size)


def gallery_ids(ids, n: int) -> list[str]:
    """N image ids spread evenly over the sorted ids (deterministic)."""
    ids = sorted(ids)
    if n >= len(ids):
        return ids
    return [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]


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
        write_bytes(args.out, encode_png(_overlay_for(args.image_id, manifest, masks, boxes, args.size)))
    log.info("inspect: wrote %s", args.out)
    return 0
