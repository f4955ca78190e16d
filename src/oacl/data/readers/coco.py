"""COCO 2017 (instances) -> manifest; optional union masks, GT crop boxes, COCO-Crop.

Layout (``root``)::

    train2017/*.jpg   val2017/*.jpg
    annotations/instances_train2017.json   annotations/instances_val2017.json

Per image: ``labels`` (contiguous 0..79, sorted category ids; the mapping is written to
``coco_categories.json``), ``boxes`` (every non-crowd instance, xywh -> normalised xyxy)
and ``box_labels``. Crowd annotations (``iscrowd=1``) are excluded from boxes, labels
and crops, but are foreground in the union masks (a crowd of people is still object).

``gt_crop_boxes`` (extra column) holds the OA-Crop (GT) boxes, grown by ``gt_margin``
(paper App. B.2) and filtered by ``protocol``:

* ``paper``: as the authors build them -- every annotation, crowd included, whose
  annotated (mask) ``area`` is at least ``gt_min_area`` of the image;
* ``oacl``: non-crowd annotations whose *box* covers at least ``gt_min_area``.

The same
boxes are written as a box shard ``gt_boxes.parquet`` (BOX_SCHEMA, empty mask_png,
bg_rect = full image) so pretraining takes them with ``--boxes`` exactly like CAM boxes;
``boxes`` stays the raw ground truth used by localisation evaluation.

COCO-Crop (``crops: true``), written as JPEGs under ``crops/<source>/``; each row has the
object's class as ``label`` and ``scene_id`` = the COCO image id:

* ``paper``: every annotation (crowd included) with mask ``area`` >= ``gt_min_area`` of
  the image; the box grown by ``crop_margin`` (fractional, clipped), cropped with the
  corners rounded to pixels, then resized so the shorter side is ``crop_size`` (256);
* ``oacl``: every non-crowd object whose box has a shorter side of at least
  ``crop_min_size`` px, cropped with ``crop_margin`` (corners floored/ceiled), not resized.
 Image folders map to splits through ``splits``; images of a source mapped
to ``train`` are split again: a seeded ``val_fraction`` of them becomes ``val``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ...artifacts import BOX_SCHEMA, write_rows
from ...geometry import crop_window, expand_box, filter_boxes
from ...io import read_rgb, write_json
from ...params import params_json
from . import (
    ManifestRows,
    holdout,
    normalised_box,
    progress,
    require,
    require_root,
    write_jpeg,
    write_png,
)

log = logging.getLogger(__name__)

DEFAULTS = {
    "type": "coco",
    "root": "",
    # image folder -> split; set a folder to null to skip it
    "splits": {"train2017": "train", "val2017": "test"},
    "val_fraction": 0.05,  # of the images mapped to "train", held out as "val"
    "seed": 0,
    "check_files": True,  # every image listed in the json exists in its folder
    "protocol": "oacl",  # "paper": GT crop boxes and COCO-Crop as the authors build them
    "masks": False,  # write per-image union foreground PNGs under masks/
    "gt_min_area": 0.01,  # OA-Crop (GT): drop boxes under 1% of the image
    "gt_margin": 0.2,  # OA-Crop (GT): 20% margin
    "gt_box_shard": True,  # also write gt_boxes.parquet (BOX_SCHEMA)
    "crops": False,  # COCO-Crop: materialise object crops under crops/
    "crop_splits": {"train2017": "objcrop_train", "val2017": "objcrop_val"},
    "crop_margin": 0.2,
    "crop_min_size": 32,  # protocol oacl: shorter side of the object box, pixels
    "crop_size": 256,  # protocol paper: shorter side of the saved crop, pixels
    "reuse_files": False,  # keep mask/crop files already written (resume a killed run)
}


PROTOCOLS = ("oacl", "paper")


def layout(params: dict) -> list[tuple[str, str]]:
    """(path under root, "file" | "folder") that the mapped splits need; also checked
    before any job (oacl.data.prepare.missing_paths)."""
    out = []
    for src, split in params["splits"].items():
        if split:
            out += [(f"annotations/instances_{src}.json", "file"), (src, "folder")]
    return out


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "COCO")
    if params["protocol"] not in PROTOCOLS:
        raise ValueError(f"COCO: protocol must be one of {PROTOCOLS}, got {params['protocol']!r}")
    out_dir = Path(out_dir)
    sources = {s: sp for s, sp in params["splits"].items() if sp}
    if not sources:
        raise ValueError("COCO: 'splits' maps no image folder to a split")
    # check the whole layout before the (slow) json loads
    for rel, kind in layout(params):
        require(root, rel, "COCO", kind=kind)

    rows = ManifestRows(extra={"gt_crop_boxes": []})
    box_rows: list[dict] = []
    categories = None
    for src, split in sources.items():
        ann_file = root / f"annotations/instances_{src}.json"
        data = _load_json(ann_file)
        cats = sorted((c["id"], c["name"], c.get("supercategory", "")) for c in data["categories"])
        if categories is None:
            categories = cats
        elif cats != categories:
            raise ValueError(
                f"COCO root {root}: categories of {ann_file.name} differ from the first annotation file"
            )
        cat_index = {cid: i for i, (cid, _, _) in enumerate(categories)}
        _read_source(root, src, split, data, cat_index, params, out_dir, rows, box_rows)
        del data

    write_json(
        out_dir / "coco_categories.json",
        [
            {"index": i, "coco_id": cid, "name": n, "supercategory": s}
            for i, (cid, n, s) in enumerate(categories)
        ],
    )
    if params["gt_box_shard"]:
        write_rows(out_dir / "gt_boxes.parquet", box_rows, BOX_SCHEMA)
    return rows.frame()


def _load_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"COCO annotation file {path} is not valid JSON: {exc}") from exc
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(
            f"COCO annotation file {path}: lacks key(s) {missing} (not an instances file?)"
        )
    return data


def _read_source(root, src, split, data, cat_index, params, out_dir, rows, box_rows):
    """Rows (and box-shard rows, and crop rows) of the images of one image folder."""
    img_dir = root / src
    images = sorted(data["images"], key=lambda im: im["id"])
    if params["check_files"]:
        _check_files(root, src, images)
    anns_by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    held = (
        holdout([str(im["id"]) for im in images], params["val_fraction"], params["seed"])
        if split == "train"
        else set()
    )
    crop_split = (params["crop_splits"] or {}).get(src) if params["crops"] else None
    img_prefix = f"{img_dir}{os.sep}"  # string join: a Path per image costs ~20% of indexing
    box_params = params_json(
        {
            "source": f"COCO ground truth ({src})",
            "protocol": params["protocol"],
            "min_area": params["gt_min_area"],
            "margin": params["gt_margin"],
        }
    )

    for im in progress(images, f"COCO {src}"):
        iid, w, h = im["id"], im["width"], im["height"]
        anns = anns_by_image.get(iid, [])
        boxes, box_labels, gt_crop = _image_boxes(anns, w, h, cat_index, params)
        mask_path = _union_mask_file(im, anns, src, params, out_dir) if params["masks"] else ""
        image_id = str(iid)
        rows.add(
            image_id,
            img_prefix + im["file_name"],
            "val" if image_id in held else split,
            w,
            h,
            scene_id=iid,
            labels=sorted(set(box_labels)),
            boxes=boxes,
            box_labels=box_labels,
            mask_path=mask_path,
            gt_crop_boxes=gt_crop,
        )
        box_rows.append(
            {
                "image_id": image_id,
                "boxes": gt_crop,
                "n_boxes": len(gt_crop),
                "height": h,
                "width": w,
                "mask_png": b"",
                "bg_rect": [0.0, 0.0, 1.0, 1.0],
                "empty": not gt_crop,
                "params": box_params,
            }
        )
        if crop_split:
            _add_crops(
                img_dir / im["file_name"],
                (w, h),
                iid,
                anns,
                cat_index,
                crop_split,
                src,
                params,
                out_dir,
                rows,
            )


def _check_files(root: Path, src: str, images: list[dict]) -> None:
    """Every image the annotation file lists is in the image folder."""
    present = set(os.listdir(root / src))
    missing = [im["file_name"] for im in images if im["file_name"] not in present]
    if missing:
        raise FileNotFoundError(
            f"COCO root {root}: {len(missing)} image(s) listed in annotations/instances_{src}.json "
            f"are missing from {src}/ (e.g. {missing[0]})"
        )


def _image_boxes(anns: list[dict], w: int, h: int, cat_index: dict, params: dict) -> tuple:
    """(boxes, box_labels, gt_crop_boxes) of one image: every non-crowd instance's
    normalised box and class, and the OA-Crop (GT) boxes of ``protocol``."""
    objects = [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    boxes = [normalised_box(*a["bbox"], w, h) for a in objects]
    box_labels = [cat_index[a["category_id"]] for a in objects]
    if params["protocol"] == "paper":
        gt_src = [normalised_box(*a["bbox"], w, h) for a in crop_objects(anns, w, h, params)]
    else:
        gt_src = filter_boxes(boxes, params["gt_min_area"])
    gt_crop = [expand_box(b, params["gt_margin"]) for b in gt_src]
    return boxes, box_labels, gt_crop


def _union_mask_file(im: dict, anns: list[dict], src: str, params: dict, out_dir: Path) -> str:
    """Write the image's union foreground mask (kept when ``reuse_files`` finds it); its
    path relative to ``out_dir``."""
    mask_path = f"masks/{src}/{Path(im['file_name']).stem}.png"
    if not (params["reuse_files"] and (out_dir / mask_path).exists()):
        write_png(out_dir / mask_path, union_mask(anns, im["height"], im["width"]) * np.uint8(255))
    return mask_path


def union_mask(anns: list[dict], height: int, width: int) -> np.ndarray:
    """Union of all instance masks (polygons, RLE and crowd RLE) as a 0/1 uint8 array."""
    from pycocotools import mask as mask_utils

    out = np.zeros((height, width), np.uint8)
    for ann in anns:
        seg = ann.get("segmentation")
        if not seg:
            continue
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE (crowds)
            rle = mask_utils.frPyObjects(seg, height, width)
        else:  # compressed RLE
            rle = dict(seg)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            out |= mask_utils.decode(rle).astype(np.uint8)
    return out


def crop_objects(anns: list[dict], width: int, height: int, params: dict) -> list[dict]:
    """Protocol paper: the annotations that give GT crop boxes and COCO-Crop crops --
    every one, crowd included, whose annotated mask ``area`` is >= ``gt_min_area`` of the
    image (the authors skip an object when its area is below 1 % of the image)."""
    min_area = params["gt_min_area"] * width * height
    return [a for a in anns if a.get("area", 0) >= min_area]


def paper_crop_box(bbox, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """Pixel crop (x1, y1, x2, y2) of the authors' COCO-Crop: the box grown by ``margin``
    of its size on each side, clipped to the image, corners rounded to pixels."""
    return tuple(int(round(v)) for v in expand_box(bbox, margin, width, height, xywh=True))


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the shorter side ``size`` and the longer one scaled, truncated."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _image_for_crops(image_path, W, H, rel, reuse, out_dir):
    """The image's pixels, or None when every crop file exists and may be reused."""
    if reuse and all((out_dir / r).exists() for r in rel.values()):
        return None
    rgb = read_rgb(image_path)
    if rgb.shape[:2] != (H, W):
        raise ValueError(
            f"{image_path}: size {rgb.shape[1]}x{rgb.shape[0]} differs from the annotation's {W}x{H}"
        )
    return rgb


