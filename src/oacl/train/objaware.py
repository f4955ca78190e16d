"""Debiasing variants (Section 3.2 of the paper), applied before the standard augmentations.

baseline       nothing.
oa_crop_cam    object-aware random crop: one box per image is chosen at random
oa_crop_gt     (ContraCAM boxes / ground-truth boxes; no box -> the whole image) and
               BOTH views are RandomResizedCrops taken inside that box.
bg_mixup_cam   background mixup, Eq. (4): with probability p_mix per sample, ONE view
               (chosen at random) is made from  m * x_i + (1 - m) * x_bg,  m the
               ContraCAM soft mask of x_i and x_bg the tiled background patch of another
               image (built by the loader). The mix is done on the stored image *before*
               cropping, so the mask follows the view's crop and flip exactly.
bg_hardmix_gt  BG-HardMix baseline: the same with the binarised ground-truth mask
               (copy-paste of the object onto another image's background).
mixup          input mixup applied to contrastive learning (Table 8 baselines):
cutmix         with probability p_mix, one view is made from the image mixed with
               another image of the batch - lambda ~ Beta(1, 1) blend (mixup) or a
               CutMix rectangle of area 1 - lambda pasted from the other image. No
               target mixing: the positive stays the same image (input-mixing variant).

Each function takes the batch on the device and draws from the given generator.

BG-Mixup (``bg_mixup_cam``; ``bg_hardmix_gt`` alike) in three pieces, run in this order:

1. background patches: the refine stage's ``bg_rect`` (largest rectangle below 0.2 of
   the soft mask, oacl.refine.refinement) of a partner image that the loader's sampler draws
   per sample (oacl.train.data.build_loader), tiled to the stored size by
   ``ManifestImages.background`` (batch key ``bg``, beside the soft mask ``mask``);
2. the per-sample probability: ``augment.p_mix[method]`` of the pretrain parameters
   (oacl.train.params: 0.4 MoCo, 0.3 BYOL) is ``TwoViewAugment.p_mix``; ``mix_sources``
   draws the flag of each sample and ``augment.mix_view`` which view gets the mix
   (TwoViewAugment);
3. mixing: ``bg_mix`` (Eq. 4, ``m * x + (1 - m) * bg``), called by ``mix_sources``.

The entry point is ``augment.TwoViewAugment.__call__``, which calls ``mix_sources``.
"""

from __future__ import annotations

import torch

from .. import variants

# what each variant needs and does: the table in oacl.variants
VARIANTS = variants.NAMES
NEEDS_MASK = tuple(n for n, v in variants.VARIANTS.items() if v.needs_mask)
NEEDS_BG = tuple(n for n, v in variants.VARIANTS.items() if v.needs_bg)
OA_CROP = tuple(n for n, v in variants.VARIANTS.items() if v.crop)


def mixes(variant):
    v = variants.VARIANTS.get(variant)
    return v is not None and v.mix is not None


def box_source(variant):
    """Where a variant's boxes come from: 'cam' (box shards), 'gt' (manifest) or None."""
    v = variants.VARIANTS.get(variant)
    return None if v is None else v.source


# ------------------------------------------------------------------ OA-Crop


def whole_image(B, dev):
    """(B, 4) boxes [0, 0, 1, 1] (made on the device: no synchronising host copy)."""
    r = torch.zeros(B, 4, device=dev)
    r[:, 2:] = 1
    return r


def choose_boxes(boxes, n_boxes, g):
    """One box per image, uniformly among its boxes; the whole image when it has none.

    boxes: (B, K, 4) normalised xyxy (padded), n_boxes: (B,). Boxes are clipped to the
    image; a box with no area after clipping counts as none.
    """
    B = n_boxes.shape[0]
    dev = n_boxes.device
    whole = whole_image(B, dev)
    u = torch.rand(B, generator=g, device=dev)  # drawn even when K == 0 (fixed draw count)
    if boxes.shape[1] == 0:
        return whole
    n = n_boxes.to(dev).long()
    pick = (u * n.clamp_min(1)).long().clamp(max=boxes.shape[1] - 1)
    chosen = boxes.to(dev).float()[torch.arange(B, device=dev), pick].clamp(0, 1)
    valid = (n > 0) & (chosen[:, 2] > chosen[:, 0]) & (chosen[:, 3] > chosen[:, 1])
    return torch.where(valid[:, None], chosen, whole)


def crop_regions(variant, batch, g, B, dev):
    """(B, 4) normalised region each view's RandomResizedCrop is taken inside."""
    if variant in OA_CROP:
        return choose_boxes(batch["boxes"], batch["n_boxes"], g)
    return whole_image(B, dev)


# ------------------------------------------------------------------ mixing


def bg_mix(x, mask, bg):
    """Eq. (4): m * x + (1 - m) * bg (all float in [0, 1], mask (B, 1, H, W))."""
    return mask * x + (1 - mask) * bg


def other_index(B, g, dev):
    """For each sample a different sample of the batch (itself only when B == 1)."""
    if B == 1:
        torch.rand(1, generator=g, device=dev)
        return torch.zeros(1, dtype=torch.long, device=dev)
    shift = 1 + (torch.rand(B, generator=g, device=dev) * (B - 1)).long().clamp(max=B - 2)
    return (torch.arange(B, device=dev) + shift) % B


def cutmix_mask(B, H, W, lam, g, dev):
    """(B, 1, H, W) float mask, 1 inside a CutMix box of area ~(1 - lam), 0 elsewhere."""
    cut = torch.sqrt(1 - lam)
    c = torch.rand(B, 2, generator=g, device=dev)
    cx, cy = c[:, 0] * W, c[:, 1] * H
    x1 = (cx - cut * W / 2).clamp(0, W)
    x2 = (cx + cut * W / 2).clamp(0, W)
    y1 = (cy - cut * H / 2).clamp(0, H)
    y2 = (cy + cut * H / 2).clamp(0, H)
    xs = torch.arange(W, device=dev).float() + 0.5
    ys = torch.arange(H, device=dev).float() + 0.5
    inx = (xs[None] >= x1[:, None]) & (xs[None] < x2[:, None])
    iny = (ys[None] >= y1[:, None]) & (ys[None] < y2[:, None])
    return (iny[:, :, None] & inx[:, None, :]).float()[:, None]


def mix_sources(variant, batch, x, params, p_mix, g):
    """The mixed version of each stored image and which samples use it.

    Returns (mixed (B,3,S,S) float or None, flag (B,) bool). Draws a fixed number of
    random values for a given variant and batch size.
    """
    if not mixes(variant):
        return None, None
    B, _, H, W = x.shape
    dev = x.device
    flag = torch.rand(B, generator=g, device=dev) < p_mix
    if variant in NEEDS_BG:
        mask = batch["mask"].to(dev).float()
        if mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask size {tuple(mask.shape[-2:])} != image size {(H, W)}")
        if variants.get(variant).hard_mask:
            mask = (mask >= params["mask_threshold"]).float()
        bg = batch["bg"].to(dev).float() / 255
        mixed = bg_mix(x, mask, bg)
    else:
        j = other_index(B, g, dev)
        lam = torch.rand(B, generator=g, device=dev)  # Beta(1, 1)
        if variants.get(variant).mix == "mixup":
            mixed = bg_mix(x, lam.view(B, 1, 1, 1), x[j])
        else:
            cut = cutmix_mask(B, H, W, lam, g, dev)
            mixed = bg_mix(x, 1 - cut, x[j])
    return mixed, flag
