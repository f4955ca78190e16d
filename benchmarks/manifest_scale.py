"""Scale check of manifest indexing and sharding on a synthetic COCO-style annotation.

Builds an ``instances_train2017.json`` with ``--n`` images (default 100k) and
``--anns`` polygon annotations each, then measures, in one process:

  baseline   json.load of the annotation file (the floor: every COCO reader pays it)
  index      oacl.data.readers.coco.build (rows, GT crop boxes, gt_boxes.parquet)
  write      oacl.artifacts.write_manifest of the rows
  shard      oacl.artifacts.shard_rows for --shards shards + one Parquet row list each
             (image_id, path), against writing the whole manifest once

Peak memory: tracemalloc peak of Python allocations during the index step (a second,
traced run), and the process's peak RSS (resource.getrusage) before and after.

    .venv/bin/python benchmarks/manifest_scale.py [--n 100000] [--anns 3] [--shards 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa

from oacl.artifacts import read_manifest, shard_rows, write_manifest
from oacl.data.prepare import complete_manifest
from oacl.data.readers import coco
from oacl.io import write_parquet
from oacl.params import merge_params


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def synth_annotations(path: Path, n: int, anns: int, seed: int = 0) -> None:
    """A COCO instances file: n images (640x480), `anns` polygon objects each, 80 classes."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(rng.choice(np.arange(1, 91), 80, replace=False).tolist())
    xy = rng.uniform(0, 400, (n, anns, 2)).round(1)
    wh = rng.uniform(4, 240, (n, anns, 2)).round(1)
    cats = rng.choice(cat_ids, (n, anns))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:  # streamed, so generating does not inflate the peak RSS
        fh.write('{"images": [')
        fh.write(
            ",".join(
                json.dumps(
                    {"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480}
                )
                for i in range(n)
            )
        )
        fh.write('], "annotations": [')
        for i in range(n):
            parts = []
            for k in range(anns):
                (x, y), (w, h) = xy[i, k].tolist(), wh[i, k].tolist()
                parts.append(
                    json.dumps(
                        {
                            "id": (i + 1) * 100 + k,
                            "image_id": i + 1,
                            "category_id": int(cats[i, k]),
                            "iscrowd": 0,
                            "bbox": [x, y, w, h],
                            "area": w * h,
                            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                        }
                    )
                )
            fh.write(("," if i else "") + ",".join(parts))
        fh.write(
            '], "categories": ' + json.dumps([{"id": c, "name": f"c{c}"} for c in cat_ids]) + "}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--anns", type=int, default=3)
    ap.add_argument("--shards", type=int, default=64)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="oacl-scale-") as tmp:
        root, out = Path(tmp) / "coco", Path(tmp) / "out"
        (root / "train2017").mkdir(parents=True)
        t = time.perf_counter()
        synth_annotations(root / "annotations/instances_train2017.json", args.n, args.anns)
        size_mb = (root / "annotations/instances_train2017.json").stat().st_size / 2**20
        print(
            f"synthetic annotations: {args.n} images x {args.anns} objects, {size_mb:.0f} MiB json "
            f"({time.perf_counter() - t:.1f} s to generate)"
        )
        rss0 = rss_mb()

        t = time.perf_counter()
        with open(root / "annotations/instances_train2017.json") as fh:
            data = json.load(fh)
        t_json = time.perf_counter() - t
        del data

        params = merge_params(
            coco.DEFAULTS, {"root": str(root), "splits": {"val2017": None}, "check_files": False}
        )
        t = time.perf_counter()
        df = coco.build(params, out)
        t_index = time.perf_counter() - t
        rss_index = rss_mb()

        t = time.perf_counter()
        write_manifest(out / "manifest.parquet", complete_manifest(df))
        t_write = time.perf_counter() - t
        assert len(read_manifest(out / "manifest.parquet")) == args.n

        t = time.perf_counter()
        ids, paths = df["image_id"].to_numpy(), df["path"].to_numpy()
        for s in range(args.shards):
            idx = shard_rows(len(df), s, args.shards)
            table = pa.table(
                {
                    "row": pa.array(idx, pa.int64()),
                    "image_id": ids[idx].tolist(),
                    "path": paths[idx].tolist(),
                }
            )
            write_parquet(out / f"shards/rows_{s:03d}.parquet", table)
        t_shard = time.perf_counter() - t
        del df

        tracemalloc.start()
        coco.build(params, Path(tmp) / "out_traced")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    n = args.n
    print(f"{'step':<34}{'seconds':>9}{'rows/s':>11}{'x json.load':>13}")
    for name, sec in (
        ("baseline: json.load", t_json),
        ("index (coco.build)", t_index),
        ("write manifest", t_write),
        (f"shard: {args.shards} row lists", t_shard),
    ):
        print(f"{name:<34}{sec:>9.2f}{n / sec:>11.0f}{sec / t_json:>13.2f}")
    print(f"shard lists vs one manifest write: {t_shard / t_write:.2f}x")
    print(f"peak Python allocations during index (tracemalloc): {peak / 2**20:.0f} MiB")
    print(f"peak RSS: {rss0:.0f} MiB before loading, {rss_index:.0f} MiB after index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
