"""Shift evaluation: one head on original, every test variant present, BG-Gap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from oacl.artifacts import write_manifest
from oacl.evaluate import features, shift
from oacl.evaluate.params import DEFAULTS
from oacl.io import encode_png, write_bytes

torch.set_num_threads(1)
COLOURS = [(220, 40, 40), (40, 40, 220)]  # object class colours
BGS = [(40, 160, 40), (200, 200, 60)]  # background colours, tied to the class in training


class MeanColour(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )  # mean colour: background-heavy
        self.projector = nn.Identity()
        self.meta = {"image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}


def scene(rng, fg, bg, obj=True):
    img = np.empty((16, 16, 3), np.uint8)
    img[:] = BGS[bg] if bg is not None else (0, 0, 0)
    img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    if obj:
        img[6:10, 6:10] = COLOURS[fg]  # small object: the background dominates
    return img


def make_bg_dataset(root, objcrop=False):
    """Train: background always matches the class. Test variants as in the Background Challenge."""
    rng = np.random.default_rng(0)
    rows = []

    def add(split, variant, i, label, img):
        rel = f"img/{split}_{variant}_{i}.png"
        write_bytes(root / rel, encode_png(img))
        rows.append(
            dict(
                image_id=f"{split}_{variant}_{i}",
                path=rel,
                split=split,
                variant=variant,
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

    for i in range(40):
        y = i % 2
        add("train", "original", i, y, scene(rng, y, y))
    for i in range(24):
        y = i % 2
        add("test", "original", i, y, scene(rng, y, y))
        add("test", "mixed_same", i, y, scene(rng, y, y))
        add("test", "mixed_rand", i, y, scene(rng, y, 1 - y if i % 4 < 2 else y))  # half swapped
        add("test", "only_fg", i, y, scene(rng, y, None))
    if objcrop:
        for split, n in [("objcrop_train", 20), ("objcrop_test", 10)]:
            for i in range(n):
                add(split, "original", i, i % 2, scene(rng, i % 2, 0))
    write_manifest(root / "manifest.parquet", pd.DataFrame(rows))
    (root / "model.pt").write_bytes(b"toy")
    return root / "manifest.parquet", root / "model.pt"


@pytest.fixture(autouse=True)
def fake_loader(monkeypatch):
    monkeypatch.setattr(features, "load_model", lambda path, device="cpu": MeanColour())


def test_bg_gap_definition():
    assert shift.bg_gap({"mixed_same": 0.9, "mixed_rand": 0.6}) == pytest.approx(0.3)
    assert shift.bg_gap({"mixed_same": 0.9}) is None


def test_shift_json(tmp_path):
    from oacl.cli import main

    manifest, ckpt = make_bg_dataset(tmp_path, objcrop=True)
    out = tmp_path / "shift.json"
    cfg = json.dumps({"linear": {"c_grid": {"n": 8}, "device": "cpu"}})
    rc = main(
        [
            "evaluate",
            "shift",
            "--cfg",
            cfg,
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
    acc = res["accuracy"]
    assert set(acc) == {"original", "mixed_same", "mixed_rand", "only_fg"}
    assert set(res["skipped"]) == {
        "mixed_next",
        "only_bg_b",
        "only_bg_t",
        "sketch",
        "corrupted",
        "stylized",
    }
    assert res["n"] == {"original": 24, "mixed_same": 24, "mixed_rand": 24, "only_fg": 24}
    assert res["bg_gap"] == pytest.approx(acc["mixed_same"] - acc["mixed_rand"])
    # the mean-colour encoder leans on the background: swapping it must cost accuracy
    assert res["bg_gap"] > 0.1
    # the head was validated on a hold-out of train (no val split in this manifest)
    assert res["head"]["val_source"].startswith("hold-out")
    assert res["objcrop"]["n"]["test"] == 10 and 0 <= res["objcrop"]["test_acc"] <= 1
    # features of each variant were cached under their own name
    assert (tmp_path / "cache" / "test__mixed_rand.npz").exists()


def test_shift_without_objcrop_lists_it_skipped(tmp_path):
    manifest, ckpt = make_bg_dataset(tmp_path)
    params = DEFAULTS["shift"] | {
        "linear": {
            **DEFAULTS["shift"]["linear"],
            "c_grid": {"min": 1e-4, "max": 1e2, "n": 4},
            "device": "cpu",
        }
    }
    res = shift.run_shift(params, ckpt, manifest, tmp_path / "cache")
    assert res["objcrop"] is None and "objcrop" in res["skipped"]
    # a second run reuses every cached feature set
    res2 = shift.run_shift(params, ckpt, manifest, tmp_path / "cache")
    assert res2["cache"]["misses"] == 0 and res2["accuracy"] == res["accuracy"]


def test_shift_reuses_the_lambda_of_linear_json(tmp_path):
    from oacl.cli import main

    manifest, ckpt = make_bg_dataset(tmp_path)
    lin_cfg = {"c_grid": {"min": 1e-4, "max": 1e2, "n": 6}, "device": "cpu"}
    common = [
        "--checkpoint",
        str(ckpt),
        "--manifest",
        str(manifest),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert (
        main(
            [
                "evaluate",
                "linear",
                "--cfg",
                json.dumps(lin_cfg),
                *common,
                "--out",
                str(tmp_path / "linear.json"),
            ]
        )
        == 0
    )
    lin = json.loads((tmp_path / "linear.json").read_text())

    def run(cfg, name, linear_json=True):
        extra = ["--linear-json", str(tmp_path / "linear.json")] if linear_json else []
        assert (
            main(
                [
                    "evaluate",
                    "shift",
                    "--cfg",
                    json.dumps(cfg),
                    *common,
                    *extra,
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
        return json.loads((tmp_path / name).read_text())

    reused = run({"linear": lin_cfg}, "a.json")
    fresh = run({"linear": lin_cfg}, "b.json", linear_json=False)
    assert reused["head"]["selection"] == "reused from linear evaluation"
    assert fresh["head"]["selection"] == "grid"
    # the same head either way: same lambda, same accuracy on every variant as linear's test
    assert reused["head"]["lambda"] == fresh["head"]["lambda"] == lin["lambda"]
    assert reused["accuracy"] == fresh["accuracy"]
    assert reused["accuracy"]["original"] == pytest.approx(lin["test_acc"])
    # a different grid is a different selection problem: linear's lambda is not reused
    other = run({"linear": {**lin_cfg, "c_grid": {"min": 1e-3, "max": 1e1, "n": 3}}}, "c.json")
    assert (
        other["head"]["selection"] == "grid"
        and len(other["head"].get("path", other.get("path"))) == 3
    )
