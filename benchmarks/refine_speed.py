"""Speed of the refine stage (CRF, boxes, background rectangle) on synthetic 224 px images.

Prints img/s per stage part and for the whole stage (``refine_shard``: parquet in,
image read, CRF, cleaning, boxes, rectangle, PNG encode, parquet out), each next to a
baseline run in the same process:
  * CRF at the working resolution (224) vs the CRF at the full image resolution (448);
  * the vectorised O(HW) largest-rectangle DP vs a pure-Python per-row histogram/stack
    search (the textbook O(HW) algorithm, unvectorised);
and the scaling of the whole stage with shards: 2 shards in 1 process vs 2 processes.

    .venv/bin/python benchmarks/refine_speed.py [--n 40]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per process, as a Snakemake job with 1 cpu

import argparse
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

cv2.setNumThreads(1)

from oacl import artifacts  # noqa: E402
from oacl.geometry import clean_components, largest_rectangle, mask_to_boxes  # noqa: E402
from oacl.io import encode_png  # noqa: E402
from oacl.refine.params import DEFAULTS  # noqa: E402
from oacl.refine.refinement import dense_crf  # noqa: E402
from oacl.refine.shard import refine_shard  # noqa: E402


def synthetic(n: int, size: int, seed: int = 0):
    """Natural-ish images (smooth background, textured blobs) and blurred CAM-like masks."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        bg = cv2.resize(
            rng.integers(0, 255, (6, 6, 3), dtype=np.uint8),
            (size, size),
            interpolation=cv2.INTER_CUBIC,
        )
        img = np.clip(bg + rng.normal(0, 6, bg.shape), 0, 255).astype(np.uint8)
        truth = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(1, 4)):
            c = tuple(int(v) for v in rng.integers(size // 6, size - size // 6, 2))
            axes = tuple(int(v) for v in rng.integers(size // 12, size // 4, 2))
            cv2.ellipse(truth, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            colour = rng.integers(0, 255, 3)
            img[truth > 0] = np.clip(colour + rng.normal(0, 15, (int(truth.sum()), 3)), 0, 255)
        soft = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), size / 30)
        masks.append(np.clip(soft / max(soft.max(), 1e-6), 0, 1))
        images.append(img)
    return images, masks


def rect_python(zeros: np.ndarray) -> int:
    """Baseline: per-row histogram + monotonic stack in pure Python; returns the area."""
    h, w = zeros.shape
    heights = [0] * (w + 1)
    best = 0
    for y in range(h):
        row = zeros[y].tolist()
        for x in range(w):
            heights[x] = heights[x] + 1 if row[x] else 0
        stack: list[int] = []
        for x in range(w + 1):
            while stack and heights[stack[-1]] >= heights[x]:
                ht = heights[stack.pop()]
                left = stack[-1] + 1 if stack else 0
                best = max(best, ht * (x - left))
            stack.append(x)
    return best


def rate(fn, items) -> float:
    """Images per CPU-second of this process (robust to other load on the machine)."""
    t = time.process_time()
    for it in items:
        fn(*it)
    return len(items) / (time.process_time() - t)


def make_shards(root: Path, images, masks, n_shards: int):
    from PIL import Image

    rows, mrows = [], []
    for i, (img, m) in enumerate(zip(images, masks)):
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append(
            {
                "image_id": str(i),
                "path": f"{i}.png",
                "split": "train",
                "width": img.shape[1],
                "height": img.shape[0],
                "variant": "original",
                "scene_id": -1,
                "label": -1,
                "labels": [],
                "bg_label": -1,
                "boxes": [],
                "box_labels": [],
                "mask_path": "",
            }
        )
        mrows.append(
            {
                "image_id": str(i),
                "height": m.shape[0],
                "width": m.shape[1],
                "orig_height": img.shape[0],
                "orig_width": img.shape[1],
                "mask_png": encode_png((m * 255).astype(np.uint8)),
                "params": "{}",
            }
        )
    df = pd.DataFrame(rows)
    for c in ("width", "height", "label", "bg_label"):
        df[c] = df[c].astype("int32")
    artifacts.write_manifest(root / "manifest.parquet", df)
    shards = []
    for s in range(n_shards):
        idx = artifacts.shard_rows(len(mrows), s, n_shards)
        artifacts.write_rows(
            root / f"masks_{s}.parquet", [mrows[i] for i in idx], artifacts.MASK_SCHEMA
        )
        shards.append(root / f"masks_{s}.parquet")
    return root / "manifest.parquet", shards


def _job(args):
    manifest, masks, out = args
    import logging

    logging.disable(logging.INFO)
    t = time.process_time()
    refine_shard({}, manifest, masks, out, progress=False)
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images per measurement")
    n = ap.parse_args().n
    import logging

    logging.disable(logging.INFO)
    print(f"load average before: {os.getloadavg()}")

    images, masks = synthetic(n, 224)
    crf_p = DEFAULTS["crf_params"]
    r_crf = rate(lambda i, m: dense_crf(i, m, crf_p), list(zip(images, masks)))
    big_i, big_m = synthetic(max(4, n // 4), 448, seed=1)
    r_crf_full = rate(lambda i, m: dense_crf(i, m, crf_p), list(zip(big_i, big_m)))
    binaries = [(m >= 0.5).astype(np.uint8) for m in masks]
    r_boxes = rate(lambda b: mask_to_boxes(clean_components(b, 0.001)), [(b,) for b in binaries])
    zeros = [(m < 0.2,) for m in masks]
    r_rect = rate(largest_rectangle, zeros)
    r_rect_py = rate(rect_python, zeros[: max(2, n // 4)])
    for (z,) in zeros[:5]:  # the two agree on the area
        x1, y1, x2, y2 = largest_rectangle(z)
        assert (x2 - x1) * (y2 - y1) == rect_python(z)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, shards = make_shards(tmp, images, masks, 2)
        jobs = [(manifest, s, tmp / f"boxes_{k}.parquet") for k, s in enumerate(shards)]
        t = time.perf_counter()
        cpu_seq = sum(_job(j) for j in jobs)
        wall_seq = time.perf_counter() - t
        t = time.perf_counter()
        with get_context("fork").Pool(2) as pool:
            cpu_par = sum(pool.map(_job, jobs))
        wall_par = time.perf_counter() - t
        t = time.process_time()
        refine_shard({"crf": False}, manifest, shards[0], tmp / "nocrf.parquet", progress=False)
        r_nocrf = len(artifacts.read_masks(shards[0])) / (time.process_time() - t)

    print(
        f"{n} synthetic images, 224 px, 1 thread per process; rates per CPU-second unless marked wall"
    )
    print(f"CRF at work res 224       : {r_crf:7.1f} img/s  ({1000 / r_crf:.1f} ms/img)")
    print(
        f"  baseline CRF at 448 px  : {r_crf_full:7.1f} img/s  -> work res is {r_crf / r_crf_full:.1f}x faster"
    )
    print(f"clean + boxes             : {r_boxes:7.1f} img/s  ({1000 / r_boxes:.2f} ms/img)")
    print(f"largest rectangle (DP)    : {r_rect:7.1f} img/s  ({1000 / r_rect:.2f} ms/img)")
    print(
        f"  baseline pure-Python    : {r_rect_py:7.1f} img/s  -> DP is {r_rect / r_rect_py:.1f}x faster"
    )
    print(f"whole refine_shard        : {n / cpu_seq:7.1f} img/s per CPU-second (goal >= 20)")
    print(f"  same without CRF        : {r_nocrf:7.1f} img/s per CPU-second")
    print(f"2 shards, 1 process       : {n / wall_seq:7.1f} img/s wall")
    print(
        f"2 shards, 2 processes     : {n / wall_par:7.1f} img/s wall -> {wall_seq / wall_par:.2f}x of 1 process"
        f" ({n / cpu_par:.1f} img/s per CPU-second in the workers)"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
