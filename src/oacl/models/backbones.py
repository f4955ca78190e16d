"""Encoders (torchvision-style ResNets) and the small MLP heads used by the methods.

Every encoder exposes ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool`` and
``fc = Identity``, so ``encoder(x)`` returns pooled features (B, C) and ContraCAM can
walk the layers. ``resnet18_small`` is the laptop default for 64 px scenes: the
ResNet-18 layout at width 16 (channels 16/32/64/128) with a stride-1 3x3 stem and no
max-pool, so a 64 px input gives an 8x8 layer4 map (as a 224 px input does 7x7 in
the full ResNet). ``resnet18_small_reflect`` / ``resnet18_small_circular`` are the same
network with reflect / circular padding in every convolution: zero padding lets a CNN
know where it is in the image (its CAMs share a centre blob whatever the image shows),
these do not, so a CAM's per-image content can be measured alone (docs/architecture.md).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, ResNet, resnet18, resnet50

# arch -> pooled feature dimension
FEAT_DIMS = {
    "resnet18": 512,
    "resnet50": 2048,
    "resnet18_small": 128,
    "resnet18_small_reflect": 128,
    "resnet18_small_circular": 128,
}


class SmallResNet(ResNet):
    """ResNet-18 layout with base width ``width`` and a CIFAR-style stem (no stride, no pool)."""

    def __init__(self, width: int = 16, layers=(2, 2, 2, 2), padding_mode: str = "zeros"):
        nn.Module.__init__(self)  # ResNet.__init__ hard-codes 64 channels; build by hand
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, width, layers[0])
        self.layer2 = self._make_layer(BasicBlock, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        for m in self.modules():  # same initialisation as torchvision's ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
                m.padding_mode = padding_mode


def build_encoder(arch: str) -> ResNet:
    """A randomly initialised encoder with ``fc = Identity`` (pooled features out)."""
    if arch == "resnet18":
        enc = resnet18(weights=None)
    elif arch == "resnet50":
        enc = resnet50(weights=None)
    elif arch == "resnet18_small":
        enc = SmallResNet()
    elif arch in ("resnet18_small_reflect", "resnet18_small_circular"):
        enc = SmallResNet(padding_mode=arch.rsplit("_", 1)[1])
    else:
        raise ValueError(f"unknown arch {arch!r} (known: {sorted(FEAT_DIMS)})")
    enc.fc = nn.Identity()
    return enc


def feat_dim(arch: str) -> int:
    if arch not in FEAT_DIMS:
        raise ValueError(f"unknown arch {arch!r} (known: {sorted(FEAT_DIMS)})")
    return FEAT_DIMS[arch]


def feature_map(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer4 activation map (B, C, h, w) of a torchvision-style ResNet."""
    x = encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))
    x = encoder.layer2(encoder.layer1(x))
    return encoder.layer4(encoder.layer3(x))


def mlp(in_dim: int, hidden: int, out_dim: int, bn: bool) -> nn.Sequential:
    """Linear -> (BN) -> ReLU -> Linear: the MoCo v2 (bn=False) / BYOL (bn=True) head."""
    layers = [nn.Linear(in_dim, hidden, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
    return nn.Sequential(*layers)


class L2Projector(nn.Module):
    """Pooled features -> L2-normalised embedding; ``head=None`` is the normalised identity."""

    def __init__(self, head: nn.Module | None = None):
        super().__init__()
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(x), dim=1)
