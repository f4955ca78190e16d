"""Debiasing variants: OA-Crop stays in its box, BG-Mixup geometry and limits, input mixing."""

import pytest
import torch

from oacl.geometry import IMAGENET_MEAN, IMAGENET_STD
from oacl.train import augment as A
from oacl.train import objaware as O
from oacl.train import params as P

OFF = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def aug_params(over=None, **cfg):
    """The ``augment`` parameters as training gets them: oacl.train.params.resolve."""
    return P.resolve({"augment": over or {}, **cfg})["augment"]


def _denorm(v):
    return v * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(
        1, 3, 1, 1
    )


def _coord_images(B, S):
    r = ((torch.arange(S).float() + 0.5) / S * 255).round()
    img = torch.zeros(B, 3, S, S)
    img[:, 0] = r.view(1, 1, S)
    img[:, 1] = r.view(1, S, 1)
    return img.to(torch.uint8)


def test_choose_boxes_uniform_and_fallbacks():
    g = torch.Generator().manual_seed(0)
    B = 3000
    boxes = torch.zeros(B, 3, 4)
    boxes[:, 0] = torch.tensor([0.1, 0.1, 0.3, 0.3])
    boxes[:, 1] = torch.tensor([0.5, 0.5, 0.9, 0.9])
    boxes[:, 2] = torch.tensor([-0.2, 0.4, 0.2, 1.3])  # partly outside: clipped
    n = torch.full((B,), 3)
    n[:100] = 0  # no boxes -> whole image
    n[100:200] = 1
    out = O.choose_boxes(boxes, n, g)
    assert torch.equal(out[:100], torch.tensor([[0.0, 0, 1, 1]]).expand(100, 4))
    assert torch.allclose(out[100:200], boxes[100:200, 0])
    assert (out >= 0).all() and (out <= 1).all()
    counts = torch.stack([(out[200:, 0] == v).sum() for v in (0.1, 0.5, 0.0)]).float()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.05
    # padding-only batch (K == 0) and a zero-area box
    assert torch.equal(
        O.choose_boxes(torch.zeros(2, 0, 4), torch.zeros(2), g)[0], torch.tensor([0.0, 0, 1, 1])
    )
    zero = O.choose_boxes(torch.tensor([[[0.4, 0.4, 0.4, 0.8]]]), torch.tensor([1]), g)
    assert torch.equal(zero[0], torch.tensor([0.0, 0, 1, 1]))


@pytest.mark.parametrize("variant", ["oa_crop_gt", "oa_crop_cam"])
def test_oa_crop_never_samples_outside_the_box(variant):
    S, B, size = 64, 16, 16
    box = [0.25, 0.1, 0.55, 0.5]
    batch = {
        "image": _coord_images(B, S),
        "boxes": torch.tensor([box, [0.0, 0.0, 0.0, 0.0]]).expand(B, 2, 4).contiguous(),
        "n_boxes": torch.tensor([1] * (B - 2) + [0, 0]),
        "orig_hw": torch.tensor([[120.0, 200.0]]).expand(B, 2),
    }
    aug = A.TwoViewAugment(aug_params(OFF), variant, size)
    views = aug(batch, torch.Generator().manual_seed(1))
    tol = 0.5 / S + 1 / 255
    for v, view in enumerate(views, 1):
        img = _denorm(view)
        boxes = aug.last[f"boxes{v}"]
        inside = slice(0, B - 2)
        assert (boxes[inside, 0] >= box[0]).all() and (boxes[inside, 2] <= box[2] + 1e-6).all()
        assert (boxes[inside, 1] >= box[1]).all() and (boxes[inside, 3] <= box[3] + 1e-6).all()
        # the pixels themselves say where they came from
        assert img[inside, 0].min() >= box[0] - tol and img[inside, 0].max() <= box[2] + tol
        assert img[inside, 1].min() >= box[1] - tol and img[inside, 1].max() <= box[3] + tol
        # images without a box crop anywhere in the image (region = whole image)
        assert torch.equal(aug.last["regions"][B - 1], torch.tensor([0.0, 0, 1, 1]))
    # both views share the chosen box (not the same crop)
    assert not torch.equal(aug.last["boxes1"], aug.last["boxes2"])


