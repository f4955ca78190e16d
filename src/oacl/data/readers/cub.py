"""CUB-200-2011 -> manifest with boxes and segmentation masks.

Layout (``root``, the extracted ``CUB_200_2011/``, with the separately released
``segmentations/`` moved or linked inside it)::

    images/<NNN.Class_Name>/<name>.jpg      images.txt            <id> <relpath>
    segmentations/<NNN.Class_Name>/<name>.png (optional)
    image_class_labels.txt  <id> <class 1..200>    train_test_split.txt  <id> <1 train|0 test>
    bounding_boxes.txt      <id> <x> <y> <w> <h>   (pixels)   classes.txt (optional)

``is_train=1`` images are ``train`` (a seeded ``val_fraction`` of them ``val``), the
others ``test``. Labels are 0..199. The segmentation PNGs are soft (the fraction of
annotators marking a pixel); with ``mask_threshold`` null they are referenced in place,
with a value t in (0, 1] binary masks (value >= t * 255) are written under ``masks/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...io import read_mask, write_json
from . import ManifestRows, holdout, image_size, normalised_box, progress, require, require_root, write_png

log = logging.getLogger(__name__)

DEFAULTS = {
    "type": "cub",
    "root": "",
    "val_fraction": 0.05,  # of the train images, held out as "val"
    "seed": 0,
    "mask_threshold": None,  # null: reference soft masks in place; t: write binary masks
}


def read_table(path: Path, ncols: int) -> dict[str, list[str]]:
    """``<id> <v1> ... `` lines -> {id: [v1, ...]}; a short line names file and line."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split(None, ncols)
        if not parts:
            continue
        if len(parts) < ncols + 1:
            raise ValueError(f"{path} line {n}: expected {ncols + 1} fields, got {line!r}")
        out[parts[0]] = parts[1:]
    return out


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "CUB")
    out_dir = Path(out_dir)
    files = {
        k: require(root, f"{k}.txt", "CUB")
        for k in ("images", "image_class_labels", "train_test_split", "bounding_boxes")
    }
    require(root, "images", "CUB", kind="folder")
    images = read_table(files["images"], 1)
    labels = read_table(files["image_class_labels"], 1)
    is_train = read_table(files["train_test_split"], 1)
    bboxes = read_table(files["bounding_boxes"], 4)
    for k, table in (
        ("image_class_labels", labels),
        ("train_test_split", is_train),
        ("bounding_boxes", bboxes),
    ):
        missing = [i for i in images if i not in table]
        if missing:
            raise ValueError(f"CUB root {root}: {k}.txt has no entry for image id {missing[0]} of images.txt")
    seg_dir = root / "segmentations"
    if not seg_dir.is_dir():
        log.warning("CUB root %s: no segmentations/ folder; rows get no mask", root)
    thr = params["mask_threshold"]
    if thr is not None and not 0 < thr <= 1:
        raise ValueError(f"CUB: mask_threshold must be in (0, 1] or null, got {thr}")

    train_ids = [i for i in images if is_train[i][0] == "1"]
    held = holdout(train_ids, params["val_fraction"], params["seed"])
    rows = ManifestRows()
    for iid in progress(sorted(images, key=int), "CUB"):
        rel = images[iid][0]
        path = root / "images" / rel
        w, h = image_size(path)
        label = int(labels[iid][0]) - 1
        split = "test" if is_train[iid][0] != "1" else ("val" if iid in held else "train")
        mask_path = ""
        seg = (seg_dir / rel).with_suffix(".png")
        if seg.is_file():
            if thr is None:
                mask_path = str(seg)
            else:
                mask_path = f"masks/{Path(rel).with_suffix('.png').as_posix()}"
                write_png(out_dir / mask_path, (read_mask(seg) >= thr * 255).astype("uint8") * 255)
        box = normalised_box(*map(float, bboxes[iid]), w, h)
        rows.add(
            iid,
            str(path),
            split,
            w,
            h,
            label=label,
            labels=[label],
            boxes=[box],
            box_labels=[label],
            mask_path=mask_path,
        )

    classes = root / "classes.txt"
    if classes.is_file():
        names = read_table(classes, 1)
        write_json(
            out_dir / "cub_classes.json", [{"index": int(k) - 1, "name": v[0]} for k, v in names.items()]
        )
    return rows.frame()
