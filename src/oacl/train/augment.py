"""Batched two-view augmentations on the device (STUB — signatures are final)."""
from __future__ import annotations

import torch

DEFAULTS = {
    "scale": [0.08, 1.0],
    "ratio": [3 / 4, 4 / 3],
    "jitter": [0.4, 0.4, 0.4, 0.1],
    "jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_p": 0.5,
    "blur_sigma": [0.1, 2.0],
    "blur_kernel_224": 23,
    "flip_p": 0.5,
    "p_mix": {"moco": 0.4, "byol": 0.3},
    "mask_threshold": 0.2,
}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class TwoViewAugment:
    def __init__(self, params, variant, image_size, method="moco"):
        raise NotImplementedError

    def __call__(self, batch, generator):
        raise NotImplementedError


def eval_transform(images_uint8, image_size):
    raise NotImplementedError
