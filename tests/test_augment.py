"""Batched augmentations: colour ops vs torchvision, crop geometry, determinism."""

import pytest
import torch
import torchvision.transforms.functional as TF

from oacl.geometry import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from oacl.train import augment as A
from oacl.train import params as P

OFF = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}  # geometry only


def aug_params(over=None, **cfg):
    """The ``augment`` parameters as training gets them: oacl.train.params.resolve."""
    return P.resolve({"augment": over or {}, **cfg})["augment"]


def _rand_images(B=6, S=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, S, S, generator=g)


def _denorm(v):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return v * std + mean


def _coord_batch(S=64, B=8, orig=None):
    """uint8 images whose R channel encodes x and G channel encodes y (pixel centres)."""
    r = ((torch.arange(S).float() + 0.5) / S * 255).round()
    img = torch.zeros(B, 3, S, S)
    img[:, 0] = r.view(1, 1, S)
    img[:, 1] = r.view(1, S, 1)
    batch = {"image": img.to(torch.uint8)}
    if orig is not None:
        batch["orig_hw"] = torch.tensor(orig, dtype=torch.float32)
    return batch


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (A.adjust_brightness, TF.adjust_brightness),
        (A.adjust_contrast, TF.adjust_contrast),
        (A.adjust_saturation, TF.adjust_saturation),
    ],
)
def test_blend_ops_match_torchvision(ours, theirs):
    x = _rand_images()
    f = torch.linspace(0.6, 1.4, x.shape[0])
    out = ours(x, f)
    ref = torch.stack([theirs(x[i], float(f[i])) for i in range(len(f))])
    assert torch.allclose(out, ref, atol=1e-5)


def test_hue_matches_torchvision():
    x = _rand_images(B=8)
    x[0] = 0.5  # gray: undefined hue must stay gray
    x[1, 0] = x[1, 1]  # ties between channels
    shifts = torch.linspace(-0.1, 0.1, 8)
    out = A.adjust_hue(x, shifts)
    ref = torch.stack([TF.adjust_hue(x[i], float(shifts[i])) for i in range(8)])
    assert torch.allclose(out, ref, atol=1e-4)
    # a zero shift is (numerically) the identity, a full turn too
    assert torch.allclose(A.adjust_hue(x, torch.zeros(8)), x, atol=1e-5)


def test_grayscale_and_blur_match_torchvision():
    x = _rand_images(B=4, S=24)
    apply = torch.tensor([True, False, True, False])
    out = A.grayscale(x, apply)
    assert torch.allclose(out[0], TF.rgb_to_grayscale(x[0], 3), atol=1e-6)
    assert torch.equal(out[1], x[1])
    sig = torch.tensor([0.3, 0.8, 1.5, 2.0])
    k = A.blur_kernel_size(64)
    assert k % 2 == 1 and k == 7
    assert A.blur_kernel_size(224) == 23
    ref = torch.stack([TF.gaussian_blur(x[i], [k, k], [float(sig[i])] * 2) for i in range(4)])
    for method in ("conv", "matmul"):
        out = A.gaussian_blur(x, sig, k, method)
        assert torch.allclose(out, ref, atol=1e-5), method
    k23 = A.gaussian_blur(x, sig, 23, "matmul")  # kernel wider than half the image: still reflect
    assert torch.allclose(k23, A.gaussian_blur(x, sig, 23, "conv"), atol=1e-5)


def test_color_jitter_order_per_sample():
    x = _rand_images(B=3)
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.05], [0.8, 1.3, 0.6, -0.08], [1.1, 1.1, 1.1, 0.02]])
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 0, 3], [0, 1, 2, 3]])
    apply = torch.tensor([True, True, False])
    out = A.color_jitter(x, factors, torch.where(apply[:, None], order, -1))
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(2):
        ref = x[i]
        for op in order[i].tolist():
            ref = fns[op](ref, float(factors[i, op]))
        assert torch.allclose(out[i], ref, atol=1e-4)
    assert torch.equal(out[2], x[2])


def test_crop_follows_geometry_exactly():
    S, size = 64, 16
    batch = _coord_batch(S)
    aug = A.TwoViewAugment(aug_params(OFF), "baseline", size)
    v1, v2 = aug(batch, torch.Generator().manual_seed(3))
    centres = (torch.arange(size).float() + 0.5) / size
    for v, view in ((1, v1), (2, v2)):
        img = _denorm(view)
        boxes, flip = aug.last[f"boxes{v}"], aug.last[f"flip{v}"]
        for b in range(len(boxes)):
            x1, y1, x2, y2 = boxes[b].tolist()
            ex = x1 + centres * (x2 - x1)
            ey = y1 + centres * (y2 - y1)
            if flip[b]:
                ex = ex.flip(0)
            tol = 0.5 / S + 1 / 255  # border clamp of bilinear sampling + uint8 rounding
            assert (img[b, 0] - ex.view(1, -1)).abs().max() < tol
            assert (img[b, 1] - ey.view(-1, 1)).abs().max() < tol
    assert aug.last["flip1"].any() and (~aug.last["flip1"]).any()


