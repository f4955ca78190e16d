"""Training data path (STUB — being filled in; signatures are final)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

VARIANTS = ("baseline", "oa_crop_cam", "oa_crop_gt", "bg_mixup_cam", "bg_hardmix_gt", "mixup", "cutmix")


class ManifestImages(Dataset):
    def __init__(self, df, store_size, boxes=None, masks=None, bg_rects=None, variant="baseline"):
        raise NotImplementedError


def collate(items):
    raise NotImplementedError


def build_loader(dataset, batch_size, workers, shuffle, drop_last, seed=0, epoch=0,
                 start_batch=0, rank=0, world=1):
    raise NotImplementedError
