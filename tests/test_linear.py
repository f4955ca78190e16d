"""Linear evaluation: the L-BFGS regularisation path, selection, and the feature cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from oacl.artifacts import write_manifest
from oacl.evaluate import features, linear
from oacl.evaluate.params import DEFAULTS
from oacl.io import encode_png, write_bytes

torch.set_num_threads(1)


def blobs(n, d=16, k=3, sep=6.0, seed=0):
    r = np.random.default_rng(seed)
    centers = r.normal(size=(k, d)) * sep
    y = r.integers(0, k, n)
    return (centers[y] + r.normal(size=(n, d))).astype(np.float32), y


def noisy(n, d=60, seed=0):
    """Two classes separated along one of d dimensions, heavily overlapping."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    X = r.normal(size=(n, d))
    X[:, 0] += (2 * y - 1) * 0.7
    return X.astype(np.float32), y


def test_default_grid_is_45_log_spaced_values():
    g = linear.reg_grid(DEFAULTS["linear"]["c_grid"])
    assert len(g) == 45
    assert g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e5)
    assert np.allclose(np.diff(np.log10(g)), 11 / 44)


def test_separable_problem_selects_weak_regularisation():
    X, y = blobs(500, seed=1)
    lam, path = linear.select_lambda(
        X[:300],
        y[:300],
        X[300:400],
        y[300:400],
        linear.reg_grid({"min": 1e-6, "max": 1e5, "n": 12}),
    )
    assert lam <= 1e-2
    assert [r["lambda"] for r in path] == sorted(r["lambda"] for r in path)
    strongest = path[-1]
    assert strongest["val_acc"] < 0.6  # lam = 1e5 collapses to (near) a constant prediction
    head = linear.fit_head(np.concatenate([X[:400]]), y[:400], lam)
    assert head.accuracy(X[400:], y[400:]) >= 0.99


def test_noisy_problem_selects_strong_regularisation():
    Xtr, ytr = noisy(50, seed=2)
    Xva, yva = noisy(600, seed=3)
    grid = linear.reg_grid({"min": 1e-6, "max": 1e5, "n": 23})
    lam, path = linear.select_lambda(Xtr, ytr, Xva, yva, grid)
    weakest = path[0]
    chosen = next(r for r in path if r["lambda"] == lam)
    assert weakest["train_acc"] == 1.0  # 60 dims, 50 points: the unregularised head overfits
    assert lam >= 1e-1
    assert chosen["val_acc"] > weakest["val_acc"]


def test_lambda_maps_to_sklearn_C():
    """Documented mapping: our lam equals sklearn's C = 1 / (lam * N) (multinomial, lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    X, y = blobs(150, d=5, k=3, sep=1.0, seed=4)
    lam = 0.05
    head = linear.fit_head(X, y, lam, max_iter=1000, tol=1e-10)
    Xs = (X - head.mean) / head.std
    sk = LogisticRegression(C=1.0 / (lam * len(y)), solver="lbfgs", tol=1e-10, max_iter=5000).fit(
        Xs, y
    )
    np.testing.assert_allclose(head.W.T, sk.coef_, atol=1e-4 * np.abs(sk.coef_).max())
    z = head.logits(X)
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), sk.predict_proba(Xs), atol=1e-4)


def test_holdout_is_seeded_and_disjoint():
    a_tr, a_va = linear.holdout_split(100, 0.2, seed=3)
    b_tr, b_va = linear.holdout_split(100, 0.2, seed=3)
    assert np.array_equal(a_va, b_va) and len(a_va) == 20
    assert not set(a_tr) & set(a_va) and len(a_tr) + len(a_va) == 100


# ----------------------------------------------------------------- feature cache


class MeanColour(nn.Module):
    """Tiny stand-in model: the encoder returns per-channel means and a few products."""

    def __init__(self, image_size=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.projector = nn.Identity()
        self.meta = {
            "image_size": image_size,
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
            "method": "toy",
            "arch": "toy",
        }


def make_dataset(root, n_per=(30, 10, 20), seed=0):
    """Images of two classes (red vs blue square on grey noise), train/val/test."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in zip(["train", "val", "test"], n_per):
        for i in range(n):
            label = int(i % 2)
            img = rng.integers(90, 160, size=(16, 16, 3), dtype=np.uint8)
            img[4:12, 4:12] = (220, 30, 30) if label == 0 else (30, 30, 220)
            rel = f"img/{split}_{i}.png"
            write_bytes(root / rel, encode_png(img))
            rows.append(
                dict(
                    image_id=f"{split}_{i}",
                    path=rel,
                    split=split,
                    variant="original",
                    scene_id=i,
                    width=16,
                    height=16,
                    label=label,
                    labels=[label],
                    bg_label=-1,
                    boxes=[],
                    box_labels=[],
                    mask_path="",
                )
            )
    write_manifest(root / "manifest.parquet", pd.DataFrame(rows))
    ckpt = root / "model.pt"
    ckpt.write_bytes(b"weights-v1")
    return root / "manifest.parquet", ckpt


@pytest.fixture
def toy(tmp_path, monkeypatch):
    manifest, ckpt = make_dataset(tmp_path)
    loads = []

    def fake_load(path, device="cpu"):
        loads.append(str(path))
        torch.manual_seed(0)
        return MeanColour()

    monkeypatch.setattr(features, "load_model", fake_load)
    return manifest, ckpt, loads


