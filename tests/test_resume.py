"""A pretraining run SIGKILLed mid-training and re-run ends bit-identical to an uninterrupted one.

Exactness holds on CPU because everything that shapes training is restored from
train_state.pt at step granularity: weights, optimiser momentum, MoCo queue, BN
running statistics, the global torch/numpy/python RNGs and the augmentation
generator, and the loader order, which depends only on (seed, epoch) and restarts at
the saved global batch. The DataLoader's own seed draw is kept out of the global RNG.

Resuming is allowed only when nothing that shapes the result changed: a re-run after
the images, the manifest, the parameters or the src/oacl code changed trains from
scratch and logs why (a resume would return a model of the old inputs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from _pretrain_data import TINY, make_manifest, one_thread
from pretrain_checks import kill_mid_run, max_gap, pretrain_cmd

import oacl
from oacl.train import loop
from oacl.train.params import resolve

CFG = dict(TINY, method="moco", epochs=3, knn_every=2)  # 3 steps per epoch, 9 in all


def pretrain(cfg, *args, **kw):
    """oacl.train.loop.pretrain of ``cfg`` resolved as `oacl pretrain` resolves it."""
    return loop.pretrain(resolve(cfg), *args, **kw)


_threads = pytest.fixture(autouse=True)(one_thread)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _state(path):
    return torch.load(path, weights_only=True)


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _differing(a, b):
    """Names of the tensors that differ between two model.pt files."""
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys()
    return max_gap(a, b)[1]


def _cli(cfg, manifest, out, src=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    if src:  # run a private copy of the package (for code edits)
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return pretrain_cmd(cfg, manifest, out), env


def _kill_mid_run(cmd, env, out) -> int:
    """Start the CLI, SIGKILL it once train_state.pt exists; the step it had saved."""
    state, log = out.parent / "train_state.pt", out.parent.parent / "killed.log"
    kill_mid_run(cmd, log, state=state, env=env)
    assert state.exists(), log.read_text()[-2000:]
    killed_at = _state(state)["step"]
    assert not out.exists() and killed_at < 9, "the run finished before it could be killed"
    return killed_at


def test_sigkill_and_resume_is_exact(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    ref = tmp_path / "ref" / "model.pt"
    pretrain(CFG, manifest, ref, device="cpu")

    out = tmp_path / "run" / "model.pt"
    state = out.parent / "train_state.pt"
    cmd, env = _cli(CFG, manifest, out)
    killed_at = _kill_mid_run(cmd, env, out)

    log = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stderr
    assert f"batch {killed_at % 3} (step {killed_at}/9)" in log and "not resuming" not in log, log[
        -2000:
    ]
    diff = _differing(ref, out)
    assert not diff, f"resumed from step {killed_at}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    assert _sha256(ref) == _sha256(out)  # model.pt is byte-reproducible (sha256sum compares runs)
    # the whole training state (key encoder, queue, optimiser) agrees too
    sa, sb = _state(ref.parent / "train_state.pt"), _state(state)
    assert all(torch.equal(sa["method"][k], sb["method"][k]) for k in sa["method"])
    assert sa["step"] == sb["step"] == 9
    lines = (out.parent / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_sigkill_then_changed_images_trains_from_scratch(tmp_path):
    """Killed mid-run, then the data regenerated with another seed (same ids and paths):
    the re-run must not resume the old images' state; it ends where a fresh run does."""
    ref = tmp_path / "ref" / "model.pt"
    pretrain(CFG, make_manifest(tmp_path / "new", seed=1), ref, device="cpu")

    manifest = make_manifest(tmp_path / "data", seed=0)
    out = tmp_path / "run" / "model.pt"
    cmd, env = _cli(CFG, manifest, out)
    _kill_mid_run(cmd, env, out)
    make_manifest(tmp_path / "data", seed=1)  # every training image changes
    log = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stderr
    assert "not resuming" in log and "input train_images changed" in log, log[-2000:]
    assert "resuming" not in log.replace("not resuming", "")
    assert not _differing(ref, out)
    assert _state(out.parent / "train_state.pt")["step"] == 9


def test_changed_images_or_config_train_from_scratch(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="oacl.train")
    data = tmp_path / "data"
    cfg = dict(CFG, epochs=1, knn_every=0)
    out = tmp_path / "m" / "model.pt"
    pretrain(cfg, make_manifest(data, n_train=32, n_val=8), out, device="cpu")
    first = _weights(out)
    # a finished run re-run with the same inputs resumes at its end: the same weights
    caplog.clear()
    pretrain(
        dict(cfg, workers=0, log_every=5), data / "manifest.parquet", out, device="cpu"
    )  # unhashed keys
    assert "resuming" in caplog.text and "not resuming" not in caplog.text
    assert all(torch.equal(first[k], v) for k, v in _weights(out).items())

    # the same image ids and paths with other pixels (a dataset regenerated with another seed)
    make_manifest(data, n_train=32, n_val=8, seed=1)
    caplog.clear()
    pretrain(cfg, data / "manifest.parquet", out, device="cpu")
    assert "not resuming" in caplog.text and "input train_images changed" in caplog.text, (
        caplog.text
    )
    assert "input manifest changed" in caplog.text
    changed = _weights(out)
    assert any(not torch.equal(first[k], changed[k]) for k in first)
    fresh = tmp_path / "fresh" / "model.pt"
    pretrain(cfg, make_manifest(tmp_path / "d1", n_train=32, n_val=8, seed=1), fresh, device="cpu")
    assert not _differing(fresh, out) and _sha256(fresh) == _sha256(out)

    caplog.clear()
    pretrain(dict(cfg, base_lr=0.1), data / "manifest.parquet", out, device="cpu")
    assert "not resuming" in caplog.text and "config changed" in caplog.text
    (out.parent / "train_state.pt").write_bytes(b"garbage")
    caplog.clear()
    pretrain(cfg, data / "manifest.parquet", out, device="cpu")
    assert "cannot be read" in caplog.text and "training from scratch" in caplog.text
    assert not _differing(fresh, out)


def test_code_edit_trains_from_scratch(tmp_path):
    """One more comment in src/oacl/train/augment.py: the state is not reused."""
    src = tmp_path / "src"
    shutil.copytree(
        Path(oacl.__file__).parent, src / "oacl", ignore=shutil.ignore_patterns("__pycache__")
    )
    manifest = make_manifest(tmp_path / "data", n_train=32, n_val=8)
    cfg = dict(CFG, epochs=1, knn_every=0)
    out = tmp_path / "m" / "model.pt"
    cmd, env = _cli(cfg, manifest, out, src=src)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with open(src / "oacl" / "train" / "augment.py", "a") as fh:
        fh.write("\n# an edit\n")
    log = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stderr
    assert "not resuming" in log and "code changed (src/oacl/train/augment.py)" in log, log[-2000:]
    log = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stderr
    assert "resuming" in log and "not resuming" not in log, log[-2000:]  # nothing changed since
