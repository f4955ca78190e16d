"""Food-101 -> manifest.

Layout (``root``, the extracted ``food-101/``)::

    images/<class>/<id>.jpg
    meta/classes.txt   one class name a line (label = line number, from 0)
    meta/train.txt     <class>/<id> a line (no extension)      meta/test.txt

``train.txt`` gives ``train`` (a seeded ``val_fraction`` becomes ``val``),
``test.txt`` gives ``test``.
"""

from __future__ import annotations

from pathlib import Path

from . import ManifestRows, holdout, image_size, progress, require, require_root

DEFAULTS = {"type": "food101", "root": "", "val_fraction": 0.05, "seed": 0}


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "Food-101")
    require(root, "images", "Food-101", kind="folder")
    classes = [
        c.strip()
        for c in require(root, "meta/classes.txt", "Food-101").read_text().splitlines()
        if c.strip()
    ]
    index = {c: i for i, c in enumerate(classes)}
    rows = ManifestRows()
    for part in ("train", "test"):
        listing = require(root, f"meta/{part}.txt", "Food-101")
        entries = [e.strip() for e in listing.read_text().splitlines() if e.strip()]
        held = (
            holdout(entries, params["val_fraction"], params["seed"]) if part == "train" else set()
        )
        for n, entry in enumerate(progress(entries, f"Food-101 {part}"), 1):
            cls = entry.split("/")[0]
            if cls not in index:
                raise ValueError(
                    f"Food-101: {listing} line {n}: class {cls!r} not in meta/classes.txt"
                )
            path = root / "images" / f"{entry}.jpg"
            w, h = image_size(path)
            split = "val" if entry in held else part
            rows.add(entry, str(path), split, w, h, label=index[cls], labels=[index[cls]])
    return rows.frame()
