"""Encoders, heads and the model.pt checkpoint format."""

from __future__ import annotations

import pytest
import torch
from _pretrain_data import one_thread

from oacl.io import torch_save
from oacl.models import EmbeddingModel, build_encoder, feature_map, load_checkpoint, save_checkpoint
from oacl.models.checkpoint import content_hash
from oacl.train.methods import BYOL, MoCo, Supervised

META = {
    "arch": "resnet18_small",
    "image_size": 64,
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
    "num_classes": 5,
    "feat_dim": 128,
    "epoch": 3,
}


_threads = pytest.fixture(autouse=True)(one_thread)


def test_small_resnet_layout():
    enc = build_encoder("resnet18_small").eval()
    for name in (
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ):
        assert hasattr(enc, name)
    assert enc.conv1.stride == (1, 1) and enc.conv1.kernel_size == (3, 3)
    assert isinstance(enc.maxpool, torch.nn.Identity) and isinstance(enc.fc, torch.nn.Identity)
    assert [
        enc.layer1[0].conv1.out_channels,
        enc.layer2[0].conv1.out_channels,
        enc.layer3[0].conv1.out_channels,
        enc.layer4[0].conv1.out_channels,
    ] == [16, 32, 64, 128]
    x = torch.randn(2, 3, 64, 64)
    fmap = feature_map(enc, x)
    assert fmap.shape == (2, 128, 8, 8)
    # pooled output is the spatial mean of the layer4 map
    torch.testing.assert_close(enc(x), fmap.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_torchvision_encoders(arch, dim):
    enc = build_encoder(arch).eval()
    assert isinstance(enc.fc, torch.nn.Identity)
    with torch.no_grad():
        assert feature_map(enc, torch.randn(1, 3, 224, 224)).shape == (1, dim, 7, 7)
        assert enc(torch.randn(1, 3, 64, 64)).shape == (1, dim)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build_encoder("vgg")


@pytest.mark.parametrize("method", ["moco", "byol", "supervised"])
def test_checkpoint_roundtrip(tmp_path, method):
    torch.manual_seed(0)
    if method == "moco":
        m = MoCo("resnet18_small", queue_size=32)
    elif method == "byol":
        m = BYOL("resnet18_small", hidden=64)
    else:
        m = Supervised("resnet18_small", num_classes=5)
    model = m.export(dict(META, method=method))
    save_checkpoint(tmp_path / "model.pt", model)
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert not loaded.training
    assert loaded.meta["method"] == method and loaded.meta["epoch"] == 3
    x = torch.randn(3, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        z = loaded.projector(loaded.encoder(x))
        torch.testing.assert_close(loaded.encoder(x), m.encoder(x))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    if method == "moco":  # the query projector, normalised
        torch.testing.assert_close(
            z, torch.nn.functional.normalize(m.projector(m.encoder(x)), dim=1)
        )
        assert z.shape == (3, 128)
    if method == "byol":  # the online projector, not the predictor
        assert z.shape == (3, 256)
    if method == "supervised":
        torch.testing.assert_close(z, torch.nn.functional.normalize(loaded.encoder(x), dim=1))
        assert loaded.classifier(loaded.encoder(x)).shape == (3, 5)
    else:
        assert not hasattr(loaded, "classifier")


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt is not an oacl checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch_save(tmp_path / "other.pt", {"state_dict": {}})
    with pytest.raises(ValueError, match="other.pt is not an oacl checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    good = Supervised("resnet18_small", 5).export(dict(META, method="supervised"))
    save_checkpoint(tmp_path / "good.pt", good)
    obj = torch.load(tmp_path / "good.pt", weights_only=True)
    obj["meta"]["arch"] = "resnet999"  # with a matching hash: the structure check names it
    torch_save(tmp_path / "arch.pt", dict(obj, sha256=content_hash(obj)))
    with pytest.raises(ValueError, match="arch.pt is incompatible.*resnet999"):
        load_checkpoint(tmp_path / "arch.pt")
    obj["meta"]["arch"] = "resnet18_small"
    obj["meta"]["num_classes"] = 7  # classifier shape no longer matches the weights
    torch_save(tmp_path / "shape.pt", dict(obj, sha256=content_hash(obj)))
    with pytest.raises(ValueError, match="shape.pt is incompatible"):
        load_checkpoint(tmp_path / "shape.pt")


def test_embedding_model_forward():
    model = EmbeddingModel(
        dict(META, method="moco", projector={"in": 128, "hidden": 128, "out": 16, "bn": False})
    ).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_checkpoint_bytes_are_reproducible(tmp_path):
    """Identical models give byte-identical model.pt files, also across processes
    (torch.save must not record the random temporary file name), so sha256sum compares them."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from oacl.models import save_checkpoint\n"
        "from oacl.train.methods import MoCo\n"
        "torch.manual_seed(0)\n"
        "m = MoCo('resnet18_small', queue_size=32)\n"
        f"save_checkpoint(sys.argv[1], m.export({dict(META, method='moco')!r}))\n"
    )
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run / "model.pt"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    "arch, flat",
    [
        ("resnet18_small", False),
        ("resnet18_small_reflect", True),
        ("resnet18_small_circular", True),
    ],
)
def test_padding_decides_whether_the_map_knows_position(arch, flat):
    """A constant image gives a spatially constant layer4 map only where the padding
    carries no position (reflect, circular); zero padding draws its border into it."""
    torch.manual_seed(0)
    enc = build_encoder(arch).eval()
    with torch.no_grad():
        fmap = feature_map(enc, torch.full((1, 3, 64, 64), 0.7))
    spread = (fmap - fmap.mean(dim=(2, 3), keepdim=True)).abs().max().item()
    assert fmap.shape[-2:] == (8, 8) and fmap.abs().max() > 0
    assert (spread < 1e-4) if flat else (spread > 1e-2)