def _mix_batch(B=6, S=32, mask_value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {
        "image": (torch.rand(B, 3, S, S, generator=g) * 255).to(torch.uint8),
        "bg": (torch.rand(B, 3, S, S, generator=g) * 255).to(torch.uint8),
        "mask": torch.rand(B, 1, S, S, generator=g)
        if mask_value is None
        else torch.full((B, 1, S, S), float(mask_value)),
        "boxes": torch.zeros(B, 0, 4),
        "n_boxes": torch.zeros(B, dtype=torch.long),
    }
    return batch


def test_bg_mix_limits():
    b = _mix_batch(mask_value=1.0)
    x = b["image"].float() / 255
    mixed, flag = O.mix_sources(
        "bg_mixup_cam", b, x, P.AUGMENT_DEFAULTS, 1.0, torch.Generator().manual_seed(0)
    )
    assert flag.all() and torch.equal(mixed, x)  # all-ones mask: the image itself
    b = _mix_batch(mask_value=0.0)
    mixed, _ = O.mix_sources(
        "bg_mixup_cam", b, x, P.AUGMENT_DEFAULTS, 1.0, torch.Generator().manual_seed(0)
    )
    assert torch.equal(mixed, b["bg"].float() / 255)  # all-zeros mask: the background


def test_bg_mixup_all_ones_mask_is_identity_through_pipeline():
    ones = _mix_batch(mask_value=1.0)
    other_bg = dict(ones, bg=torch.zeros_like(ones["bg"]))
    aug = A.TwoViewAugment(aug_params({"p_mix": {"moco": 1.0}}), "bg_mixup_cam", 24)
    a = aug(ones, torch.Generator().manual_seed(5))
    b = aug(other_bg, torch.Generator().manual_seed(5))
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    # all-zeros mask: the mixed view is exactly the view the background alone would give
    zeros = _mix_batch(mask_value=0.0)
    aug1 = A.TwoViewAugment(
        aug_params({"p_mix": {"moco": 1.0}, "mix_view": "first"}), "bg_mixup_cam", 24
    )
    v_mix = aug1(zeros, torch.Generator().manual_seed(5))
    as_bg = dict(zeros, image=zeros["bg"], mask=torch.ones_like(zeros["mask"]))
    v_bg = aug1(as_bg, torch.Generator().manual_seed(5))
    assert torch.allclose(v_mix[0], v_bg[0], atol=1e-5)
    assert not torch.allclose(v_mix[1], v_bg[1])  # the other view keeps the image


def test_only_one_view_is_mixed():
    B = 64
    b = _mix_batch(B=B, mask_value=0.0)
    b["image"].fill_(255)
    b["bg"].zero_()
    aug = A.TwoViewAugment(aug_params(dict(OFF, p_mix={"moco": 1.0})), "bg_mixup_cam", 16)
    v1, v2 = aug(b, torch.Generator().manual_seed(2))
    m1, m2 = aug.last["mixed1"], aug.last["mixed2"]
    assert (m1 ^ m2).all() and m1.any() and m2.any()  # exactly one view, chosen at random
    d1, d2 = _denorm(v1), _denorm(v2)
    dark1 = d1.amax(dim=(1, 2, 3)) < 1e-4
    dark2 = d2.amax(dim=(1, 2, 3)) < 1e-4
    assert torch.equal(dark1, m1) and torch.equal(dark2, m2)
    # p_mix = 0: nothing is mixed
    aug0 = A.TwoViewAugment(aug_params(dict(OFF, p_mix={"moco": 0.0})), "bg_mixup_cam", 16)
    v1, v2 = aug0(b, torch.Generator().manual_seed(2))
    assert _denorm(v1).amin() > 0.99 and _denorm(v2).amin() > 0.99
    # the MoCo / BYOL defaults
    assert A.TwoViewAugment(aug_params(), "bg_mixup_cam", 16, method="byol").p_mix == 0.3
    assert A.TwoViewAugment(aug_params(), "bg_mixup_cam", 16).p_mix == 0.4


def test_mask_follows_crop_and_flip():
    """White object on a black background with a coordinate-ramp mask: the mixed view IS the
    cropped, flipped mask, sample by sample."""
    S, B, size = 64, 8, 16
    ramp = (torch.arange(S).float() + 0.5) / S
    batch = {
        "image": torch.full((B, 3, S, S), 255, dtype=torch.uint8),
        "bg": torch.zeros(B, 3, S, S, dtype=torch.uint8),
        "mask": (0.7 * ramp.view(1, 1, 1, S) + 0.3 * ramp.view(1, 1, S, 1))
        .expand(B, 1, S, S)
        .contiguous(),
        "boxes": torch.zeros(B, 0, 4),
        "n_boxes": torch.zeros(B, dtype=torch.long),
    }
    aug = A.TwoViewAugment(
        aug_params(dict(OFF, p_mix={"moco": 1.0}, mix_view="first")), "bg_mixup_cam", size
    )
    v1, v2 = aug(batch, torch.Generator().manual_seed(4))
    got = _denorm(v1)
    c = (torch.arange(size).float() + 0.5) / size
    for b in range(B):
        x1, y1, x2, y2 = aug.last["boxes1"][b].tolist()
        ex = x1 + c * (x2 - x1)
        if aug.last["flip1"][b]:
            ex = ex.flip(0)
        ey = y1 + c * (y2 - y1)
        expect = 0.7 * ex.view(1, -1) + 0.3 * ey.view(-1, 1)
        for ch in range(3):
            assert (got[b, ch] - expect).abs().max() < 0.5 / S + 1e-4
    assert aug.last["flip1"].any() and (~aug.last["flip1"]).any()
    assert torch.allclose(_denorm(v2), torch.ones(1), atol=1e-5)  # view 2 untouched


def test_hardmix_binarises_the_mask():
    b = _mix_batch(mask_value=None)
    x = b["image"].float() / 255
    mixed, _ = O.mix_sources(
        "bg_hardmix_gt", b, x, P.AUGMENT_DEFAULTS, 1.0, torch.Generator().manual_seed(0)
    )
    fg = b["mask"] >= P.AUGMENT_DEFAULTS["mask_threshold"]
    assert torch.equal(mixed, torch.where(fg, x, b["bg"].float() / 255))


def test_mixup_and_cutmix_mix_with_another_image():
    g = torch.Generator().manual_seed(0)
    B, S = 16, 32
    x = torch.rand(B, 3, S, S, generator=g)
    batch = {"image": (x * 255).to(torch.uint8)}
    # mixup: every mixed pixel lies between the image and some OTHER image of the batch
    mixed, flag = O.mix_sources(
        "mixup", batch, x, P.AUGMENT_DEFAULTS, 1.0, torch.Generator().manual_seed(1)
    )
    g2 = torch.Generator().manual_seed(1)
    torch.rand(B, generator=g2)  # the p_mix draw
    j = O.other_index(B, g2, x.device)
    lam = torch.rand(B, generator=g2)
    assert (j != torch.arange(B)).all()
    assert torch.allclose(mixed, lam.view(B, 1, 1, 1) * x + (1 - lam.view(B, 1, 1, 1)) * x[j])
    # cutmix: each pixel comes from x or x[j]; the pasted area is about 1 - lambda
    mixed, _ = O.mix_sources(
        "cutmix", batch, x, P.AUGMENT_DEFAULTS, 1.0, torch.Generator().manual_seed(1)
    )
    from_j = (mixed == x[j]).all(dim=1) & ~(mixed == x).all(dim=1)
    from_i = (mixed == x).all(dim=1)
    assert (from_i | from_j).all() and from_j.any()
    m = O.cutmix_mask(
        20000, 32, 32, torch.full((20000,), 0.75), torch.Generator().manual_seed(0), "cpu"
    )
    box_area = m.mean(dim=(1, 2, 3))
    assert box_area.max() <= 0.25 + 0.07  # never more than 1 - lambda (+ pixel rounding)
    assert 0.1 < box_area.mean() < 0.25  # clipping at the border makes it smaller on average
