"""Statistics and generation time of the default scene datasets.

    .venv/bin/python benchmarks/scenes_stats.py [--out DIR] [--workers 2] [--baseline]

Generates the default ``single`` and ``multi`` datasets (DEFAULTS of oacl.data.scenes),
then prints from the written manifests and masks: class/background co-occurrence,
objects per image, pair co-occurrence, mask area fractions, file counts and timings.
``--baseline`` also times workers=1 in the same process and prints the speed ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from oacl.artifacts import read_manifest
from oacl.data import scenes
from oacl.io import read_mask
from oacl.params import merge_params


def _gen(kind: str, out: Path, workers: int) -> tuple[float, Path]:
    p = merge_params(scenes.DEFAULTS, {"kind": kind, "workers": workers})
    t0 = time.perf_counter()
    manifest = scenes.generate(p, out, progress=False)
    return time.perf_counter() - t0, manifest


def _mask_fraction(df) -> float:
    return float(np.mean([(read_mask(m) > 0).mean() for m in df["mask_abspath"]]))


def single_stats(df) -> None:
    nb, nc = scenes.DEFAULTS["n_bg_classes"], scenes.DEFAULTS["n_classes"]
    for split in ("train", "val", "test"):
        o = df[(df.split == split) & (df.variant == "original")]
        rate = (o.bg_label == o.label % nb).mean()
        print(
            f"  {split}: n={len(o)} P(bg == paired(label)) = {rate:.3f} "
            f"(config bg_bias {scenes.DEFAULTS['bg_bias']})"
        )
    tr = df[(df.split == "train") & (df.variant == "original")]
    co = np.zeros((nc, nb), int)
    np.add.at(co, (tr.label.to_numpy(), tr.bg_label.to_numpy()), 1)
    print("  train class x background counts (rows: " + ", ".join(scenes.SHAPES[:nc]) + "):")
    for c in range(nc):
        print("    " + " ".join(f"{v:4d}" for v in co[c]))
    print(f"  class counts: {np.bincount(tr.label, minlength=nc).tolist()}")
    print(f"  mask area fraction (train originals): mean {_mask_fraction(tr):.3f}")
    for v in ("mixed_same", "mixed_rand", "mixed_next"):
        r = df[df.variant == v]
        print(
            f"  {v}: P(bg == paired(label)) = {(r.bg_label == r.label % nb).mean():.3f}, "
            f"fresh backgrounds {int((r.bg_source < 0).sum())}"
        )
    print(f"  rows per variant: {df.groupby('variant').size().to_dict()}")


def multi_stats(df) -> None:
    nc = scenes.DEFAULTS["n_classes"]
    sc = df[df.split.isin(["train", "val", "test"])]
    k = sc["labels"].map(len)
    print(f"  objects per image: {k.value_counts().sort_index().to_dict()} (mean {k.mean():.2f})")
    first_pair = np.mean([lab[1] == scenes.partner(lab[0], nc) for lab in sc["labels"]])
    any_pair = np.mean(
        [
            any(scenes.partner(c, nc) in set(lab) - {c} or lab.tolist().count(c) > 1 for c in lab)
            for lab in sc["labels"]
        ]
    )
    print(
        f"  P(2nd object == partner(1st)) = {first_pair:.3f} "
        f"(config pair_bias {scenes.DEFAULTS['pair_bias']})"
    )
    print(f"  P(image holds a partner pair) = {any_pair:.3f}")
    vis = sc["boxes"].map(len)
    print(f"  visible objects with a box / drawn objects = {vis.sum() / k.sum():.4f}")
    print(f"  union mask area fraction: mean {_mask_fraction(sc[sc.split == 'train']):.3f}")
    cr = df[df.split.str.startswith("objcrop_")]
    print(
        f"  object crops: {cr.groupby('split').size().to_dict()}, "
        f"mask fraction in crops {_mask_fraction(cr[cr.split == 'objcrop_train']):.3f}"
    )
    paired = (sc.bg_label == sc.label % scenes.DEFAULTS["n_bg_classes"]).mean()
    print(f"  P(bg == paired(largest object)) = {paired:.3f} (backgrounds are uniform in multi)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="also time workers=1")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="scenes_stats_"))
    for kind, stats in (("single", single_stats), ("multi", multi_stats)):
        secs, manifest = _gen(kind, root / kind, args.workers)
        df = read_manifest(manifest)
        n_files = sum(1 for _ in (root / kind).rglob("*.png"))
        print(
            f"{kind}: {len(df)} rows, {n_files} PNG files, generated in {secs:.1f} s "
            f"(workers={args.workers})"
        )
        if args.baseline:
            base, _ = _gen(kind, root / f"{kind}_w1", 1)
            print(f"  workers=1: {base:.1f} s -> speed-up x{base / secs:.2f}")
        stats(df)


if __name__ == "__main__":
    main()
