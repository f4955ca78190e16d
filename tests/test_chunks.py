"""Walltime chunks (issue 27.5): a run stopped at its deadline saves train_state.pt and
exits with status 75; re-run until done it ends with the model an unchunked run writes."""

import hashlib
import subprocess
import time

import pytest
from _pretrain_data import TINY, make_manifest, one_thread
from pretrain_checks import pretrain_cmd

from oacl.train import loop
from oacl.train.cli import CHUNK_EXIT
from oacl.train.params import resolve

CFG = dict(TINY, method="moco", epochs=2, knn_every=2)  # 3 steps per epoch, 6 in all

_threads = pytest.fixture(autouse=True)(one_thread)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_chunked_training_ends_identical_to_an_unchunked_run(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    ref = tmp_path / "ref" / "model.pt"
    loop.pretrain(resolve(CFG), manifest, ref, device="cpu")

    out = tmp_path / "run" / "model.pt"
    chunks = 0
    while True:  # a deadline already past: each run makes one step, then stops
        try:
            loop.pretrain(resolve(CFG), manifest, out, device="cpu", deadline=time.time())
            break
        except loop.ChunkEnd:
            chunks += 1
            assert not out.exists() and (out.parent / "train_state.pt").exists()
        assert chunks < 10, "no progress from chunk to chunk"
    assert chunks == 5  # 6 steps, one per run, across the epoch boundary too
    assert _sha256(ref) == _sha256(out)  # byte-identical model.pt


def test_the_command_exits_75_at_its_deadline(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    out = tmp_path / "run" / "model.pt"
    cmd = pretrain_cmd(CFG, manifest, out) + ["--stop-after", "0.001"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == CHUNK_EXIT == 75, proc.stderr[-2000:]
    assert "walltime chunk over" in proc.stderr and "epoch 1 batch 1 (step 1/6)" in proc.stderr
    assert (out.parent / "train_state.pt").exists() and not out.exists()
