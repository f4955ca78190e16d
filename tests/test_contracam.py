"""ContraCAM against the literal pseudo-code (oacl.cam.reference) and its invariants."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from oacl.cam.engine import (
    LOG_NUMERATOR,
    CamEngine,
    classifier_cam,
    contracam,
    contrastive_score,
    normalize_minmax,
)
from oacl.cam.expand import EXPANDED_LAYERS, fold_batchnorm, trunk
from oacl.cam.params import CHOICES, DEFAULTS, check_params
from oacl.cam.reference import reference_contracam

EXACT = dict(fuse_bn=False, channels_last=False)  # same float ops as the reference


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny convolutions: extra threads only add contention on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class L2Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


class TinyResNet(nn.Module):
    """ResNet-18 layout (2,2,2,2 BasicBlocks), width 16, 3x3 stem, no max-pool."""

    def __init__(self, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        chans, cin = [width, 2 * width, 4 * width, 8 * width], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            ds = None
            if stride != 1 or cin != c:
                ds = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))
            setattr(
                self,
                f"layer{i + 1}",
                nn.Sequential(BasicBlock(cin, c, stride, ds), BasicBlock(c, c)),
            )
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.out_dim = cin

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(trunk(self, x)), 1))


class Model(nn.Module):
    def __init__(self, encoder, dim, n_classes=5):
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 32), L2Normalize()
        )
        self.classifier = nn.Linear(dim, n_classes)


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    enc = TinyResNet()
    return _randomise_bn(Model(enc, enc.out_dim)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def tiny64(tiny):
    return copy.deepcopy(tiny).double()


@pytest.mark.parametrize("pos_mode", ["batch_sum", "per_sample"])
@pytest.mark.parametrize("iters", [1, 3, 10])
@pytest.mark.parametrize("expand", [1, 2])
@pytest.mark.parametrize("nsr", [True, False])
def test_matches_pseudo_code(tiny64, images, pos_mode, iters, expand, nsr):
    # float64: random-weight networks give ill-conditioned CAM weights (w is a sum
    # with cancellation), which would amplify float32 rounding differences
    x = images.double()
    ref = reference_contracam(tiny64, x, iters, expand, nsr=nsr, pos_mode=pos_mode)
    for kw in (EXACT, {}):  # {}: default fast path (BN folded, channels_last)
        got = contracam(tiny64, x, iters, expand, nsr=nsr, pos_mode=pos_mode, **kw)
        assert got.shape == (4, 1, 32, 32)
        assert (got - ref).abs().max().item() <= 1e-4
        assert got.min() >= 0 and got.max() <= 1


def _iou(a, b):
    a, b = a > 0.5, b > 0.5
    return ((a & b).sum() / (a | b).sum().clamp_min(1)).item()


@pytest.mark.parametrize("pos_mode", ["batch_sum", "per_sample"])
def test_matches_pseudo_code_float32(tiny, images, pos_mode):
    ref = reference_contracam(tiny, images, 1, 1, pos_mode=pos_mode)
    assert (contracam(tiny, images, pos_mode=pos_mode) - ref).abs().max() <= 1e-4
    ref = reference_contracam(tiny, images, 10, 2, pos_mode=pos_mode)
    got = contracam(tiny, images, iters=10, expand_res=2, pos_mode=pos_mode)
    assert _iou(got, ref) >= 0.99 and (got - ref).abs().mean() <= 1e-3


def test_full_resnet18_with_maxpool_matches(images):
    torch.manual_seed(3)
    enc = torchvision.models.resnet18()
    enc.fc = nn.Identity()
    model = _randomise_bn(Model(enc, 512)).eval()
    x = F.interpolate(images[:3], size=64, mode="bilinear")
    ref = reference_contracam(model, x, 3, 2)
    got = contracam(model, x, iters=3, expand_res=2)
    assert (got - ref).abs().max().item() <= 1e-4


def test_options_change_the_result(tiny, images):
    base = contracam(tiny, images, iters=1)
    assert (base - contracam(tiny, images, iters=1, nsr=False)).abs().max() > 1e-3
    # at iteration 0 query == key on the unit sphere, so the positive term has zero
    # gradient in both modes: they differ only once masked views are the queries
    assert (base - contracam(tiny, images, iters=1, pos_mode="per_sample")).abs().max() < 1e-4
    assert not torch.equal(
        contracam(tiny, images, iters=3), contracam(tiny, images, iters=3, pos_mode="per_sample")
    )
    assert (base - contracam(tiny, images, iters=1, expand_res=2)).abs().max() > 1e-3
    extra = F.normalize(torch.randn(6, 32), dim=1)
    assert (base - contracam(tiny, images, iters=1, extra_negatives=extra)).abs().max() > 1e-3
    grey = contracam(tiny, images, iters=2, mask_color=[0.5, -0.5, 0.0])
    assert (contracam(tiny, images, iters=2) - grey).abs().max() > 1e-3


def test_running_max_is_monotone(tiny, images):
    engine = CamEngine(tiny, expand_res=2)
    prev = None
    for iters in range(1, 5):  # iteration t does not depend on the total count
        mask = engine.contracam(images, iters=iters)
        if prev is not None:
            assert (mask >= prev).all()
        prev = mask
    assert (prev > engine.contracam(images, iters=1)).any()  # refinement grew the masks


def test_caller_model_untouched(tiny, images):
    model = copy.deepcopy(tiny).train()
    for p in model.projector.parameters():
        p.requires_grad_(True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    contracam(model, images, iters=2, expand_res=2)
    contracam(model, images, iters=1, expand_res=4)
    assert model.encoder.layer4[0].conv1.stride == (2, 2)
    assert model.encoder.layer4[0].downsample[0].stride == (2, 2)
    assert model.encoder.layer3[0].conv1.stride == (2, 2)
    assert isinstance(model.encoder.bn1, nn.BatchNorm2d)  # folding happened on a copy
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(m.training for m in model.modules())  # mode restored
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_eval_mode_used_even_if_model_trains(tiny, images):
    trained_mode = copy.deepcopy(tiny).train()
    a = contracam(trained_mode, images, iters=2)
    assert torch.equal(a, contracam(tiny, images, iters=2))


def test_expansion_doubles_the_map(tiny, images):
    sizes = {e: CamEngine(tiny, expand_res=e).features(images).shape[-1] for e in (1, 2, 4)}
    assert sizes == {1: 4, 2: 8, 4: 16}
    assert set(EXPANDED_LAYERS) == set(CHOICES["expand_res"])
    with pytest.raises(ValueError, match="expand_res"):
        check_params({**DEFAULTS, "expand_res": 3})


def test_bn_folding_preserves_trunk(tiny, images):
    folded = fold_batchnorm(copy.deepcopy(tiny.encoder))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(trunk(folded, images), trunk(tiny.encoder, images), atol=1e-5)


def test_batch_of_one(tiny, images):
    # no negatives: only self pairs, zeroed by (1 - eye); the score is the positive term
    x = images[:1]
    for iters in (1, 3):
        got = contracam(tiny, x, iters=iters, **EXACT)
        ref = reference_contracam(tiny, x, iters, 1)
        assert torch.isfinite(got).all() and got.shape == (1, 1, 32, 32)
        assert (got - ref).abs().max() <= 1e-4
    assert torch.equal(
        contracam(tiny, x, pos_mode="batch_sum"), contracam(tiny, x, pos_mode="per_sample")
    )


def test_deterministic(tiny, images):
    a = contracam(tiny, images, iters=3, expand_res=2)
    b = contracam(tiny, images, iters=3, expand_res=2)
    assert torch.equal(a, b)


def test_contrastive_score_literal():
    g = torch.Generator().manual_seed(0)
    q, k = (F.normalize(torch.randn(3, 8, generator=g), dim=1) for _ in range(2))
    queues = [k, F.normalize(torch.randn(3, 8, generator=g), dim=1)]
    extra = F.normalize(torch.randn(2, 8, generator=g), dim=1)
    for mode in ("batch_sum", "per_sample"):
        got = contrastive_score(q, k, queues, mode, extra)
        for n in range(3):
            num = (
                sum(torch.exp(q[m] @ k[m]) for m in range(3))
                if mode == "batch_sum"
                else torch.exp(q[n] @ k[n])
            )
            den = sum(
                torch.exp(q[n] @ e[j]) if j != n else torch.tensor(1.0)
                for e in queues
                for j in range(3)
            )
            den = den + sum(torch.exp(q[n] @ e) for e in extra)
            assert torch.isclose(got[n], torch.log(num / den), atol=1e-6)
    # with masked queries (q != k) the modes give different gradients
    grads = []
    for mode in ("batch_sum", "per_sample"):
        z = q.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(
            contrastive_score(F.normalize(z, dim=1), k, queues, mode).sum(), z
        )
        grads.append(g)
    assert (grads[0] - grads[1]).abs().max() > 1e-2
    assert set(LOG_NUMERATOR) == set(CHOICES["pos_mode"])
    with pytest.raises(ValueError, match="pos_mode"):
        check_params({**DEFAULTS, "pos_mode": "bogus"})


def test_constant_map_normalises_to_zero():
    cam = torch.stack([torch.full((1, 4, 4), 3.0), torch.arange(16.0).view(1, 4, 4)])
    out = normalize_minmax(cam)
    assert torch.equal(out[0], torch.zeros(1, 4, 4))
    assert out[1].min() == 0 and out[1].max() == 1


def _literal_gradcam(model, x, labels, nsr):
    with torch.no_grad():
        feats = trunk(model.encoder, x)
    feats.requires_grad = True
    logits = model.classifier(torch.flatten(model.encoder.avgpool(feats), 1))
    labels = logits.argmax(1) if labels is None else labels
    score = logits[torch.arange(len(x)), labels]
    grad = torch.autograd.grad(score.sum(), feats)[0]
    w = grad.mean(dim=(2, 3), keepdim=True)
    w = w.clamp_min(0) if nsr else w
    cam = F.relu((w * feats).sum(1, keepdim=True)).detach()
    cam = F.relu(F.interpolate(cam, size=x.shape[-2:], mode="bicubic", align_corners=False))
    lo = cam.amin(dim=(1, 2, 3), keepdim=True)
    hi = cam.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (cam - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(cam))


@pytest.mark.parametrize("labels", [None, [0, 1, 2, 3]])
@pytest.mark.parametrize("nsr", [True, False])
def test_classifier_cam(tiny, images, labels, nsr):
    lab = None if labels is None else torch.tensor(labels)
    got = classifier_cam(tiny, images, labels=lab, nsr=nsr)
    ref = _literal_gradcam(tiny, images, lab, nsr)
    assert got.shape == (4, 1, 32, 32)
    assert (got - ref).abs().max() <= 1e-4


def test_classifier_cam_requires_classifier(tiny, images):
    model = copy.deepcopy(tiny)
    del model.classifier
    with pytest.raises(ValueError, match="classifier"):
        classifier_cam(model, images)


def test_bad_inputs(tiny, images):
    with pytest.raises(ValueError, match="iters"):
        contracam(tiny, images, iters=0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        contracam(tiny, images[0])
    with pytest.raises(ValueError, match="pos_mode"):
        contracam(tiny, images, pos_mode="sum")


def test_trunk_skipped_for_unchanged_samples(tiny, images):
    engine = CamEngine(tiny)
    full = engine.features(images)
    stale = full.detach().clone()
    stale[[0, 2]] = 0  # rows that "changed" must be recomputed, the others kept
    engine.trunk_images = 0
    got = engine._refresh(images, stale, torch.tensor([True, False, True, False]))
    assert engine.trunk_images == 2 and got.requires_grad
    assert torch.allclose(got, full, atol=1e-5)


def test_score_temperature_divides_every_logit():
    """Eq. 1's temperature: log(sum_m exp(pos_m/t)) - log(sum_k exp(neg_k/t)), with the
    zeroed self-pairs still contributing exp(0) = 1; t = 1 is Algorithm 2."""
    torch.manual_seed(0)
    q = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    t = 0.2
    got = contrastive_score(q, k, [q], temperature=t)
    neg = (q @ q.T) * (1 - torch.eye(4, dtype=q.dtype))
    pos = (q * k).sum(1)
    want = torch.log(torch.exp(pos / t).sum()) - torch.log(torch.exp(neg / t).sum(1))
    assert torch.allclose(got, want)
    assert torch.equal(contrastive_score(q, k, [q]), contrastive_score(q, k, [q], temperature=1.0))


@pytest.mark.parametrize("bad", [0, -0.5, "0.2", True])
def test_cam_params_reject_a_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        check_params({**DEFAULTS, "temperature": bad})


@pytest.mark.parametrize("key, bad", [("batch_size", 1), ("iters", 0), ("method", "gradcam")])
def test_cam_params_agree_with_the_schema(key, bad):
    # a batch of one has no negatives: the schema's cam_config says batch_size >= 2 too
    with pytest.raises(ValueError, match=key):
        check_params({**DEFAULTS, key: bad})
    check_params(dict(DEFAULTS))


class _PlantedLayer4(nn.Module):
    """A layer-4 map planted from the GT masks (the input pixels are ignored): image b's
    object fires object channel b (its mask average-pooled to ``side`` x ``side``), every
    image's background fires the same ``n_bg`` channels (0.5 plus small noise)."""

    def __init__(self, masks: torch.Tensor, n_bg: int = 4, side: int = 8):
        super().__init__()
        b = masks.shape[0]
        obj = F.adaptive_avg_pool2d(masks.float(), side)  # (B, 1, side, side)
        planted = torch.zeros(b, b + n_bg, side, side)
        planted[torch.arange(b), torch.arange(b)] = obj[:, 0]
        g = torch.Generator().manual_seed(5)
        planted[:, b:] = 0.5 + 0.05 * torch.randn(b, n_bg, side, side, generator=g)
        self.register_buffer("planted", planted)
        self.gain = nn.Parameter(torch.ones(()))  # CamEngine reads the encoder's dtype

    def forward(self, x):
        assert x.shape[0] == self.planted.shape[0], "one trunk pass on the planted batch"
        return self.gain * self.planted