def test_feature_cache_reuse_and_invalidation(toy, tmp_path):
    manifest, ckpt, loads = toy
    cache_dir = tmp_path / "cache"
    a = features.cached_features(ckpt, manifest, "train", "original", cache_dir)
    assert a["features"].shape == (30, 12) and a["features"].dtype == np.float32
    assert (cache_dir / "train__original.npz").exists() and len(loads) == 1
    # second call: served from disk, model never loaded
    b = features.cached_features(ckpt, manifest, "train", "original", cache_dir)
    assert len(loads) == 1 and np.array_equal(a["features"], b["features"])
    # a new evaluation set computes only itself
    cache = features.FeatureCache(ckpt, manifest, cache_dir)
    cache.get("train"), cache.get("test")
    assert (cache.hits, cache.misses) == (1, 1)
    mtime_train = os.stat(cache_dir / "train__original.npz").st_mtime_ns
    # a changed checkpoint invalidates the entry
    ckpt.write_bytes(b"weights-v2-retrained")
    features.cached_features(ckpt, manifest, "train", "original", cache_dir)
    assert len(loads) == 3
    assert os.stat(cache_dir / "train__original.npz").st_mtime_ns != mtime_train
    # a corrupt cache file is recomputed, not trusted
    (cache_dir / "test__original.npz").write_bytes(b"garbage")
    c = features.cached_features(ckpt, manifest, "test", "original", cache_dir)
    assert c["features"].shape == (20, 12)


def test_features_follow_the_images(toy):
    manifest, ckpt, _ = toy
    from oacl.artifacts import read_manifest

    df = read_manifest(manifest)
    rows = df[df.split == "train"]
    f = features.extract_features(MeanColour(), rows, batch_size=7)
    red_channel_centre = f[:, 0:4].mean(axis=1)  # channel 0 pooled over 2x2 cells
    assert (
        red_channel_centre[rows.label.to_numpy() == 0].mean()
        > red_channel_centre[rows.label.to_numpy() == 1].mean()
    )


def test_cli_linear_writes_json(toy, tmp_path):
    from oacl.cli import main

    manifest, ckpt, _ = toy
    out = tmp_path / "eval" / "linear.json"
    cfg = json.dumps({"c_grid": {"n": 6}})
    rc = main(
        [
            "evaluate",
            "linear",
            "--cfg",
            cfg,
            "--device",
            "cpu",
            "--checkpoint",
            str(ckpt),
            "--manifest",
            str(manifest),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["test_acc"] == 1.0  # colour squares are linearly separable from mean colours
    assert res["n"]["test"] == 20 and res["n"]["fit"] == 30 and res["n"]["val"] == 10
    assert res["val_source"] == "split 'val'"
    assert len(res["path"]) == 6 and res["lambda"] in [r["lambda"] for r in res["path"]]
    assert res["sklearn_C"] == pytest.approx(1 / (res["lambda"] * 40))
    assert res["params"]["c_grid"]["n"] == 6 and res["params"]["device"] == "cpu"
    assert res["timing"]["wall_s"] > 0


def test_cli_rejects_unknown_key(toy, tmp_path, capsys):
    from oacl.cli import main

    manifest, ckpt, _ = toy
    rc = main(
        [
            "evaluate",
            "linear",
            "--cfg",
            '{"c_gird": 1}',
            "--checkpoint",
            str(ckpt),
            "--manifest",
            str(manifest),
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o.json"),
        ]
    )
    assert rc == 2 and "c_gird" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_feature_cache_follows_image_bytes(toy, tmp_path):
    """Images regenerated under the same ids and paths (another seed): not served stale."""
    manifest, ckpt, loads = toy
    cache_dir = tmp_path / "cache"
    old = features.cached_features(ckpt, manifest, "train", "original", cache_dir)["features"]
    st = os.stat(ckpt)
    make_dataset(tmp_path, seed=1)  # same ids, paths and checkpoint bytes; other pixels
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same checkpoint file, untouched
    new = features.cached_features(ckpt, manifest, "train", "original", cache_dir)["features"]
    assert len(loads) == 2 and not np.array_equal(old, new)
    from oacl.artifacts import read_manifest

    df = read_manifest(manifest)
    torch.manual_seed(0)
    np.testing.assert_array_equal(
        new, features.extract_features(MeanColour(), df[df.split == "train"])
    )
    features.cached_features(ckpt, manifest, "train", "original", cache_dir)
    assert len(loads) == 2  # and reused while nothing changes


_FEATURES_SCRIPT = """
import sys, numpy as np, torch
from torch import nn
from oacl.evaluate import features

class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.meta = {"image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}

features.load_model = lambda path, device="cpu": Toy()
cache = features.FeatureCache(sys.argv[1], sys.argv[2], sys.argv[3])
np.save(sys.argv[4], cache.get("train")["features"])
print("misses", cache.misses)
"""


def test_feature_cache_follows_code(toy, tmp_path):
    """An edit of evaluate/features.py that changes the features recomputes the cache."""
    import shutil
    import subprocess
    import sys

    import oacl

    manifest, ckpt, _ = toy
    src = tmp_path / "src"
    shutil.copytree(
        os.path.dirname(oacl.__file__), src / "oacl", ignore=shutil.ignore_patterns("__pycache__")
    )
    script = tmp_path / "run.py"
    script.write_text(_FEATURES_SCRIPT)
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def run(name):
        out = subprocess.run(
            [
                sys.executable,
                str(script),
                str(ckpt),
                str(manifest),
                str(tmp_path / "cache"),
                str(tmp_path / name),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return np.load(tmp_path / name), out.stdout

    before, log = run("a.npy")
    assert "misses 1" in log
    with open(src / "oacl" / "evaluate" / "features.py", "a") as fh:  # features x 2 from now on
        fh.write(
            "\n_extract = extract_features\n"
            "def extract_features(*a, **k):\n    return 2 * _extract(*a, **k)\n"
        )
    after, log = run("b.npy")
    assert "misses 1" in log
    np.testing.assert_array_equal(after, 2 * before)
