"""A pretraining run SIGKILLed mid-training and re-run ends bit-identical to an uninterrupted one.

Exactness holds on CPU because everything that shapes training is restored from
train_state.pt at step granularity: weights, optimiser momentum, MoCo queue, BN
running statistics, the global torch/numpy/python RNGs and the augmentation
generator, and the loader order, which depends only on (seed, epoch) and restarts at
the saved global batch. The DataLoader's own seed draw is kept out of the global RNG.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from oacl.train.loop import ResumeError, pretrain

sys.path.insert(0, str(Path(__file__).parent))
from _pretrain_data import TINY, make_manifest, one_thread  # noqa: E402

CFG = dict(TINY, method="moco", epochs=3, knn_every=2)  # 3 steps per epoch, 9 in all


_threads = pytest.fixture(autouse=True)(one_thread)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _state(path):
    return torch.load(path, weights_only=False)


def test_sigkill_and_resume_is_exact(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    ref = tmp_path / "ref" / "model.pt"
    pretrain(CFG, manifest, ref, device="cpu")

    out = tmp_path / "run" / "model.pt"
    state = out.parent / "train_state.pt"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    cmd = [sys.executable, "-m", "oacl.cli", "pretrain", "--cfg", json.dumps(CFG),
           "--manifest", str(manifest), "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = _state(state)["step"]
    assert not out.exists() and killed_at < 9, "the run finished before it could be killed"

    subprocess.run(cmd, env=env, check=True, capture_output=True)
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"resumed from step {killed_at}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    # the whole training state (key encoder, queue, optimiser) agrees too
    sa, sb = _state(ref.parent / "train_state.pt"), _state(state)
    assert all(torch.equal(sa["method"][k], sb["method"][k]) for k in sa["method"])
    assert sa["step"] == sb["step"] == 9
    lines = (out.parent / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_changed_config_is_refused(tmp_path):
    manifest = make_manifest(tmp_path / "data", n_train=32, n_val=8)
    cfg = dict(CFG, epochs=1, knn_every=0)
    out = tmp_path / "m" / "model.pt"
    pretrain(cfg, manifest, out, device="cpu")
    # a finished run re-run with the same config just re-exports the same weights
    first = _weights(out)
    pretrain(dict(cfg, workers=0, log_every=5), manifest, out, device="cpu")  # unhashed keys
    assert all(torch.equal(first[k], v) for k, v in _weights(out).items())
    with pytest.raises(ResumeError, match="train_state.pt was written by a different training configuration"):
        pretrain(dict(cfg, base_lr=0.1), manifest, out, device="cpu")
    (out.parent / "train_state.pt").write_bytes(b"garbage")
    with pytest.raises(ResumeError, match="cannot read the resume state"):
        pretrain(cfg, manifest, out, device="cpu")
