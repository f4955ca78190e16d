"""A tiny labelled manifest for the pretraining tests: class = colour of a square on noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from oacl.artifacts import write_manifest
from oacl.io import encode_png, write_bytes

COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 70, 230], [230, 210, 40]], np.uint8)


def make_manifest(
    root: Path, n_train: int = 48, n_val: int = 16, size: int = 32, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label = i % len(COLOURS)
            img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            s = size // 2
            y, x = rng.integers(0, size - s, 2)
            img[y : y + s, x : x + s] = COLOURS[label]
            rel = f"images/{split}_{i}.png"
            write_bytes(root / rel, encode_png(img))
            box = [x / size, y / size, (x + s) / size, (y + s) / size]
            rows.append(
                dict(
                    image_id=f"{split}/{i}",
                    path=rel,
                    split=split,
                    variant="original",
                    scene_id=len(rows),
                    width=size,
                    height=size,
                    label=label,
                    labels=[label],
                    bg_label=-1,
                    boxes=[box],
                    box_labels=[label],
                    mask_path="",
                )
            )
    path = root / "manifest.parquet"
    write_manifest(path, pd.DataFrame(rows))
    return path


# a config small enough for a few seconds on 2 CPU cores
TINY = {
    "arch": "resnet18_small",
    "image_size": 32,
    "store_size": 32,
    "epochs": 2,
    "batch_size": 16,
    "workers": 0,
    "ckpt_every_steps": 1,
    "knn_every": 1,
    "log_every": 1,
    "moco": {"queue_size": 64, "bn_splits": 2},
    "byol": {"hidden": 64},
}


def one_thread():
    """Generator for an autouse fixture: one torch thread (the test machine is shared;
    oversubscribed OpenMP threads spin and slow everything tenfold), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
