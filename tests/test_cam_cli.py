"""`oacl cam`: sharding invariance, mask shard format, bad images, classifier CAM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from oacl.artifacts import MASK_SCHEMA, read_masks, write_manifest
from oacl.cam.run import make_batches
from oacl.cli import main
from oacl.geometry import IMAGENET_MEAN, IMAGENET_STD
from oacl.io import decode_png

models = pytest.importorskip("oacl.models")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _checkpoint(path, method="moco"):
    torch.manual_seed(0)
    meta = {
        "method": method,
        "arch": "resnet18_small",
        "image_size": 32,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "num_classes": 3,
        "feat_dim": 128,
        "epoch": 0,
        "projector": None
        if method == "supervised"
        else {"in": 128, "hidden": 64, "out": 32, "bn": False},
    }
    models.save_checkpoint(path, models.EmbeddingModel(meta))
    return path


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(9):
        h, w = 40 + i, 48
        img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
        img[10:25, 12 + i : 30 + i] = [220, 40, 40]
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        split = "val" if i == 4 else "train" if i % 2 else "test"
        rows.append(
            {
                "image_id": f"im{i}",
                "path": f"im{i}.png",
                "split": split,
                "variant": "original",
                "scene_id": i,
                "width": w,
                "height": h,
                "label": i % 3,
                "labels": [i % 3],
                "bg_label": -1,
                "boxes": [],
                "box_labels": [],
                "mask_path": "",
            }
        )
    rows.append(dict(rows[0], image_id="im0_fg", variant="only_fg"))  # not masked
    write_manifest(tmp_path / "manifest.parquet", pd.DataFrame(rows))
    return tmp_path


def _run(data, ckpt, out, cfg, shard=0, n=1):
    return main(
        [
            "cam",
            "--cfg",
            json.dumps(cfg),
            "--checkpoint",
            str(ckpt),
            "--manifest",
            str(data / "manifest.parquet"),
            "--shard",
            str(shard),
            "--n-shards",
            str(n),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )


def test_make_batches_pads_from_start():
    b = make_batches(7, 3)
    assert [list(i) for i, _ in b] == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
    assert [n for _, n in b] == [3, 3, 1]
    assert [list(i) for i, _ in make_batches(2, 5)] == [[0, 1]]


def test_shards_match_single_run(data):
    ckpt = _checkpoint(data / "model.pt")
    cfg = {"iters": 2, "expand_res": 2, "batch_size": 3}
    assert _run(data, ckpt, data / "all.parquet", cfg) == 0
    for i in range(3):
        assert _run(data, ckpt, data / f"m{i}.parquet", cfg, i, 3) == 0
    one = read_masks(data / "all.parquet")
    three = read_masks([data / f"m{i}.parquet" for i in range(3)])
    # train + test (default splits) of the original variant: 8 of 10 rows
    assert sorted(one) == sorted(f"im{i}" for i in range(9) if i != 4)
    assert sorted(three) == sorted(one)
    for k, row in one.items():
        assert row["mask_png"] == three[k]["mask_png"]
        mask = decode_png(row["mask_png"])
        assert mask.shape == (32, 32) and mask.dtype == np.uint8 and mask.max() == 255
        assert (row["height"], row["width"]) == (32, 32)
        assert (row["orig_height"], row["orig_width"]) == (40 + int(k[2:]), 48)
        p = json.loads(row["params"])
        assert p["iters"] == 2 and p["expand_res"] == 2 and p["checkpoint"] == str(ckpt)
    import pyarrow.parquet as pq

    assert pq.read_schema(data / "all.parquet").names == MASK_SCHEMA.names


def test_options_and_subset(data):
    ckpt = _checkpoint(data / "model.pt")
    cfg = {"splits": ["val", "test"], "max_images": 3, "image_size": 24, "batch_size": 2}
    assert _run(data, ckpt, data / "a.parquet", cfg) == 0
    a = read_masks(data / "a.parquet")
    assert len(a) == 3 and set(a) <= {"im0", "im2", "im4", "im6", "im8"}
    assert all(decode_png(r["mask_png"]).shape == (24, 24) for r in a.values())
    assert _run(data, ckpt, data / "b.parquet", cfg) == 0
    assert sorted(read_masks(data / "b.parquet")) == sorted(a)  # deterministic subset


def test_bad_image_and_config(data, capsys):
    ckpt = _checkpoint(data / "model.pt")
    (data / "im3.png").write_bytes(b"not a png")
    assert _run(data, ckpt, data / "x.parquet", {"batch_size": 4}) == 2
    assert "im3.png" in capsys.readouterr().err
    assert not (data / "x.parquet").exists()
    assert _run(data, ckpt, data / "x.parquet", {"batch_size": 4, "skip_bad": True}) == 0
    got = read_masks(data / "x.parquet")
    assert "im3" not in got and len(got) == 7
    assert _run(data, ckpt, data / "y.parquet", {"iterz": 3}) == 2
    assert "iterz" in capsys.readouterr().err
    assert _run(data, ckpt, data / "y.parquet", {"splits": ["nope"]}) == 2


def test_classifier_method(data):
    ckpt = _checkpoint(data / "sup.pt", method="supervised")
    cfg = {"method": "classifier", "classifier_labels": "manifest", "batch_size": 4}
    assert _run(data, ckpt, data / "c.parquet", cfg) == 0
    assert len(read_masks(data / "c.parquet")) == 8
    moco = _checkpoint(data / "moco.pt")
    assert _run(data, moco, data / "d.parquet", {"method": "classifier"}) == 2


def test_every_method_has_an_engine():
    from oacl.cam.params import CHOICES
    from oacl.cam.run import METHODS

    assert set(METHODS) == set(CHOICES["method"])


def test_fewer_shards_remove_stale_mask_shards(data):
    """Issue 28: a rerun with fewer shards removes masks_j (j >= n_shards) of the old run."""
    ckpt = _checkpoint(data / "model.pt")
    cfg = {"iters": 1, "expand_res": 1, "batch_size": 3}
    out = data / "cam"
    for i in range(2):
        assert _run(data, ckpt, out / f"masks_{i}.parquet", cfg, i, 2) == 0
    (out / "other_1.parquet").write_bytes(b"not a shard of this stage")
    assert _run(data, ckpt, out / "masks_0.parquet", cfg, 0, 1) == 0
    assert sorted(p.name for p in out.iterdir()) == ["masks_0.parquet", "other_1.parquet"]