def test_crop_sampler_stays_inside_and_follows_original_aspect():
    g = torch.Generator().manual_seed(0)
    n = 4000
    r = torch.rand(n, 4, generator=g)
    regions = torch.stack(
        [
            torch.minimum(r[:, 0], r[:, 2]),
            torch.minimum(r[:, 1], r[:, 3]),
            torch.maximum(r[:, 0], r[:, 2]),
            torch.maximum(r[:, 1], r[:, 3]),
        ],
        1,
    )
    regions[:5] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    regions[5:10] = torch.tensor([0.5, 0.5, 0.5001, 0.9])  # very thin: fallback path
    hw = torch.tensor([[100.0, 300.0]]).expand(n, 2)
    boxes = A.sample_crops(regions, hw, (0.08, 1.0), (3 / 4, 4 / 3), g)
    assert (boxes[:, :2] >= regions[:, :2]).all() and (boxes[:, 2:] <= regions[:, 2:]).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    # whole-image crops of a 100x300 image: aspect in original pixels within the range
    full = A.sample_crops(
        torch.tensor([[0.0, 0, 1, 1]]).expand(n, 4), hw, (0.08, 1.0), (3 / 4, 4 / 3), g
    )
    aspect = (full[:, 2] - full[:, 0]) * 300 / ((full[:, 3] - full[:, 1]) * 100)
    assert (aspect >= 3 / 4 - 1e-4).all() and (aspect <= 4 / 3 + 1e-4).all()
    area = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
    assert area.min() >= 0.08 - 1e-4 and area.max() <= 1 + 1e-6


def test_determinism_given_generator():
    g = torch.Generator().manual_seed(0)
    batch = {"image": (torch.rand(6, 3, 32, 32, generator=g) * 255).to(torch.uint8)}
    aug = A.TwoViewAugment(aug_params(), "baseline", 24)
    a = aug(batch, torch.Generator().manual_seed(7))
    b = aug(batch, torch.Generator().manual_seed(7))
    c = aug(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # the two views differ
    # resuming from a saved generator state reproduces the next call
    g1 = torch.Generator().manual_seed(9)
    aug(batch, g1)
    state = g1.get_state()
    nxt = aug(batch, g1)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(aug(batch, g2)[0], nxt[0])


def test_output_shape_normalisation_and_params():
    batch = {"image": torch.full((4, 3, 40, 40), 255, dtype=torch.uint8)}
    v1, _ = A.TwoViewAugment(aug_params(OFF), "baseline", 32)(
        batch, torch.Generator().manual_seed(0)
    )
    assert v1.shape == (4, 3, 32, 32) and v1.dtype == torch.float32
    assert torch.allclose(_denorm(v1), torch.ones(1), atol=1e-5)
    with pytest.raises(ValueError, match="unknown key"):
        aug_params({"scal": [0.2, 1]})
    with pytest.raises(ValueError, match="variant must be one of"):
        aug_params(variant="oa_crop")
    with pytest.raises(ValueError, match="augment.compute_dtype must be one of"):
        aug_params({"compute_dtype": "float8"})
    aug = A.TwoViewAugment(aug_params(), "baseline", 64)
    assert aug.kernel == 7 and abs(aug.sigma[1] - 2.0 * 64 / 224) < 1e-9


def test_eval_transform_centre_crop():
    S = 64
    batch = _coord_batch(S, B=2)
    out = _denorm(eval_transform(batch["image"], 56, crop_ratio=0.875))
    assert out.shape == (2, 3, 56, 56)
    # centre crop: symmetric around the image centre, covering 87.5% of it
    assert abs(out[0, 0, 0, 0] + out[0, 0, 0, -1] - 1.0) < 0.02
    assert abs(out[0, 0, 0, -1] - out[0, 0, 0, 0] - 0.875 * (55 / 56)) < 0.03
    single = eval_transform(batch["image"][0], 56)
    assert single.shape == (3, 56, 56)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_matches_float32():
    g = torch.Generator().manual_seed(0)
    batch = {"image": (torch.rand(32, 3, 72, 72, generator=g) * 255).to(torch.uint8).cuda()}
    outs = {}
    for dt in ("float32", "float16"):
        aug = A.TwoViewAugment(aug_params({"compute_dtype": dt}), "baseline", 64)
        outs[dt] = aug(batch, torch.Generator(device="cuda").manual_seed(1))
        assert outs[dt][0].dtype == torch.float32
    diff = (outs["float32"][0] - outs["float16"][0]).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_geometry():
    batch = _coord_batch(64)
    aug = A.TwoViewAugment(aug_params(OFF), "oa_crop_gt", 32)
    batch["boxes"] = torch.tensor([[[0.2, 0.2, 0.6, 0.7]]]).expand(8, 1, 4).contiguous()
    batch["n_boxes"] = torch.ones(8, dtype=torch.long)
    cuda = {k: v.cuda() for k, v in batch.items()}
    v1, _ = aug(cuda, torch.Generator(device="cuda").manual_seed(0))
    img = _denorm(v1.cpu())
    assert img[:, 0].min() >= 0.2 - 0.02 and img[:, 0].max() <= 0.6 + 0.02