class _PlantedEncoder(nn.Module):
    def __init__(self, masks):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            setattr(self, name, nn.Identity())
        self.layer4 = _PlantedLayer4(masks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)


def test_planted_object_channel_is_found():
    """Positive control (issue 24): with a layer-4 channel that fires exactly on each
    image's object (and background channels shared by all images), ContraCAM's first
    iteration must localise the objects, placed anywhere in the frame (scenes with free
    placement): pixel AUC >= 0.95 against the GT masks (measured: mean 0.997, worst
    0.983; the 8x8 map's border cells are the only loss).

    Each image's object fires its own channel because an instance-distinct feature is
    what the contrastive score rewards: raising it moves an image away from the others,
    while raising a shared background channel moves it towards them (negative weight,
    removed by NSR). One object channel shared by every image is not a control: raising
    it moves an image whose object is smaller than the others' towards them, and the
    CAM is empty or inverted for about half the batch (measured mean AUC 0.72)."""
    from oacl.data import scenes
    from oacl.evaluate.references import pixel_auc
    from oacl.params import merge_params

    p = scenes.check_params(merge_params(scenes.DEFAULTS, {
        "placement": "free", "n_train": 0, "n_val": 0, "n_test": 16, "variants": []}))  # fmt: skip
    rendered = [scenes.render_scene(p, sc) for sc in scenes.plan_split(p, "test")]
    masks = torch.from_numpy(np.stack([r["mask"] for r in rendered]))[:, None]
    images = torch.from_numpy(np.stack([r["image"] for r in rendered])).permute(0, 3, 1, 2)
    images = (images.float() / 255 - 0.45) / 0.25
    b = len(rendered)
    q, _ = torch.linalg.qr(torch.randn(b + 4, b + 4, generator=torch.Generator().manual_seed(6)))
    head = nn.Linear(b + 4, b + 4, bias=False)
    with torch.no_grad():
        head.weight.copy_(q)  # a rotation: the control does not hinge on the head's axes
    model = nn.Module()
    model.encoder, model.projector = _PlantedEncoder(masks), nn.Sequential(head, L2Normalize())
    for kw in (EXACT, {}):
        cams = contracam(model, images, iters=1, expand_res=1, **kw)
        aucs = [pixel_auc(c[0].numpy(), m[0].numpy()) for c, m in zip(cams, masks, strict=True)]
        assert min(aucs) >= 0.9 and np.mean(aucs) >= 0.95, aucs
    centres = [np.argwhere(r["mask"]).mean(0) for r in rendered]
    assert np.ptp(np.array(centres), axis=0).min() > 20  # objects at different places
