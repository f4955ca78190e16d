"""CRF at the image's own size (kernels scaled) vs upscaled to work_size, on real masks.

Runs the refine stage twice over the same ContraCAM mask shard(s) of a finished run,
once with ``upsample: true`` (the image and mask upscaled to 224, the authors' CRF
parameters as they are) and once with the default ``upsample: false`` (64 px scenes stay
64 px, both sxy scaled by 64/224). Prints the speed ratio and the localisation metrics
of both (CRF-mask mIoU, box mIoU), so the cheaper setting is shown not to change them.

    .venv/bin/python benchmarks/refine_crf_scale.py \\
        --manifest results/data/scenes_single/manifest.parquet \\
        --masks results/cam/scenes_single/moco-baseline-s0/iter1/masks_1.parquet
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as a Snakemake refine job

import argparse
import tempfile
import time
from pathlib import Path

from oacl.evaluate.localization import evaluate_localization
from oacl.evaluate.params import DEFAULTS
from oacl.refine.shard import refine_shard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--masks", nargs="+", required=True)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    res = {}
    for name, upsample in (("upsample to 224 (baseline)", True), ("own size, scaled sxy", False)):
        boxes, t, n = [], 0.0, 0
        for i, m in enumerate(args.masks):
            out = tmp / f"{upsample}_{i}.parquet"
            t0 = time.perf_counter()
            counts = refine_shard({"upsample": upsample}, args.manifest, m, out, progress=False)
            t += time.perf_counter() - t0
            n += counts["images"]
            boxes.append(out)
        loc = evaluate_localization(
            dict(DEFAULTS["localization"]), args.manifest, args.masks, boxes
        )
        c = loc["metrics"]["contracam"]
        res[name] = (n / t, c.get("crf_mask_miou"), c.get("box_miou"))
        print(
            f"{name:28s} {res[name][0]:7.1f} img/s  CRF-mask mIoU {res[name][1]:.4f}  "
            f"box mIoU {res[name][2]:.4f}",
            flush=True,
        )
    (b, s) = res.values()
    print(f"speed ratio (own size / upsampled): {s[0] / b[0]:.1f}x")


if __name__ == "__main__":
    main()
