"""Readers for real datasets: each turns a dataset in its released on-disk layout into
manifest rows (``oacl.artifacts.MANIFEST_SCHEMA``).

One module per dataset type (the module name is the ``type`` in the prepare config):
coco, in9, cub, flowers, cifar, food101, pets, imagenet_shift. Each exposes
``DEFAULTS`` (including ``"type"``) and ``build(params, out_dir) -> pandas.DataFrame``;
``oacl.data.prepare`` merges the config over DEFAULTS, calls ``build`` and writes the
manifest. Image files are referenced in place (absolute paths); only files that do not
exist per image in the release (COCO object crops, CIFAR images, binary masks derived
from colour-coded or soft annotations) are written under ``out_dir``.

This module holds the helpers the readers share: layout checks with messages that say
what was expected where, a column-wise row buffer, header-only image sizes, seeded
validation hold-outs and atomic PNG/JPEG writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...artifacts import MANIFEST_DEFAULTS, MANIFEST_LIST_COLUMNS, MANIFEST_SCHEMA
from ...io import ImageError, atomic_path, encode_png

# --------------------------------------------------------------------------- layout checks


def require_root(root, dataset: str) -> Path:
    """The dataset root as a resolved Path; a missing or unset root names the dataset."""
    if not root:
        raise ValueError(f"{dataset}: config key 'root' is not set (the dataset folder)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {path}: folder not found")
    return path.resolve()


def require(root: Path, rel: str, dataset: str, kind: str = "file") -> Path:
    """``root/rel`` must exist (as a file or a folder); else say what was expected where."""
    path = root / rel
    ok = path.is_dir() if kind == "folder" else path.is_file()
    if not ok:
        raise FileNotFoundError(f"{dataset} root {root}: expected {kind} {rel}")
    return path


# --------------------------------------------------------------------------- rows


class ManifestRows:
    """Column-wise buffer of manifest rows (lighter than a dict per row at 100k+ rows).

    ``extra`` names dataset-specific columns with their default value.
    """

    def __init__(self, extra: dict | None = None):
        self.extra = dict(extra or {})
        self.cols: dict[str, list] = {c: [] for c in MANIFEST_SCHEMA.names}
        self.cols.update({c: [] for c in self.extra})

    def add(self, image_id: str, path: str, split: str, width: int, height: int, **kw) -> None:
        unknown = set(kw) - set(self.cols)
        if unknown:
            raise KeyError(f"unknown manifest column(s) {sorted(unknown)}")
        kw.update(image_id=image_id, path=path, split=split, width=int(width), height=int(height))
        for col, values in self.cols.items():
            if col in kw:
                values.append(kw[col])
            elif col in MANIFEST_LIST_COLUMNS:
                values.append([])
            elif col in self.extra:
                default = self.extra[col]
                values.append(list(default) if isinstance(default, list) else default)
            else:
                values.append(MANIFEST_DEFAULTS[col])

    def __len__(self) -> int:
        return len(self.cols["image_id"])

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.cols)


# --------------------------------------------------------------------------- images and files


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the image header only; the pixels are not decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except Exception as exc:
        raise ImageError(f"{path}: cannot read image header ({type(exc).__name__}: {exc})") from exc


def write_png(path: Path, array: np.ndarray, reuse: bool = False) -> None:
    """Atomically write a uint8 array as PNG (skipped when ``reuse`` and it exists)."""
    if reuse and path.exists():
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(array))


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95, reuse: bool = False) -> None:
    """Atomically write an RGB uint8 array as JPEG."""
    if reuse and path.exists():
        return
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def holdout(keys: Iterable[str], fraction: float, seed: int) -> set:
    """A seeded random subset (``round(fraction * n)`` keys) held out as the val split.

    Depends only on the sorted key set and the seed, so re-running gives the same split.
    """
    keys = sorted(keys)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    n = int(round(fraction * len(keys)))
    if n == 0:
        return set()
    order = np.random.default_rng(seed).permutation(len(keys))[:n]
    return {keys[i] for i in order}


def normalised_box(x: float, y: float, w: float, h: float, width: int, height: int) -> list[float]:
    """Pixel xywh -> [x1, y1, x2, y2] normalised to [0, 1] and clipped to the image."""
    x1, y1, x2, y2 = x / width, y / height, (x + w) / width, (y + h) / height
    return [float(min(max(v, 0.0), 1.0)) for v in (x1, y1, x2, y2)]


def progress(iterable, desc: str, total: int | None = None):
    from ...progress import progress as progress_bar

    return progress_bar(iterable, desc=desc, total=total, unit="img", mininterval=2.0)
