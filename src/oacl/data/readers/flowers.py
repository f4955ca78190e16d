"""Oxford Flowers-102 -> manifest with masks from the blue-background segmentations.

Layout (``root``)::

    jpg/image_00001.jpg ...        imagelabels.mat  (labels: 1 x 8189, classes 1..102)
    segmim/segmim_00001.jpg ...    setid.mat        (trnid, valid, tstid: 1-based image numbers)

Labels are 0..101. In ``segmim`` the background is painted blue (0, 0, 254). Two
protocols:

* ``oacl`` (default): splits as setid.mat names them (trnid -> train, valid -> val,
  tstid -> test); since the files are JPEG, a pixel is background when R and G are within
  ``blue_tol`` of 0 and B within ``blue_tol`` of 255.
* ``paper``: the authors' (ReDO's) localisation data: train = tstid (6,149 images),
  val = valid, test = trnid (1,020); background = R == 0 or G == 0 or B == 254 on the
  decoded JPEG (ReDO's rule).

Binary masks (foreground 255) are written under ``masks/`` and the row's box is the
bounding box of the whole foreground.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...geometry import mask_box
from ...io import read_rgb
from . import ManifestRows, image_size, progress, require, require_root, write_png

log = logging.getLogger(__name__)

DEFAULTS = {
    "type": "flowers",
    "root": "",
    "masks": True,
    "blue_tol": 40,  # protocol oacl: JPEG tolerance of the blue-background test
    "protocol": "oacl",  # "paper": ReDO's split (train = tstid, test = trnid) and mask rule
}
PROTOCOLS = ("oacl", "paper")
SPLITS = {  # setid.mat variable -> split
    "oacl": (("trnid", "train"), ("valid", "val"), ("tstid", "test")),
    "paper": (("tstid", "train"), ("valid", "val"), ("trnid", "test")),
}


def _loadmat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except Exception as exc:
        raise ValueError(f"Flowers: {path} is not a readable .mat file: {exc}") from exc
    if key not in data:
        raise ValueError(
            f"Flowers: {path} has no variable {key!r} (has {sorted(k for k in data if not k.startswith('__'))})"
        )
    return np.asarray(data[key]).ravel().astype(np.int64)


def foreground(segmim: np.ndarray, tol: int) -> np.ndarray:
    """0/1 mask: 1 wherever the segmentation image is not (near) pure blue."""
    r, g, b = (segmim[..., c].astype(np.int16) for c in range(3))
    blue = (r <= tol) & (g <= tol) & (b >= 255 - tol)
    return (~blue).astype(np.uint8)


def foreground_paper(segmim: np.ndarray) -> np.ndarray:
    """0/1 mask by ReDO's rule (the authors' evaluation): background wherever R == 0,
    G == 0 or B == 254, exactly, on the decoded JPEG."""
    bg = (segmim[..., 0] == 0) | (segmim[..., 1] == 0) | (segmim[..., 2] == 254)
    return (~bg).astype(np.uint8)


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "Flowers-102")
    protocol = params["protocol"]
    if protocol not in PROTOCOLS:
        raise ValueError(f"Flowers-102: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    out_dir = Path(out_dir)
    require(root, "jpg", "Flowers-102", kind="folder")
    labels = _loadmat(require(root, "imagelabels.mat", "Flowers-102"), "labels")
    setid = require(root, "setid.mat", "Flowers-102")
    split_of = {}
    for key, split in SPLITS[protocol]:
        for n in _loadmat(setid, key):
            split_of[int(n)] = split
    bad = [n for n in split_of if not 1 <= n <= len(labels)]
    if bad:
        raise ValueError(
            f"Flowers: setid.mat refers to image {bad[0]} but imagelabels.mat has {len(labels)} labels"
        )
    seg_dir = root / "segmim"
    if params["masks"] and not seg_dir.is_dir():
        raise FileNotFoundError(
            f"Flowers-102 root {root}: expected folder segmim (or set masks: false)"
        )

    rows = ManifestRows()
    for n in progress(sorted(split_of), "Flowers"):
        name = f"image_{n:05d}"
        path = root / "jpg" / f"{name}.jpg"
        w, h = image_size(path)
        label = int(labels[n - 1]) - 1
        mask_path, boxes = "", []
        seg = seg_dir / f"segmim_{n:05d}.jpg"
        if params["masks"] and seg.is_file():
            mask_path = f"masks/{name}.png"
            rgb = read_rgb(seg)
            fg = (
                foreground_paper(rgb)
                if protocol == "paper"
                else foreground(rgb, params["blue_tol"])
            )
            write_png(out_dir / mask_path, fg * np.uint8(255))
            box = mask_box(fg, normalised=True)
            boxes = [box] if box else []
        rows.add(
            name,
            str(path),
            split_of[n],
            w,
            h,
            label=label,
            labels=[label],
            boxes=boxes,
            box_labels=[label] * len(boxes),
            mask_path=mask_path,
        )
    return rows.frame()
