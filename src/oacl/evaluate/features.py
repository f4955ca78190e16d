"""Frozen encoder features of manifest images, cached per (split, variant).

Linear and shift evaluation both need pooled encoder features of centre-cropped
images (paper B.2). Extracting them is the expensive part, so each (split, variant)
subset is stored as ``cache_dir/{split}__{variant}.npz`` together with a key of the
checkpoint (size, mtime, hash of its first MiB) and the image ids it covers. Adding an
evaluation set computes only that set; a re-trained checkpoint or a changed manifest
invalidates the entries it affects. The model is loaded only on the first miss.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import read_manifest
from ..io import atomic_path, read_rgb

log = logging.getLogger(__name__)

# bump when the preprocessing changes, so old caches are recomputed
FEATURE_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# linear evaluation convention: resize the shorter side to size / 0.875, then crop
CROP_RATIO = 0.875
SMALL_IMAGE = 96  # at or below this size (synthetic 64 px scenes) images are just resized


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(checkpoint: str | os.PathLike, device: str = "cpu"):
    """The frozen model of a checkpoint (kept as a function so tests can replace it)."""
    from ..models import load_checkpoint

    return load_checkpoint(checkpoint, device)


def center_crop(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (image_size, image_size, 3), the evaluation view.

    Standard linear-evaluation preprocessing: shorter side resized to
    image_size / 0.875 then a centre crop. For small images (<= 96 px, the synthetic
    scenes) the whole image is resized, as their objects can sit near the border.
    """
    import cv2

    h, w = image.shape[:2]
    if image_size <= SMALL_IMAGE:
        short = image_size
    else:
        short = int(round(image_size / CROP_RATIO))
    scale = short / min(h, w)
    nh, nw = max(short, int(round(h * scale))), max(short, int(round(w * scale)))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - image_size) // 2, (nw - image_size) // 2
    return image[top : top + image_size, left : left + image_size]


def _normalise(batch_uint8: np.ndarray, mean, std):
    import torch

    x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def extract_features(
    model,
    rows: pd.DataFrame,
    image_size: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    desc: str = "features",
) -> np.ndarray:
    """Pooled encoder features (N, C) float32 of the manifest rows (``abspath`` column)."""
    import torch
    from tqdm import tqdm

    meta = getattr(model, "meta", {}) or {}
    image_size = int(image_size or meta.get("image_size", 224))
    mean = meta.get("mean", IMAGENET_MEAN)
    std = meta.get("std", IMAGENET_STD)
    device = resolve_device(device)
    model.eval().to(device)
    paths = list(rows["abspath"])
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch"):
            batch = np.stack([center_crop(read_rgb(p), image_size) for p in paths[start : start + batch_size]])
            x = _normalise(batch, mean, std).to(device)
            f = model.encoder(x)
            chunks.append(f.flatten(1).float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def checkpoint_key(checkpoint: str | os.PathLike) -> str:
    """Identity of a checkpoint file: size, mtime and a hash of its first MiB."""
    p = Path(checkpoint)
    st = p.stat()
    with open(p, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
    return f"v{FEATURE_VERSION}:{st.st_size}:{st.st_mtime_ns}:{head}"


def select_rows(df: pd.DataFrame, split: str, variant: str | None = "original") -> pd.DataFrame:
    """Rows of one split (and variant; None = all variants) in manifest order."""
    sel = df["split"] == split
    if variant is not None:
        sel &= df["variant"] == variant
    return df.loc[sel]


class FeatureCache:
    """Features of one checkpoint over one manifest, cached per (split, variant)."""

    def __init__(self, checkpoint, manifest, cache_dir, batch_size=256, device="cpu",
                 label_column="label"):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.exists():
            raise FileNotFoundError(f"checkpoint not found: {self.checkpoint}")
        self.df = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.label_column = label_column
        if label_column not in self.df:
            raise KeyError(f"manifest has no label column {label_column!r}")
        self.key = checkpoint_key(self.checkpoint)
        self._model = None
        self.hits, self.misses = 0, 0

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.checkpoint, self.device)
        return self._model

    def path(self, split: str, variant: str) -> Path:
        return self.cache_dir / f"{split}__{variant}.npz"

    def get(self, split: str, variant: str = "original") -> dict:
        """{'features': (N, C) float32, 'labels': (N,) int64, 'image_ids': (N,) str}."""
        rows = select_rows(self.df, split, variant)
        ids = rows["image_id"].astype(str).to_numpy()
        labels = rows[self.label_column].to_numpy(dtype=np.int64)
        path = self.path(split, variant)
        cached = self._load(path, ids)
        if cached is not None:
            self.hits += 1
            return {"features": cached, "labels": labels, "image_ids": ids}
        self.misses += 1
        feats = extract_features(self.model, rows, batch_size=self.batch_size,
                                 device=self.device, desc=f"{split}/{variant}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # a file object keeps numpy from adding ".npz"
                np.savez(fh, features=feats, labels=labels, image_ids=ids, key=np.array(self.key))
        return {"features": feats, "labels": labels, "image_ids": ids}

    def _load(self, path: Path, ids: np.ndarray):
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    log.info("%s: checkpoint changed, recomputing", path)
                    return None
                if not np.array_equal(z["image_ids"], ids):
                    log.info("%s: manifest rows changed, recomputing", path)
                    return None
                return z["features"]
        except Exception as exc:  # a corrupt cache is recomputed, never trusted
            log.warning("%s: unreadable cache (%s), recomputing", path, exc)
            return None


def cached_features(checkpoint, manifest, split, variant, cache_dir, batch_size=256,
                    device="cpu", label_column="label") -> dict:
    """One-off form of FeatureCache(...).get(split, variant)."""
    cache = FeatureCache(checkpoint, manifest, cache_dir, batch_size, device, label_column)
    return cache.get(split, variant)
