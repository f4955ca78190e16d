"""Oxford-IIIT Pets -> manifest with binary masks from the trimaps.

Layout (``root``)::

    images/<Breed_Name>_<n>.jpg
    annotations/trainval.txt, annotations/test.txt   <name> <class 1..37> <species> <breed id>
    annotations/trimaps/<name>.png                    1 = pet, 2 = background, 3 = boundary

``trainval`` gives ``train`` (a seeded ``val_fraction`` becomes ``val``), ``test``
gives ``test``; labels are 0..36. Trimaps are turned into binary masks (pet, plus the
boundary band when ``boundary_is_fg``) written under ``masks/``; the row's box is the
bounding box of that mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...geometry import mask_box
from ...io import ImageError, write_json
from . import (
    ManifestRows,
    holdout,
    image_size,
    progress,
    require,
    require_root,
    write_png,
)

DEFAULTS = {
    "type": "pets",
    "root": "",
    "val_fraction": 0.05,
    "seed": 0,
    "masks": True,
    "boundary_is_fg": True,
}


def read_trimap(path: Path) -> np.ndarray:
    """Trimap values 1/2/3 as stored (no palette-to-grey conversion, which would change them)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode in ("L", "P", "I", "I;16") else im.convert("L")).copy()
    except Exception as exc:
        raise ImageError(f"{path}: cannot decode trimap ({type(exc).__name__}: {exc})") from exc


def _listing(path: Path) -> list[tuple[str, int]]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(
                f"Pets: {path} line {n}: expected '<name> <class> <species> <breed>', got {line!r}"
            )
        out.append((parts[0], int(parts[1]) - 1))
    return out


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "Oxford-IIIT Pets")
    out_dir = Path(out_dir)
    require(root, "images", "Oxford-IIIT Pets", kind="folder")
    if params["masks"]:
        require(root, "annotations/trimaps", "Oxford-IIIT Pets", kind="folder")
    fg_values = [1, 3] if params["boundary_is_fg"] else [1]
    rows = ManifestRows()
    names: dict[int, str] = {}
    for part, listing in (("train", "trainval"), ("test", "test")):
        entries = _listing(require(root, f"annotations/{listing}.txt", "Oxford-IIIT Pets"))
        held = (
            holdout([e for e, _ in entries], params["val_fraction"], params["seed"])
            if part == "train"
            else set()
        )
        for name, label in progress(entries, f"Pets {listing}"):
            names.setdefault(label, name.rsplit("_", 1)[0])
            path = root / "images" / f"{name}.jpg"
            w, h = image_size(path)
            mask_path, boxes = "", []
            trimap = root / "annotations/trimaps" / f"{name}.png"
            if params["masks"] and trimap.is_file():
                fg = np.isin(read_trimap(trimap), fg_values).astype(np.uint8)
                mask_path = f"masks/{name}.png"
                write_png(out_dir / mask_path, fg * np.uint8(255))
                box = mask_box(fg, normalised=True)
                boxes = [box] if box else []
            split = "val" if name in held else part
            rows.add(
                name,
                str(path),
                split,
                w,
                h,
                label=label,
                labels=[label],
                boxes=boxes,
                box_labels=[label] * len(boxes),
                mask_path=mask_path,
            )
    write_json(
        out_dir / "pets_classes.json", [names.get(i, "") for i in range(max(names, default=-1) + 1)]
    )
    return rows.frame()
