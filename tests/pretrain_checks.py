"""What the resume and DDP tests (test_resume.py, test_ddp.py) share with the GPU check
(benchmarks/gpu_check.py, which puts tests/ on its path): the `oacl pretrain` command, a
run SIGKILLed mid-training, and the comparisons of the weights the runs end with.

It imports no pytest (the GPU machine may lack it) and torch only where it compares.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

# Deterministic views: identity crops with no colour ops. Per-rank and single-process
# generators cannot draw the same crops, so the DDP comparison switches them off.
IDENTITY_AUG = {
    "scale": [1.0, 1.0],
    "ratio": [1.0, 1.0],
    "flip_p": 0.0,
    "jitter_p": 0.0,
    "grayscale_p": 0.0,
    "blur_p": 0.0,
}

# BatchNorm buffers, left out of the DDP comparison: they differ by construction (rank 0
# saw only its half of each batch; the single run updated them once per half)
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

STEP = re.compile(r" step (\d+)/(\d+)")  # the training log's progress lines


def pretrain_cmd(cfg: dict, manifest, out, device: str = "cpu", nproc=None) -> list[str]:
    """`oacl pretrain` of ``cfg`` with this interpreter (``python -m oacl.cli``)."""
    cmd = [
        sys.executable,
        "-m",
        "oacl.cli",
        "pretrain",
        "--cfg",
        json.dumps(cfg),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--device",
        device,
    ]
    return cmd + (["--nproc", str(nproc)] if nproc is not None else [])


def last_step(log) -> int:
    """The last step a training log reports (`` step N/M``), 0 before the first."""
    steps = STEP.findall(Path(log).read_text(errors="replace"))
    return int(steps[-1][0]) if steps else 0


def kill_mid_run(cmd, log, *, state=None, at_step=None, env=None, timeout=120.0) -> int:
    """Run ``cmd`` (an `oacl pretrain`, its stderr written to ``log``) and SIGKILL it, with
    no chance to save anything more, as soon as ``state`` (its train_state.pt) exists or
    it has logged step ``at_step``; or when it ends by itself or ``timeout`` seconds have
    passed. Returns the last step it logged."""
    deadline = time.time() + timeout
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)
        try:
            while proc.poll() is None and time.time() < deadline:
                if state is not None and Path(state).exists():
                    break
                if at_step is not None and last_step(log) >= at_step:
                    break
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return last_step(log)


def max_gap(a: dict, b: dict) -> tuple[float, list[str]]:
    """The largest |a - b| over the tensors of two state dicts with the same keys, and
    the names of the tensors that differ. Integer tensors (num_batches_tracked, the MoCo
    queue pointer) must agree exactly: a difference there counts as inf."""
    import torch

    gap, differ = 0.0, []
    for k in a:
        if not torch.equal(a[k], b[k]):
            differ.append(k)
            gap = max(
                gap,
                (a[k].double() - b[k].double()).abs().max().item()
                if a[k].is_floating_point()
                else math.inf,
            )
    return gap, differ


def ddp_gap(single_pt, ddp_pt, single_cfg: dict) -> tuple[float, float]:
    """How far a DDP run's model.pt ended from the single-process run's, against how far
    training moved the weights: (max |single - ddp| over the parameters, max |single -
    initial| over the encoder's). The initial weights are rebuilt as the training loop
    builds them from ``single_cfg`` (seed, then model)."""
    import torch

    from oacl.train.methods import build_method
    from oacl.train.params import DEFAULTS, resolve

    a = torch.load(single_pt, weights_only=True)["state_dict"]
    b = torch.load(ddp_pt, weights_only=True)["state_dict"]
    torch.manual_seed(DEFAULTS["seed"])
    init = build_method(resolve(single_cfg), 4).encoder.state_dict()
    params = [k for k in a if not k.endswith(BN_BUFFERS)]
    gap = max((a[k] - b[k]).abs().max().item() for k in params)
    moved = max(
        (a[k] - init[k[len("encoder.") :]]).abs().max().item()
        for k in params
        if k.startswith("encoder.")
    )
    return gap, moved
