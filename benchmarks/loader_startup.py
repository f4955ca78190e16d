"""What the training DataLoader's start-up costs an epoch: 0 workers vs N, fork vs forkserver.

    .venv/bin/python benchmarks/loader_startup.py [--images 256] [--size 64] [--workers 2]

A DataLoader built anew every epoch starts its workers anew; forkserver workers import
torch each time (oacl.train.data.build_loader uses forkserver: workers forked from a
process whose OpenMP pool has run can deadlock). The training loop therefore keeps one
loader with persistent workers and moves it from epoch to epoch (the last row). This walks the same epochs of synthetic JPEGs in
this one process for each setting and prints, per setting, the time to the first batch
(start-up), the epoch time and the ratio of the epoch time to the 0-worker baseline
measured in the same run (these machines are noisy: only same-run ratios mean much).
No training step runs: this isolates the loader.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from pretrain_throughput import make_jpeg_folder  # noqa: E402

from oacl.train import data  # noqa: E402


def epoch_times(ds, batch: int, workers: int, method: str, epochs: int, persistent: bool):
    out, loader = [], None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if loader is None or not persistent:
            loader = data.build_loader(
                ds, batch, workers, True, True, epoch=epoch, pin_memory=False,
                start_method=method, persistent=persistent,
            )  # fmt: skip
        else:
            data.set_position(loader, epoch)
        first = None
        for _ in loader:
            if first is None:
                first = time.perf_counter() - t0
        out.append({"start_s": first, "epoch_s": time.perf_counter() - t0})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=64, help="JPEG side (px)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        df = make_jpeg_folder(Path(tmp), a.images, a.size, 1)
        ds = data.ManifestImages(df, a.size)
        rows = {}
        for name, workers, method, persistent in (
            ("0 workers", 0, "forkserver", False),
            (f"{a.workers} workers, fork", a.workers, "fork", False),
            (f"{a.workers} workers, forkserver", a.workers, "forkserver", False),
            (f"{a.workers} workers, forkserver, persistent", a.workers, "forkserver", True),
        ):
            t = epoch_times(ds, a.batch, workers, method, a.epochs, persistent)
            rows[name] = {
                "start_s": sum(r["start_s"] for r in t) / len(t),
                "epoch_s": sum(r["epoch_s"] for r in t) / len(t),
            }
    base = rows["0 workers"]["epoch_s"]
    print(f"{a.images} images of {a.size} px, batch {a.batch}, mean of {a.epochs} epochs")
    print(f"{'setting':<38} {'start-up s':>10} {'epoch s':>8} {'epoch / 0 workers':>18}")
    for name, r in rows.items():
        r["ratio_to_0_workers"] = r["epoch_s"] / base
        print(
            f"{name:<38} {r['start_s']:>10.3f} {r['epoch_s']:>8.3f} {r['ratio_to_0_workers']:>18.2f}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
