"""`oacl import-boxes` and `oacl export` (oacl.interop)."""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torchvision

from oacl.artifacts import read_boxes, write_manifest
from oacl.cli import main
from oacl.interop import detectron2_key, detectron2_weights, export_model, import_boxes

# --------------------------------------------------------------------------- import-boxes


@pytest.fixture
def manifest(tmp_path):
    ids = ["139", "285", "632"]
    df = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"/coco/train2017/{int(i):012d}.jpg" for i in ids],
            "split": "train",
            "variant": "original",
            "scene_id": [int(i) for i in ids],
            "width": [640, 500, 320],
            "height": [480, 375, 240],
            "label": -1,
            "labels": [[] for _ in ids],
            "bg_label": -1,
            "boxes": [[] for _ in ids],
            "box_labels": [[] for _ in ids],
            "mask_path": "",
        }
    )
    path = tmp_path / "manifest.parquet"
    write_manifest(path, df)
    return path


def test_import_boxes_matches_ids_and_stems(tmp_path, manifest, capsys):
    txt = tmp_path / "boxes.txt"
    txt.write_text(
        "000000000139 0.1,0.2,0.5,0.6 0,0,1,1\n"  # file stem with leading zeros
        "285 0.25,0.25,0.75,0.5\n"  # image_id
        "train2017/000000000632.jpg\n"  # a path; no boxes: an empty row
        "999999 0.1,0.1,0.2,0.2\n"  # not in the manifest
        "\n"
    )
    out = tmp_path / "boxes.parquet"
    assert (
        main(
            [
                "import-boxes",
                "--manifest",
                str(manifest),
                "--boxes-txt",
                str(txt),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "3 images, 3 boxes" in printed and "1 unmatched line(s) (e.g. 999999)" in printed
    rows = read_boxes(out)
    assert set(rows) == {"139", "285", "632"}
    np.testing.assert_allclose(
        rows["139"]["boxes"], [[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]], rtol=1e-6
    )
    assert rows["139"]["n_boxes"] == 2 and (rows["139"]["width"], rows["139"]["height"]) == (
        640,
        480,
    )
    assert rows["632"]["empty"] and rows["632"]["n_boxes"] == 0
    assert rows["285"]["bg_rect"] == [0, 0, 1, 1] and rows["285"]["mask_png"] == b""
    assert "imported_from" in rows["285"]["params"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("139 10,20,300,400", "not normalised"),
        ("139 0.1,0.2,0.3", "has 3 values"),
        ("139 0.5,0.2,0.3,0.6", "x2 <= x1"),
        ("139 a,b,c,d", "not four comma-separated numbers"),
    ],
)
def test_import_boxes_rejects_bad_lines(tmp_path, manifest, line, message):
    txt = tmp_path / "boxes.txt"
    txt.write_text("285 0.1,0.1,0.2,0.2\n" + line + "\n")
    with pytest.raises(ValueError, match=f"boxes.txt line 2: .*{message}"):
        import_boxes(manifest, txt, tmp_path / "b.parquet")
    assert not (tmp_path / "b.parquet").exists()


def test_import_boxes_cli_error_exit(tmp_path, manifest, capsys):
    rc = main(
        [
            "import-boxes",
            "--manifest",
            str(manifest),
            "--boxes-txt",
            str(tmp_path / "no.txt"),
            "--out",
            str(tmp_path / "o.parquet"),
        ]
    )
    assert rc == 2 and "box file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- export


def _randomised(encoder: nn.Module) -> nn.Module:
    """Non-trivial BN statistics so that a key mix-up would change the features."""
    g = torch.Generator().manual_seed(0)
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return encoder


@functools.cache
def _encoder() -> nn.Module:
    return _randomised(torchvision.models.resnet18(weights=None))


class FakeModel(nn.Module):
    def __init__(self, classes: int = 0):
        super().__init__()
        self.encoder = copy.deepcopy(_encoder())  # one slow init for the whole file
        self.encoder.fc = nn.Identity()
        self.meta = {"arch": "resnet18"}
        if classes:
            self.classifier = nn.Linear(512, classes)
        self.eval()


def test_torchvision_export_gives_identical_features(tmp_path, monkeypatch, capsys):
    import oacl.models

    model = FakeModel()
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"stand-in")  # load_checkpoint is replaced below
    monkeypatch.setattr(
        oacl.models, "load_checkpoint", lambda p, device="cpu": model, raising=False
    )
    out = tmp_path / "resnet18.pth"
    assert (
        main(["export", "--checkpoint", str(ckpt), "--format", "torchvision", "--out", str(out)])
        == 0
    )
    sd = torch.load(out, weights_only=True)
    tv = torchvision.models.resnet18(weights=None)
    missing, unexpected = tv.load_state_dict(sd, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    tv.fc = nn.Identity()
    tv.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(tv(x), model.encoder(x), rtol=0, atol=0)


def test_torchvision_export_with_classifier_loads_strict(tmp_path):
    model = FakeModel(classes=9)
    export_model(model, "torchvision", tmp_path / "sup.pth")
    tv = torchvision.models.resnet18(weights=None, num_classes=9)
    tv.load_state_dict(torch.load(tmp_path / "sup.pth", weights_only=True), strict=True)
    tv.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), model.classifier(model.encoder(x)))


def test_torchvision_export_rejects_wrong_arch():
    model = FakeModel()
    model.meta = {"arch": "resnet50"}
    with pytest.raises(ValueError, match="not a torchvision resnet50"):
        export_model(model, "torchvision", "/tmp/never-written.pth")


def test_export_real_checkpoint(tmp_path):
    """Through oacl.models.save_checkpoint / load_checkpoint, when that module is present."""
    models = pytest.importorskip("oacl.models")
    model = models.EmbeddingModel({"method": "moco", "arch": "resnet18", "projector": None})
    _randomised(model.encoder)
    models.save_checkpoint(tmp_path / "model.pt", model)
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "model.pt"),
                "--format",
                "torchvision",
                "--out",
                str(tmp_path / "o.pth"),
            ]
        )
        == 0
    )
    tv = torchvision.models.resnet18(weights=None)
    tv.load_state_dict(torch.load(tmp_path / "o.pth", weights_only=True), strict=False)
    tv.fc = nn.Identity()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(x), model.eval().encoder(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "key, expected",
    [
        ("conv1.weight", "stem.conv1.weight"),
        ("bn1.running_var", "stem.conv1.norm.running_var"),
        ("layer1.0.conv2.weight", "res2.0.conv2.weight"),
        ("layer3.1.bn3.bias", "res4.1.conv3.norm.bias"),
        ("layer2.0.downsample.0.weight", "res3.0.shortcut.weight"),
        ("layer4.0.downsample.1.running_mean", "res5.0.shortcut.norm.running_mean"),
    ],
)
def test_detectron2_key_renaming(key, expected):
    assert detectron2_key(key) == expected


def test_detectron2_export_pickle(tmp_path):
    model = FakeModel()
    out = export_model(model, "detectron2", tmp_path / "r18.pkl")
    with open(out, "rb") as fh:
        obj = pickle.load(fh)
    assert obj["__author__"] == "oacl" and obj["matching_heuristics"] is True
    sd = {
        k: v for k, v in model.encoder.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    assert len(obj["model"]) == len(sd)  # a bijection: no key lost or merged
    for k, v in sd.items():
        got = obj["model"][detectron2_key(k)]
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, v.numpy())
    assert detectron2_weights(model.encoder)["model"].keys() == obj["model"].keys()
