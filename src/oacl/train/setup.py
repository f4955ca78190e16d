"""What a training run (oacl.train.loop) is made of, built before its first step.

``Run`` holds what the steps share; ``setup`` fills it: the manifest's train split (and
the checks that need it), the side information of a debiasing variant, the dataset,
workers and threads, the seeds, the method (model), the optimiser and its per-step
learning rate (``lr_at``), the augmentation and its generator. ``start`` adds what a
resumed run needs as well: the DDP wrapper, the kNN monitor's loaders, the clock.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import variants
from ..artifacts import merge_shards, read_manifest, read_shards
from . import augment, data, dist, knn, sideinfo, threads
from .methods import build_method

log = logging.getLogger(__name__)


class Run:
    """What the steps of one training run share (set by setup, state.resume and start)."""

    params: dict
    dev: torch.device
    rank: int
    world: int
    manifest_path: Path
    df: object  # the manifest (pandas DataFrame)
    train_df: object  # its train split, variant original
    num_classes: int
    train_ds: data.ManifestImages
    side_info: dict | None  # coverage of the training images by their side information
    steps_per_epoch: int
    total_steps: int
    workers: int
    tuner: threads.ThreadTuner | None  # the CPU thread count under load (oacl.train.threads)
    method: nn.Module  # the method (encoders, heads, queue); what is saved and exported
    model: nn.Module  # the method, wrapped in DDP with several processes
    opt: torch.optim.Optimizer
    aug: augment.TwoViewAugment
    gen: torch.Generator  # this rank's augmentation generator
    fp: dict  # the resume fingerprint
    # progress: epoch, batch within it, optimiser steps, epoch metrics, seconds before a resume
    epoch: int = 0
    start_batch: int = 0
    step: int = 0
    history: list
    elapsed: float = 0.0
    t_start: float
    knn_loaders: tuple | None
    tty: bool

    @property
    def batch_size(self) -> int:
        return int(self.params["batch_size"])


def lr_at(step: int, total: int, params: dict) -> float:
    """The learning rate of ``step`` of ``total``: cosine from base_lr to min_lr, both
    x batch_size / 256 (oacl.train.loop)."""
    scale = params["batch_size"] / 256
    hi, lo = params["base_lr"] * scale, params["min_lr"] * scale
    return lo + (hi - lo) * (1 + math.cos(math.pi * step / max(1, total))) / 2


def read_train_split(params, manifest_path, world):
    """The manifest, its train split and the number of classes; checks the batch fits."""
    if not manifest_path.exists():
        raise FileNotFoundError(f"manifest not found: {manifest_path}")
    df = read_manifest(manifest_path)
    train_df = df[(df["split"] == "train") & (df["variant"] == "original")].reset_index(drop=True)
    if len(train_df) == 0:
        raise ValueError(f"manifest {manifest_path} has no train rows with variant 'original'")
    B = int(params["batch_size"])
    if B > len(train_df):
        raise ValueError(
            f"batch_size {B} is larger than the train split of {manifest_path} "
            f"({len(train_df)} images); lower pretrain.batch_size"
        )
    if B % world:
        raise ValueError(f"batch_size {B} is not divisible by the {world} processes")
    labels = train_df["label"].to_numpy()
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if params["method"] == "supervised" and (labels < 0).any():
        raise ValueError(f"method supervised needs a label for every train row of {manifest_path}")
    return df, train_df, num_classes


def aux_inputs(params: dict, manifest_path, train_df, boxes_paths, masks_paths):
    """The ManifestImages keyword arguments a *_cam variant needs (GT variants read the
    manifest) and the side-information coverage of the training images (None for a
    variant without side information); raises sideinfo.SideInfoError before any training
    when images lack it."""
    variant = params["variant"]
    spec = variants.get(variant)
    ids = list(train_df["image_id"])
    limit = params["side_info_max_empty"]
    if not spec.cam_boxes:
        gt = None
        if spec.source == "gt":
            gt = {
                "source": str(manifest_path),
                "boxes": data.gt_crop_boxes(train_df),
                "has_mask": [bool(p) for p in train_df["mask_abspath"]],
            }
        return {}, sideinfo.check(variant, ids, gt=gt, max_empty=limit)
    if not boxes_paths:
        raise ValueError(f"variant {variant} needs box shards (--boxes)")
    box_shards = read_shards(boxes_paths, "boxes")
    mask_shards = None
    if spec.cam_masks:
        if not masks_paths:
            raise ValueError(f"variant {variant} needs mask shards (--masks)")
        mask_shards = read_shards(masks_paths, "masks")
    cov = sideinfo.check(
        variant, ids, box_shards=box_shards, mask_shards=mask_shards, max_empty=limit
    )
    out = {"boxes": merge_shards(box_shards)}
    if mask_shards is not None:
        out["masks"] = merge_shards(mask_shards)
    return out, cov


def setup(params, manifest_path, boxes, masks, dev, rank, world) -> Run:
    """Data (train split, dataset, workers, threads), then seeds, model, optimiser, augmentation."""
    run = Run()
    run.params, run.dev, run.rank, run.world, run.manifest_path = (
        params,
        dev,
        rank,
        world,
        manifest_path,
    )
    run.df, run.train_df, run.num_classes = read_train_split(params, manifest_path, world)
    variant = params["variant"]
    aux, run.side_info = aux_inputs(params, manifest_path, run.train_df, boxes, masks)
    if rank == 0:
        sideinfo.log_coverage(run.side_info, log)
    run.train_ds = data.ManifestImages(run.train_df, params["store_size"], variant=variant, **aux)
    run.steps_per_epoch = len(run.train_df) // run.batch_size
    run.total_steps = run.steps_per_epoch * params["epochs"]
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    run.workers = dist.default_workers(params["workers"], local_world)
    n_threads = params["threads"] if params["threads"] != threads.AUTO else None
    n_threads = n_threads or (dist.cpu_count() // local_world if local_world > 1 else None)
    if n_threads:  # oversubscribed OpenMP threads spin and can slow training tenfold
        torch.set_num_threads(max(1, int(n_threads)))
    run.tuner = threads.build(params, dev, world)

    # seeds: the model init and queue are identical on every rank; augmentation differs per rank
    torch.manual_seed(params["seed"])
    np.random.seed(params["seed"])
    random.seed(params["seed"])
    # channels_last on every device: a 64 px ResNet train step is 1.3-1.5x faster on
    # CPU too, with the same loss (benchmarks/channels_last_cpu.py)
    method = build_method(params, run.num_classes).to(dev).to(memory_format=torch.channels_last)
    if dev.type == "cuda" and world > 1:
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    run.method = method
    trainable = [p for p in method.parameters() if p.requires_grad]
    lr0, wd = lr_at(0, run.total_steps, params), params["weight_decay"]
    if params["optimizer"] == "adam":
        run.opt = torch.optim.Adam(trainable, lr=lr0, weight_decay=wd)
    else:
        run.opt = torch.optim.SGD(trainable, lr=lr0, momentum=params["momentum"], weight_decay=wd)
    run.aug = augment.TwoViewAugment(
        params["augment"], variant, params["image_size"], method=params["method"]
    )
    run.gen = torch.Generator(device=dev).manual_seed(params["seed"] * 1000 + rank)
    return run


def start(run: Run) -> None:
    """DDP wrapper, the kNN monitor's loaders (rank 0), the progress display, the clock."""
    run.model = run.method
    if run.world > 1:
        run.model = nn.parallel.DistributedDataParallel(
            run.method,
            device_ids=[run.dev.index] if run.dev.type == "cuda" else None,
            broadcast_buffers=False,
        )
    run.knn_loaders = (
        knn_loaders(run.df, run.train_df, run.params, run.workers) if run.rank == 0 else None
    )
    run.tty = sys.stderr.isatty() and run.rank == 0
    run.t_start = time.time()


def knn_loaders(df, train_df, params, workers):
    """The kNN monitor's (train, val) loaders of at most ``knn_max`` images each, or None
    when the manifest has no labelled val split."""
    val_df = df[(df["split"] == "val") & (df["variant"] == "original")].reset_index(drop=True)
    if len(val_df) == 0 or (train_df["label"] < 0).all() or (val_df["label"] < 0).all():
        return None
    tr = train_df.iloc[knn.subsample(len(train_df), params["knn_max"])].reset_index(drop=True)
    va = val_df.iloc[knn.subsample(len(val_df), params["knn_max"])].reset_index(drop=True)
    bs = max(64, params["batch_size"])
    return tuple(
        data.build_loader(
            data.ManifestImages(d, params["store_size"]),
            bs,
            workers,
            shuffle=False,
            drop_last=False,
            seed=0,
        )
        for d in (tr, va)
    )