def _add_crop_row(rows, a, rel_path, split, iid, cat_index, window, out_size):
    """One COCO-Crop row: the crop ``window`` (x1, y1, w, h) of annotation ``a`` in the
    source image, stored at ``out_size``, its object box normalised inside the crop."""
    x1, y1, cw, ch = window
    x, y, bw, bh = a["bbox"]
    label = cat_index[a["category_id"]]
    inner = normalised_box(x - x1, y - y1, bw, bh, cw, ch)  # the object inside its crop
    rows.add(
        f"crop{a['id']}",
        rel_path,
        split,
        out_size[0],
        out_size[1],
        scene_id=iid,
        label=label,
        labels=[label],
        boxes=[inner],
        box_labels=[label],
    )


def _add_crops(image_path, size, iid, objects, cat_index, split, src, params, out_dir, rows):
    """COCO-Crop rows for one image; the image is decoded only if an object qualifies."""
    if params["protocol"] == "paper":
        _add_paper_crops(
            image_path, size, iid, objects, cat_index, split, src, params, out_dir, rows
        )
        return
    objects = [
        a for a in objects if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0
    ]
    keep = [a for a in objects if min(a["bbox"][2], a["bbox"][3]) >= params["crop_min_size"]]
    if not keep:
        return
    reuse = params["reuse_files"]
    rel = {a["id"]: f"crops/{src}/{a['id']}.jpg" for a in keep}
    W, H = size
    rgb = _image_for_crops(image_path, W, H, rel, reuse, out_dir)
    for a in keep:
        x1, y1, x2, y2 = crop_window(a["bbox"], params["crop_margin"], W, H, xywh=True)
        if rgb is not None:
            write_jpeg(out_dir / rel[a["id"]], rgb[y1:y2, x1:x2], reuse=reuse)
        cw, ch = x2 - x1, y2 - y1
        _add_crop_row(rows, a, rel[a["id"]], split, iid, cat_index, (x1, y1, cw, ch), (cw, ch))


def _add_paper_crops(image_path, size, iid, anns, cat_index, split, src, params, out_dir, rows):
    """COCO-Crop as the authors build it (protocol paper; see the module doc)."""
    W, H = size
    keep = [a for a in crop_objects(anns, W, H, params) if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if not keep:
        return
    from PIL import Image

    reuse = params["reuse_files"]
    rel = {a["id"]: f"crops/{src}/{a['id']}.jpg" for a in keep}
    rgb = _image_for_crops(image_path, W, H, rel, reuse, out_dir)
    for a in keep:
        x1, y1, x2, y2 = paper_crop_box(a["bbox"], W, H, params["crop_margin"])
        cw, ch = max(x2 - x1, 1), max(y2 - y1, 1)
        out_w, out_h = shorter_side_size(cw, ch, params["crop_size"])
        if rgb is not None:
            crop = Image.fromarray(rgb[y1 : y1 + ch, x1 : x1 + cw]).resize(
                (out_w, out_h), Image.BILINEAR
            )
            write_jpeg(out_dir / rel[a["id"]], np.asarray(crop), reuse=reuse)
        _add_crop_row(
            rows, a, rel[a["id"]], split, iid, cat_index, (x1, y1, cw, ch), (out_w, out_h)
        )
