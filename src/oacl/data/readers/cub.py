"""CUB-200-2011 -> manifest with boxes and segmentation masks.

Layout (``root``, the extracted ``CUB_200_2011/``, with the separately released
``segmentations/`` moved or linked inside it)::

    images/<NNN.Class_Name>/<name>.jpg      images.txt            <id> <relpath>
    segmentations/<NNN.Class_Name>/<name>.png (optional)
    image_class_labels.txt  <id> <class 1..200>    train_test_split.txt  <id> <1 train|0 test>
    bounding_boxes.txt      <id> <x> <y> <w> <h>   (pixels)   classes.txt (optional)

Splits: by default from ``train_test_split.txt`` (``is_train=1`` images are ``train``, a
seeded ``val_fraction`` of them ``val``, the others ``test``). ``split_file`` names a
ReDO-style split file instead, ``<id> <0|1|2>`` per image (0 train, 1 val, 2 test): the
split the paper's localisation numbers use (10,000 / 788 / 1,000 images).

Labels are 0..199. The segmentation PNGs are soft (the fraction of annotators marking a
pixel). ``protocol: paper`` writes binary masks as the authors binarise them (soft value
> 0.5, i.e. at least 3 of 5 annotators) under ``masks/``; ``protocol: oacl`` keeps the
older rule: with ``mask_threshold`` null the soft PNGs are referenced in place (and any
non-zero pixel is foreground downstream), with t in (0, 1] binary masks (value >= t * 255)
are written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...io import read_mask, write_json
from . import (
    ManifestRows,
    holdout,
    image_size,
    normalised_box,
    progress,
    require,
    require_root,
    write_png,
)

log = logging.getLogger(__name__)

DEFAULTS = {
    "type": "cub",
    "root": "",
    "val_fraction": 0.05,  # of the train images, held out as "val"
    "seed": 0,
    "mask_threshold": None,  # protocol oacl -- null: soft masks in place; t: write binary masks
    "split_file": "",  # ReDO split "<id> <0|1|2>" (absolute or relative to root); "" = train_test_split.txt
    "protocol": "oacl",  # "paper": binary masks at soft value > 0.5 (the authors' rule)
}
PROTOCOLS = ("oacl", "paper")
_REDO_SPLITS = {"0": "train", "1": "val", "2": "test"}


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
    protocol = params["protocol"]
    if protocol not in PROTOCOLS:
        raise ValueError(f"CUB: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "paper" and params["mask_threshold"] is not None:
        raise ValueError(
            "CUB: mask_threshold applies to protocol 'oacl'; protocol 'paper' binarises at > 0.5"
        )
    split_name = params["split_file"]
    tables = ["images", "image_class_labels", "bounding_boxes"] + (
        [] if split_name else ["train_test_split"]
    )
    files = {k: require(root, f"{k}.txt", "CUB") for k in tables}
    require(root, "images", "CUB", kind="folder")
    images = read_table(files["images"], 1)
    labels = read_table(files["image_class_labels"], 1)
    bboxes = read_table(files["bounding_boxes"], 4)
    if split_name:
        split_of, checks = _redo_split(root, split_name)
    else:
        split_of, checks = _official_split(files["train_test_split"], images, params)
    for k, table in [("image_class_labels.txt", labels), ("bounding_boxes.txt", bboxes)] + checks:
        missing = [i for i in images if i not in table]
        if missing:
            raise ValueError(
                f"CUB root {root}: {k} has no entry for image id {missing[0]} of images.txt"
            )
    seg_dir = root / "segmentations"
    if not seg_dir.is_dir():
        log.warning("CUB root %s: no segmentations/ folder; rows get no mask", root)
    thr = params["mask_threshold"]
    if thr is not None and not 0 < thr <= 1:
        raise ValueError(f"CUB: mask_threshold must be in (0, 1] or null, got {thr}")

    rows = ManifestRows()
    for iid in progress(sorted(images, key=int), "CUB"):
        rel = images[iid][0]
        path = root / "images" / rel
        w, h = image_size(path)
        label = int(labels[iid][0]) - 1
        box = normalised_box(*map(float, bboxes[iid]), w, h)
        rows.add(
            iid,
            str(path),
            split_of[iid],
            w,
            h,
            label=label,
            labels=[label],
            boxes=[box],
            box_labels=[label],
            mask_path=_mask_path(seg_dir, rel, protocol, thr, out_dir),
        )

    classes = root / "classes.txt"
    if classes.is_file():
        names = read_table(classes, 1)
        write_json(
            out_dir / "cub_classes.json",
            [{"index": int(k) - 1, "name": v[0]} for k, v in names.items()],
        )
    return rows.frame()


def _redo_split(root: Path, split_name: str) -> tuple[dict, list]:
    """({image id: split}, [(file name, table)]) from a ReDO split file ``<id> <0|1|2>``."""
    split_path = Path(split_name).expanduser()
    split_path = split_path if split_path.is_absolute() else root / split_path
    if not split_path.is_file():
        raise FileNotFoundError(f"CUB: split_file {split_path} not found")
    split_table = read_table(split_path, 1)
    bad = {v[0] for v in split_table.values()} - set(_REDO_SPLITS)
    if bad:
        raise ValueError(
            f"CUB: split_file {split_path} has split value(s) {sorted(bad)}; expected 0, 1 or 2"
        )
    split_of = {i: _REDO_SPLITS[v[0]] for i, v in split_table.items()}
    return split_of, [(split_path.name, split_table)]


def _official_split(path: Path, images: dict, params: dict) -> tuple[dict, list]:
    """({image id: split}, [(file name, table)]) from train_test_split.txt, a seeded
    ``val_fraction`` of the train images held out as val."""
    is_train = read_table(path, 1)
    train_ids = [i for i in images if i in is_train and is_train[i][0] == "1"]
    held = holdout(train_ids, params["val_fraction"], params["seed"])
    split_of = {
        i: "test" if v[0] != "1" else ("val" if i in held else "train") for i, v in is_train.items()
    }
    return split_of, [("train_test_split.txt", is_train)]


def _mask_path(seg_dir: Path, rel: str, protocol: str, thr, out_dir: Path) -> str:
    """The image's mask: the soft segmentation in place, or a binary one written under
    ``masks/`` (protocol paper, or a ``mask_threshold``); "" when it has none."""
    seg = (seg_dir / rel).with_suffix(".png")
    if not seg.is_file():
        return ""
    if protocol == "oacl" and thr is None:
        return str(seg)
    soft = read_mask(seg)
    # paper: the authors' seg / 255 > 0.5; oacl: value >= t * 255
    binary = soft > 127.5 if protocol == "paper" else soft >= thr * 255
    mask_path = f"masks/{Path(rel).with_suffix('.png').as_posix()}"
    write_png(out_dir / mask_path, binary.astype("uint8") * 255)
    return mask_path
