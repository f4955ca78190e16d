"""Batched two-view augmentations that run on the training device (CPU or CUDA).

The loader only decodes and resizes images to a fixed store size; everything random
happens here, on whole batches, with every draw taken from one ``torch.Generator``
(so a run is reproducible and resumable from the generator state). Per view:

    [variant pre-op]  object-aware crop region / background mixup (objaware.py)
    RandomResizedCrop  scale (0.08, 1), ratio (3/4, 4/3), in *original-pixel* geometry
    horizontal flip    p 0.5
    colour jitter      (0.4, 0.4, 0.4, 0.1) p 0.8, the four ops in a random order per sample
    grayscale          p 0.2
    Gaussian blur      p 0.5, sigma (0.1, 2.0), kernel 23 at 224 px (scaled, odd)
    normalise          ImageNet mean / std (oacl.geometry)

This is the MoCo v2 recipe the paper uses for all experiments (Appendix B.1), with
the crop scale (0.08, 1). Crops are resampled with ``torchvision.ops.roi_align``
(bilinear, adaptive sampling ratio, so a downscaling crop averages several samples
per output pixel as an anti-aliased resize would). Blur: torchvision's sigma range is
in pixels at 224 px; with ``blur_scale_with_size`` (default) both kernel and sigma
are scaled by image_size / 224 so small images get the same relative blur.

The parameters are the ``augment`` entry of the pretrain parameters (oacl.train.params:
defaults, choices and their check); ``TwoViewAugment`` takes them resolved.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..geometry import normalise
from . import objaware

GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision


# ----------------------------------------------------------------------- sampling


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def sample_crops(regions, orig_hw, scale, ratio, g, attempts=10):
    """Random-resized-crop boxes inside ``regions`` (torchvision's algorithm, batched).

    regions: (B, 4) normalised xyxy of the stored image; orig_hw: (B, 2) (H, W) in
    pixels of the original image, so area and aspect ratio are those torchvision
    would use on the original. Returns (B, 4) normalised xyxy, always inside the region.
    """
    B = regions.shape[0]
    dev = regions.device
    rw = (regions[:, 2] - regions[:, 0]) * orig_hw[:, 1]
    rh = (regions[:, 3] - regions[:, 1]) * orig_hw[:, 0]
    area = (rw * rh)[:, None]
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(B, attempts, generator=g, device=dev)
    lr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        B, attempts, generator=g, device=dev
    )
    ar = torch.exp(lr)
    w = torch.sqrt(area * s * ar)
    h = torch.sqrt(area * s / ar)
    ok = (w <= rw[:, None]) & (h <= rh[:, None]) & (w > 0) & (h > 0)
    first = torch.argmax(ok.int(), dim=1)  # first valid attempt (0 if none)
    any_ok = ok.any(dim=1)
    w = w.gather(1, first[:, None])[:, 0]
    h = h.gather(1, first[:, None])[:, 0]
    # torchvision's fallback: a centre crop with the ratio clamped into range
    in_ratio = rw / rh.clamp_min(1e-12)
    fw = torch.where(in_ratio < ratio[0], rw, torch.where(in_ratio > ratio[1], rh * ratio[1], rw))
    fh = torch.where(in_ratio < ratio[0], rw / ratio[0], torch.where(in_ratio > ratio[1], rh, rh))
    w = torch.where(any_ok, w, fw)
    h = torch.where(any_ok, h, fh)
    u = torch.rand(B, 2, generator=g, device=dev)
    x0 = torch.where(any_ok, u[:, 0] * (rw - w), (rw - w) / 2)
    y0 = torch.where(any_ok, u[:, 1] * (rh - h), (rh - h) / 2)
    W, H = orig_hw[:, 1], orig_hw[:, 0]
    x1 = regions[:, 0] + x0 / W
    y1 = regions[:, 1] + y0 / H
    boxes = torch.stack([x1, y1, x1 + w / W, y1 + h / H], dim=1)
    # float round-off must never step outside the region
    lo = regions[:, :2].repeat(1, 2)
    hi = regions[:, 2:].repeat(1, 2)
    return torch.minimum(torch.maximum(boxes, lo), hi)


def crop_resize(images, boxes, size, flip=None, src_index=None):
    """Resample normalised ``boxes`` of ``images`` (N, C, S, S) to (len(boxes), C, size, size).

    ``src_index`` picks the source image of each box (default: box i from image i);
    ``flip`` (bool per box) mirrors the output horizontally.
    """
    S_h, S_w = images.shape[-2:]
    n = boxes.shape[0]
    if src_index is None:
        src_index = torch.arange(n, device=boxes.device)
    b = boxes.to(images.dtype)
    # built from python scalars: a torch.tensor(..., device=cuda) constant would synchronise
    rois = torch.stack(
        [src_index.to(images.dtype), b[:, 0] * S_w, b[:, 1] * S_h, b[:, 2] * S_w, b[:, 3] * S_h],
        dim=1,
    )
    out = roi_align(
        images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    if flip is not None:
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


# ------------------------------------------------------------------- colour ops


def rgb_to_gray(x):
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _f(v, x):
    return v.to(x.dtype).view(-1, 1, 1, 1)


def adjust_brightness(x, f):
    return (x * _f(f, x)).clamp(0, 1)


def adjust_contrast(x, f):
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    f = _f(f, x)
    return (f * x + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(x, f):
    f = _f(f, x)
    return (f * x + (1 - f) * rgb_to_gray(x)).clamp(0, 1)


def adjust_hue(x, shift):
    """Rotate the HSV hue by ``shift`` (turns), as torchvision's adjust_hue, in one pass.

    Works in sextant units without materialising HSV: v = max, v*s = max - min, and
    the HSV->RGB step is c = v - v*s*clamp(min(k, 4 - k), 0, 1), k = (n_c + 6h) mod 6.
    """
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    delta = maxc - x.amin(dim=1)
    # which channel is the maximum decides the sextant (red wins ties, then green);
    # a gray pixel has delta == 0, so num == 0 and any hue gives back the gray
    num = torch.where(
        maxc == r, g - b, torch.where(maxc == g, b - r + 2 * delta, r - g + 4 * delta)
    )
    h6 = num / delta.clamp_min(torch.finfo(x.dtype).tiny) + 6 * _f(shift, x)[:, 0]
    n = 5 - 2 * torch.arange(3, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # R, G, B: 5, 3, 1
    k = (h6[:, None] + n) % 6
    return (maxc[:, None] - delta[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)).clamp(0, 1)


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x, factors, steps):
    """The four jitter ops, in a per-sample order, computed only where applied.

    factors: (B, 4) brightness, contrast, saturation factors and hue shift;
    steps: (B, 4) the op (0..3) each sample takes at each step, -1 for none (a
    sample without jitter has all -1). ``steps`` is read on the host: pass a CPU
    tensor to avoid a device synchronisation. Cost: four ops per jittered sample.
    """
    steps = steps.cpu()
    x = x.clone()
    for step in range(4):
        for op_id, op in enumerate(COLOR_OPS):
            sel = torch.nonzero(steps[:, step] == op_id)[:, 0]
            if sel.numel():
                sel = sel.to(x.device, non_blocking=True)
                x[sel] = op(x[sel], factors[sel, op_id])
    return x


def grayscale(x, apply):
    return torch.where(apply[:, None, None, None], rgb_to_gray(x).expand_as(x), x)


def blur_kernel_size(image_size, kernel_224=23):
    k = max(3, int(round(kernel_224 * image_size / 224)))
    return k if k % 2 else k + 1


def _gauss(sigma, kernel_size, dtype):
    half = kernel_size // 2
    t = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma.float()[:, None]) ** 2)
    return (k / k.sum(dim=1, keepdim=True)).to(dtype)  # (B, k)


def _blur_matrix(kernels, n):
    """(B, n, n) matrices M with (M @ v) = v blurred with reflect padding (as F.pad 'reflect')."""
    B, k = kernels.shape
    dev = kernels.device
    src = torch.arange(n, device=dev)[:, None] + torch.arange(k, device=dev)[None] - k // 2
    src = src.abs()
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)
    m = torch.zeros(B, n, n, device=dev, dtype=kernels.dtype)
    return m.scatter_add_(2, src.expand(B, n, k), kernels[:, None, :].expand(B, n, k))


def gaussian_blur(x, sigma, kernel_size, method="auto"):
    """Separable Gaussian blur with one sigma per sample, reflect padding (as torchvision).

    method "conv": depthwise 1-D convolutions; "matmul": each pass is a batched product
    with a (reflect-padded) band matrix, which tensor cores run far faster than a 23-tap
    depthwise convolution; "auto": matmul on CUDA, conv elsewhere.
    """
    B, C, H, W = x.shape
    half = kernel_size // 2
    if half >= min(H, W):
        raise ValueError(f"blur kernel {kernel_size} too large for a {H}x{W} image")
    k = _gauss(sigma, kernel_size, x.dtype)
    if method == "auto":
        method = "matmul" if x.is_cuda else "conv"
    if method == "matmul":
        y = torch.matmul(x, _blur_matrix(k, W)[:, None].transpose(-1, -2))
        return torch.matmul(_blur_matrix(k, H)[:, None], y)
    kc = k.repeat_interleave(C, dim=0)  # (B*C, k)
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(
        F.pad(y, (half, half, 0, 0), mode="reflect"), kc.view(B * C, 1, 1, -1), groups=B * C
    )
    y = F.conv2d(
        F.pad(y, (0, 0, half, half), mode="reflect"), kc.view(B * C, 1, -1, 1), groups=B * C
    )
    return y.view(B, C, H, W)


# ----------------------------------------------------------------------- pipeline


class TwoViewAugment:
    """Two independently augmented views of a batch, after the variant's pre-op.

    ``__call__(batch, generator)``: ``batch`` is the collated loader batch already on
    the device (``image`` uint8 (B,3,S,S) plus what the variant needs); returns
    (view1, view2), float (B, 3, image_size, image_size), normalised. The parameters
    of the last call are kept in ``self.last`` (crop boxes, flips, mixed samples) for
    tests and debugging.
    """

    def __init__(self, params, variant, image_size, method="moco"):
        self.p = params  # the ``augment`` entry of oacl.train.params.resolve: merged, checked
        self.variant = variant
        self.method = method
        self.image_size = int(image_size)
        self.p_mix = float(self.p["p_mix"].get(method, 0.0))
        scale = self.image_size / 224 if self.p["blur_scale_with_size"] else 1.0
        self.kernel = (
            blur_kernel_size(self.image_size, self.p["blur_kernel_224"])
            if self.p["blur_scale_with_size"]
            else int(self.p["blur_kernel_224"]) | 1
        )
        self.sigma = [s * scale for s in self.p["blur_sigma"]]
        self.last: dict = {}

    def __call__(self, batch, generator):
        g = generator
        x = batch["image"]
        dev = x.device
        B, _, S, _ = x.shape
        # source and crop in float32 (roi boxes in half precision would be off by up to
        # 1/16 px at 256 px); the colour ops run in the compute dtype
        x = x.float() / 255
        orig_hw = batch.get("orig_hw")
        orig_hw = (
            torch.full((B, 2), float(S), device=dev) if orig_hw is None else orig_hw.to(dev).float()
        )
        # variant pre-op: crop region (shared by both views) and the mixed source image
        regions = objaware.crop_regions(self.variant, batch, g, B, dev)
        mixed, mix_flag = objaware.mix_sources(self.variant, batch, x, self.p, self.p_mix, g)
        if self.p["mix_view"] == "random":
            mix_second = torch.rand(B, generator=g, device=dev) < 0.5
        else:
            mix_second = torch.full((B,), self.p["mix_view"] == "second", device=dev)
        source = x if mixed is None else torch.cat([x, mixed])
        # all draws first, then ONE small device->host copy of the per-sample decisions
        # (which samples get which colour op): the only synchronisation of the call
        draws = [self._draw(regions, orig_hw, g) for _ in range(2)]
        host = torch.stack([d["decisions"] for d in draws]).cpu()
        views = []
        for v, d in enumerate(draws):
            src = torch.arange(B, device=dev)
            use_mix = torch.zeros(B, dtype=torch.bool, device=dev)
            if mixed is not None:
                use_mix = mix_flag & (mix_second if v == 1 else ~mix_second)
                src = torch.where(use_mix, src + B, src)
            y = crop_resize(source, d["boxes"], self.image_size, d["flip"], src).to(
                self._dtype(dev)
            )
            y = self._color(y, d, host[v])
            views.append(self._normalise(y))
            self.last[f"boxes{v + 1}"] = d["boxes"]
            self.last[f"flip{v + 1}"] = d["flip"]
            self.last[f"mixed{v + 1}"] = use_mix
        self.last["regions"] = regions
        return views[0], views[1]

    def _draw(self, regions, orig_hw, g):
        """Every random parameter of one view (a fixed number of draws per batch size)."""
        B, dev = regions.shape[0], regions.device
        boxes = sample_crops(regions, orig_hw, self.p["scale"], self.p["ratio"], g)
        flip = torch.rand(B, generator=g, device=dev) < self.p["flip_p"]
        b, c, s, h = self.p["jitter"]
        lo = [max(0.0, 1 - b), max(0.0, 1 - c), max(0.0, 1 - s), -h]
        hi = [1 + b, 1 + c, 1 + s, h]
        u = torch.rand(B, 4, generator=g, device=dev)
        factors = torch.stack([lo[i] + (hi[i] - lo[i]) * u[:, i] for i in range(4)], dim=1)
        order = torch.argsort(torch.rand(B, 4, generator=g, device=dev), dim=1)
        jit = torch.rand(B, generator=g, device=dev) < self.p["jitter_p"]
        gray = torch.rand(B, generator=g, device=dev) < self.p["grayscale_p"]
        blur = torch.rand(B, generator=g, device=dev) < self.p["blur_p"]
        sigma = _uniform(B, self.sigma[0], self.sigma[1], g)
        # per sample: the op applied at each of the 4 jitter steps (-1: none), blur flag
        steps = torch.where(jit[:, None], order, torch.full_like(order, -1))
        decisions = torch.cat([steps, blur[:, None].long()], dim=1)
        return {
            "boxes": boxes,
            "flip": flip,
            "factors": factors,
            "gray": gray,
            "sigma": sigma,
            "decisions": decisions,
        }

    def _color(self, y, d, host):
        """Jitter, grayscale, blur; ``host`` holds the view's decisions on the CPU."""
        y = color_jitter(y, d["factors"], host[:, :4])
        y = grayscale(y, d["gray"])
        sel = torch.nonzero(host[:, 4] == 1)[:, 0]
        if sel.numel():
            sel = sel.to(y.device, non_blocking=True)
            y[sel] = gaussian_blur(y[sel], d["sigma"][sel], self.kernel, self.p["blur_method"])
        return y

    def _dtype(self, dev):
        name = self.p["compute_dtype"]
        if name == "auto":
            return torch.float16 if dev.type == "cuda" else torch.float32
        return getattr(torch, name)

    def _normalise(self, y):
        return normalise(y, self.p["mean"], self.p["std"])
