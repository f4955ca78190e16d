"""Frozen encoder features of manifest images, cached per (split, variant).

Linear and shift evaluation both need pooled encoder features of centre-cropped
images (paper B.2). Extracting them is the expensive part, so each (split, variant)
subset is stored as ``cache_dir/{split}__{variant}.npz`` together with the image ids it
covers and a fingerprint (``oacl.fingerprint``) of what its features depend on: the
checkpoint's bytes, the bytes of the subset's image files, the preprocessing
parameters and the src/oacl code that computes them (``CODE``). An entry is reused only
when both are equal, so adding an evaluation set computes only that set, while a
re-trained checkpoint, a regenerated image or an edit of this code recomputes the
entries it affects. The model is loaded only on the first miss.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import codedeps
from .. import fingerprint as fpr
from ..artifacts import read_manifest
from ..device import resolve_device
from ..geometry import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from ..io import atomic_path, read_rgb

log = logging.getLogger(__name__)

# the cache file layout (code changes are caught by the fingerprint of CODE)
FEATURE_VERSION = 2
# the src/oacl code features depend on (image reading, manifest paths, the model, the
# view): what this module imports (oacl.codedeps), not the evaluation around it, so one
# cache serves linear, shift and transfer evaluation
CODE = codedeps.code_of(__name__)
CROP_RATIO = 0.875  # linear-evaluation convention: resize to size / 0.875, centre crop


def load_model(checkpoint: str | os.PathLike, device: str = "cpu"):
    """The frozen model of a checkpoint (kept as a function so tests can replace it)."""
    from ..models import load_checkpoint

    return load_checkpoint(checkpoint, device)


def eval_view(
    image, image_size: int, crop_ratio: float = CROP_RATIO, mean=IMAGENET_MEAN, std=IMAGENET_STD
):
    """uint8 (H, W, 3) -> normalised (3, S, S): the shared evaluation transform.

    Uses oacl.geometry.eval_transform (shorter side to image_size / crop_ratio,
    centre crop), so the linear probe sees exactly what the kNN monitor sees.
    It runs per image because manifest images may differ in size.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return eval_transform(x, image_size, crop_ratio=crop_ratio, mean=mean, std=std)


def extract_features(
    model,
    rows: pd.DataFrame,
    image_size: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    desc: str = "features",
    crop_ratio: float = CROP_RATIO,
) -> np.ndarray:
    """Pooled encoder features (N, C) float32 of the manifest rows (``abspath`` column)."""
    import torch

    from ..progress import progress as progress_bar

    meta = getattr(model, "meta", {}) or {}
    image_size = int(image_size or meta.get("image_size", 224))
    mean = meta.get("mean", IMAGENET_MEAN)
    std = meta.get("std", IMAGENET_STD)
    device = resolve_device(device)
    model.eval().to(device)
    # channels_last: 1.5-1.8x faster inference of the 64 px ResNet on CPU (and the fast
    # layout on GPU; benchmarks/channels_last_cpu.py); same features up to float rounding
    encoder = model.encoder.to(memory_format=torch.channels_last)
    paths = list(rows["abspath"])
    chunks = []
    with torch.no_grad():
        for start in progress_bar(range(0, len(paths), batch_size), desc=desc, unit="batch"):
            views = [
                eval_view(read_rgb(p), image_size, crop_ratio, mean, std)
                for p in paths[start : start + batch_size]
            ]
            x = torch.stack(views).to(device).contiguous(memory_format=torch.channels_last)
            f = encoder(x)
            chunks.append(f.flatten(1).float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def cache_fingerprint(checkpoint_digest: str, crop_ratio: float, image_paths) -> dict:
    """Fingerprint of one cached subset: checkpoint bytes, image bytes, preprocessing, code."""
    config = {
        "version": FEATURE_VERSION,
        "checkpoint": checkpoint_digest,
        "crop_ratio": float(crop_ratio),
    }
    return fpr.fingerprint(config, {"images": list(image_paths)}, CODE)


def select_rows(df: pd.DataFrame, split: str, variant: str | None = "original") -> pd.DataFrame:
    """Rows of one split (and variant; None = all variants) in manifest order."""
    sel = df["split"] == split
    if variant is not None:
        sel &= df["variant"] == variant
    return df.loc[sel]


class FeatureCache:
    """Features of one checkpoint over one manifest, cached per (split, variant)."""

    def __init__(
        self,
        checkpoint,
        manifest,
        cache_dir,
        batch_size=256,
        device="cpu",
        label_column="label",
        crop_ratio=CROP_RATIO,
    ):
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
        self.crop_ratio = float(crop_ratio)
        self.checkpoint_digest = fpr.file_digest(self.checkpoint)
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
        ids = np.array(rows["image_id"].astype(str).tolist(), dtype=str)
        labels = rows[self.label_column].to_numpy(dtype=np.int64)
        path = self.path(split, variant)
        fp = cache_fingerprint(self.checkpoint_digest, self.crop_ratio, rows["abspath"])
        cached = self._load(path, ids, fp)
        if cached is not None:
            self.hits += 1
            return {"features": cached, "labels": labels, "image_ids": ids}
        self.misses += 1
        feats = extract_features(
            self.model,
            rows,
            batch_size=self.batch_size,
            device=self.device,
            desc=f"{split}/{variant}",
            crop_ratio=self.crop_ratio,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # a file object keeps numpy from adding ".npz"
                np.savez(
                    fh,
                    features=feats,
                    labels=labels,
                    image_ids=ids,
                    fingerprint=np.array(json.dumps(fp, sort_keys=True)),
                )
        return {"features": feats, "labels": labels, "image_ids": ids}

    def _load(self, path: Path, ids: np.ndarray, fp: dict):
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                old = json.loads(str(z["fingerprint"])) if "fingerprint" in z.files else None
                diff = fpr.differences(old, fp)
                if diff:
                    log.info("%s: %s, recomputing", path, "; ".join(diff))
                    return None
                if not np.array_equal(z["image_ids"], ids):
                    log.info("%s: manifest rows changed, recomputing", path)
                    return None
                return z["features"]
        except Exception as exc:  # a corrupt cache is recomputed, never trusted
            log.warning("%s: unreadable cache (%s), recomputing", path, exc)
            return None


def cached_features(
    checkpoint,
    manifest,
    split,
    variant,
    cache_dir,
    batch_size=256,
    device="cpu",
    label_column="label",
    crop_ratio=CROP_RATIO,
) -> dict:
    """One-off form of FeatureCache(...).get(split, variant)."""
    cache = FeatureCache(
        checkpoint, manifest, cache_dir, batch_size, device, label_column, crop_ratio
    )
    return cache.get(split, variant)
