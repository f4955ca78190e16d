"""No code runs from a data file (issue 28): every loader of a pickle-based file in src/
and benchmarks/ is given a file whose pickle would run a shell command that creates a
marker file; the loader must refuse it (an error naming the file, or the documented
"not resuming ... from scratch"), and the marker must not appear.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from oacl.io import torch_save

REPO = Path(__file__).resolve().parents[1]


class Evil:
    """Unpickling it runs ``touch marker`` (as a hostile train_state.pt or batch would)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "code from a data file ran"


def test_probe_is_live(tmp_path):
    """Positive control: a plain unpickle of the probe does create the marker."""
    m = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(Evil(m)))
    assert m.exists()


def _evil_files(folder: Path, marker: Path, extra: dict) -> list[Path]:
    """The same hostile payload as a torch zip archive and as a raw (legacy) pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = dict(extra, hook=Evil(marker))
    zipped, raw = folder / "zip.pt", folder / "raw.pt"
    torch.save(payload, zipped)
    raw.write_bytes(pickle.dumps(payload, protocol=2))
    return [zipped, raw]


def test_train_state_runs_no_code(tmp_path, marker, caplog):
    from oacl.train import state

    for path in _evil_files(tmp_path / "s", marker, {"format": state.STATE_FORMAT}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="oacl.train"):
            assert state.load_state(path, {"digest": "x"}) is None
        assert "not resuming" in caplog.text and "training from scratch" in caplog.text
        assert "cannot be read" in caplog.text and "posix.system" in caplog.text, caplog.text
        assert "weights_only" not in caplog.text  # no advice to load it unsafely
        with pytest.raises(ValueError, match=re.escape(str(path))):
            state.read_state(path)


def test_old_format_state_trains_from_scratch(tmp_path, caplog):
    """A v2 state (numpy / python RNG tuples, which need full unpickling) is not resumed."""
    from oacl.train import state

    old = tmp_path / "train_state.pt"
    torch_save(old, {"format": "oacl-train-state-v2", "rng": [{"numpy": np.random.get_state()}]})
    with caplog.at_level(logging.WARNING, logger="oacl.train"):
        assert state.load_state(old, {"digest": "x"}) is None
    assert "not resuming" in caplog.text and "cannot be read" in caplog.text


def test_rng_state_round_trips_through_weights_only(tmp_path):
    """The saved RNG states load with weights_only=True and restore every generator."""
    import random

    from oacl.train import state

    gen = torch.Generator().manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # a cached gaussian in both
    saved = state.rng_state(gen)
    torch_save(tmp_path / "s.pt", {"rng": [saved]})
    draws = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    drawn_gen = torch.rand(3, generator=gen)
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["rng"][0]
    gen2 = torch.Generator()
    state.set_rng_state(loaded, gen2)
    again = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]
    assert torch.equal(drawn_gen, torch.rand(3, generator=gen2))


def test_checkpoint_runs_no_code(tmp_path, marker):
    from oacl.models import checkpoint

    for path in _evil_files(tmp_path / "m", marker, {"format": checkpoint.FORMAT}):
        with pytest.raises(ValueError, match=re.escape(str(path))) as err:
            checkpoint.load_checkpoint(path)
        assert "posix.system" in str(err.value)
        assert "weights_only" not in str(err.value)  # no advice to load it unsafely


def test_gpu_check_loader_runs_no_code(tmp_path, marker):
    import gpu_check  # benchmarks/ is on the path (pyproject.toml: pythonpath)

    zipped, _ = _evil_files(tmp_path / "run", marker, {})
    zipped.rename(tmp_path / "run" / "model.pt")
    with pytest.raises(ValueError, match="model.pt"):
        gpu_check.load_run(tmp_path / "run" / "model.pt")
    torch_save(tmp_path / "run" / "model.pt", {"state_dict": {}})
    torch.save({"hook": Evil(marker)}, tmp_path / "run" / "train_state.pt")
    with pytest.raises(ValueError, match="train_state.pt"):
        gpu_check.load_run(tmp_path / "run" / "model.pt")


def test_cifar_batch_runs_no_code(tmp_path, marker):
    import fixtures_real as fx

    from oacl.data.readers import cifar

    fx.make_cifar(tmp_path / "c")
    meta = tmp_path / "c" / "cifar-10-batches-py" / "batches.meta"
    for protocol in (2, pickle.DEFAULT_PROTOCOL):
        meta.write_bytes(pickle.dumps({b"label_names": [Evil(marker)]}, protocol=protocol))
        with pytest.raises(ValueError, match=r"batches\.meta.*refused posix\.system"):
            cifar.build(dict(cifar.DEFAULTS, root=str(tmp_path / "c")), tmp_path / "out")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_restricted_unpickler_reads_real_layout(tmp_path, protocol):
    """What the CIFAR release holds (dict of bytes keys, uint8 array, lists, bytes) passes,
    in the protocol of the original (2, Python 2) and of Python 3's pickles."""
    from oacl.data.readers import cifar

    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
        b"labels": [3, 7],
        b"filenames": [b"a.png", b"b.png"],
        b"num_cases_per_batch": 2,
    }
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps(batch, protocol=protocol))
    got = cifar._unpickle(p)
    assert got.keys() == batch.keys() and np.array_equal(got[b"data"], batch[b"data"])
    assert got[b"labels"] == [3, 7] and got[b"filenames"] == [b"a.png", b"b.png"]


def test_npy_loaders_run_no_code(tmp_path, marker):
    """in9 foreground masks (.npy) and the feature cache (.npz) refuse object arrays."""
    from oacl.data.readers import in9
    from oacl.evaluate.features import FeatureCache

    evil = np.array([Evil(marker)], dtype=object)
    npy = tmp_path / "r" / "fg_mask" / "val" / "c" / "x.npy"
    npy.parent.mkdir(parents=True)
    np.save(npy, evil, allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        in9._fg_mask(tmp_path / "r", "val", "c", "x", tmp_path / "out", set())
    npz = tmp_path / "cache.npz"
    with open(npz, "wb") as fh:
        np.savez(fh, features=evil, image_ids=np.array(["a"]), fingerprint=evil)
    cache = object.__new__(FeatureCache)
    assert cache._load(npz, np.array(["a"]), {"digest": "x"}) is None  # recomputed


def test_no_unrestricted_unpickling_in_sources():
    """The issue's grep: no weights_only=False and no pickle.load( in src/ or benchmarks/."""
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for d in ("src", "benchmarks")
        for p in (REPO / d).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "weights_only=False" in line or "pickle.load(" in line
    ]
    assert not hits, hits


def _flip_weight_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor record of a torch zip archive."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + o : info.header_offset + o + 2], "little")
        for o in (26, 28)
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_weight_byte_is_an_error(tmp_path):
    from oacl.models import EmbeddingModel, load_checkpoint, save_checkpoint

    meta = dict(
        method="moco",
        arch="resnet18_small",
        image_size=32,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        num_classes=2,
        feat_dim=512,
        epoch=1,
        projector=None,
    )
    path = tmp_path / "model.pt"
    save_checkpoint(path, EmbeddingModel(meta))
    load_checkpoint(path)  # intact: loads
    _flip_weight_byte(path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is corrupted: its content hash"):
        load_checkpoint(path)
