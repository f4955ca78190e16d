"""DDP: 2 gloo processes on CPU train like one process with the same global batch.

Both runs see the same global batches (the sampler gives rank r the r-th contiguous
slice), the same initial weights (same seed), and deterministic views (augmentation
switched to identity crops with no colour ops: per-rank and single-process generators
cannot draw the same crops). BatchNorm is aligned too: each rank normalises its half
of the batch, so the single-process run uses moco.bn_splits=2 (statistics per half)
and the DDP run bn_splits=1 per rank, without key shuffling. The MoCo queue receives
the keys of rank 0 then rank 1, i.e. the single run's batch order.

What remains is float32 rounding: DDP averages two half-batch gradients where the
single run sums over the whole batch, in another order. After step 1 the weights are
bit-identical; from step 2 they differ by ~1e-8, and a rounding-level change that flips
a ReLU or BN-sensitive activation can jump the gap (measured: 3e-8 after 2 and 4
steps, 9e-6 after 3, 5e-4 after 6 steps at lr 0.03, with other step counts and
batches). So the test runs 4 steps and requires the largest gap to be below 1% of the
largest change training made (measured: 1.7e-6 against 6e-3, i.e. 3e-4 of it). Only parameters are compared: BN running statistics differ by
construction (rank 0 saw only its half; the single run updated them once per half).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from _pretrain_data import TINY, make_manifest, one_thread
from pretrain_checks import IDENTITY_AUG, ddp_gap, pretrain_cmd

from oacl.train import loop
from oacl.train.params import resolve

_threads = pytest.fixture(autouse=True)(one_thread)


def pretrain(cfg, *args, **kw):
    """oacl.train.loop.pretrain of ``cfg`` resolved as `oacl pretrain` resolves it."""
    return loop.pretrain(resolve(cfg), *args, **kw)


def test_two_gloo_processes_match_single_process(tmp_path):
    manifest = make_manifest(tmp_path / "data", n_train=32, n_val=8)  # 2 steps per epoch
    base = dict(TINY, method="moco", epochs=2, knn_every=0, base_lr=0.5, augment=IDENTITY_AUG)
    single = dict(base, moco=dict(TINY["moco"], bn_splits=2, shuffle_bn=False))
    ddp = dict(base, moco=dict(TINY["moco"], bn_splits=1, shuffle_bn=False))

    pretrain(single, manifest, tmp_path / "single" / "model.pt", device="cpu")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        pretrain_cmd(ddp, manifest, tmp_path / "ddp" / "model.pt", nproc=2),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    gap, moved = ddp_gap(tmp_path / "single" / "model.pt", tmp_path / "ddp" / "model.pt", single)
    print(f"max |single - ddp| = {gap:.3g}, max |trained - init| = {moved:.3g}")
    assert moved > 1e-3, f"training barely moved the weights ({moved})"
    assert gap <= 1e-2 * moved, (
        f"DDP and single-process weights differ by {gap} (training moved {moved})"
    )
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_gpus_beyond_device_count_fail_clearly(tmp_path, capsys):
    from oacl.cli import main

    have = torch.cuda.device_count()
    n = max(2, have + 1)
    rc = main(
        [
            "pretrain",
            "--cfg",
            json.dumps({"gpus": n}),
            "--manifest",
            str(tmp_path / "m.parquet"),
            "--out",
            str(tmp_path / "model.pt"),
        ]
    )
    assert rc == 2
    assert f"{n} GPUs requested but torch.cuda.device_count() is {have}" in capsys.readouterr().err
