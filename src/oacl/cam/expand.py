"""Inference-only copies of a ResNet encoder for CAM: expanded resolution, folded BN.

The caller's model is never modified: every function here works on a deep copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .params import DEFAULTS

# the layers whose first block loses its stride, per ``expand_res`` (its keys are
# oacl.cam.params.CHOICES["expand_res"])
EXPANDED_LAYERS = {1: (), 2: ("layer4",), 4: ("layer4", "layer3")}


def expand_resolution(encoder: nn.Module, expand_res: int = DEFAULTS["expand_res"]) -> nn.Module:
    """A deep copy of ``encoder`` whose layer4 (and layer3 for 4) keeps its input stride.

    The "expansion trick" of the paper (Appendix B.1, after wsolevaluation): every
    Conv2d of the first block of layer4 (its strided 3x3 conv and the 1x1 downsample)
    gets stride 1, which doubles the layer4 map (7 -> 14 at 224 px); ``expand_res=4``
    does the same to layer3 as well. Weights are unchanged; used at inference only.
    """
    layers = EXPANDED_LAYERS[expand_res]
    encoder = copy.deepcopy(encoder)
    for name in layers:
        for m in getattr(encoder, name)[0].modules():
            if isinstance(m, nn.Conv2d):
                m.stride = (1, 1)
    return encoder


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BN as one conv: w' = w*s, b' = (b - mean)*s + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _foldable(conv, bn) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.affine
        and bn.running_mean is not None
    )


@torch.no_grad()
def fold_batchnorm(encoder: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a conv into it, IN PLACE (use on a copy).

    Covers the torchvision ResNet layout: the stem (conv1/bn1), the blocks'
    conv{i}/bn{i} pairs and ``downsample = Sequential(conv, bn)``. Saves one memory-bound
    pass per BN; outputs match the unfolded model to float rounding (~1e-5).
    """
    for module in list(encoder.modules()):
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if _foldable(conv, bn):
                setattr(module, f"conv{i}", _fold(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
        ds = getattr(module, "downsample", None)
        if isinstance(ds, nn.Sequential) and len(ds) == 2 and _foldable(ds[0], ds[1]):
            module.downsample = nn.Sequential(_fold(ds[0], ds[1]))
    return encoder


def prepare_encoder(
    encoder: nn.Module,
    expand_res: int = DEFAULTS["expand_res"],
    fuse_bn: bool = DEFAULTS["fuse_bn"],
    channels_last: bool = False,
) -> nn.Module:
    """Copy for CAM inference: expanded, BN folded, eval mode, no parameter grads."""
    encoder = expand_resolution(encoder, expand_res).eval()
    if fuse_bn:
        fold_batchnorm(encoder)
    for p in encoder.parameters():
        p.requires_grad_(False)
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder


def trunk(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer4 activation map of a torchvision-style ResNet (B, C, h, w)."""
    x = encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))
    return encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(x))))
