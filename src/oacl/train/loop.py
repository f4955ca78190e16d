"""`pretrain(params, manifest, out)`: self-supervised (or supervised) pretraining.

Trains on the manifest's ``train`` split (``variant == original`` rows) with SGD
(lr = base_lr x batch/256, momentum 0.9, weight decay 1e-4 on all parameters) and a
per-step cosine schedule from that lr down to ``min_lr x batch/256`` (the project's "cosine
to 1e-3", read as 1e-3 at batch 256 and scaled with the batch like the base lr, so the
final/initial ratio is 1/30 at any batch size). No warm-up, as in MoCo v2.

Resumable and deterministic: ``train_state.pt`` beside ``out`` holds the method
(encoders, heads, queue, BN stats), the optimiser, the step counters, every RNG state
(torch, CUDA, numpy, python, the augmentation generator of every rank) and the
epoch metrics. It is written atomically every ``ckpt_every_steps`` steps and at each
epoch end; a re-run continues from it. The loader's order depends only on (seed,
epoch) and starts mid-epoch at the saved batch, so on CPU a killed-and-resumed run
ends with the same weights as an uninterrupted one. The state records a fingerprint
(``oacl.fingerprint``) of everything that shapes the result: the parameters, the bytes
of the manifest, of every train/val image (and GT mask) it references and of the box /
mask shards, and the src/oacl code this stage runs (``CODE``). A re-run resumes only
when a fresh fingerprint is equal; otherwise it logs what changed and trains from
scratch (the stale state is overwritten at the first checkpoint).

Outputs: ``out`` (model.pt, see oacl.models.checkpoint) and ``metrics.jsonl`` beside
it (one JSON line per epoch: loss, lr, kNN accuracy, img/s, time; the first line of a
variant with side information also holds ``side_info``, its coverage per source shard).

Side information. Before the first step, a variant that needs boxes, masks or background
rectangles checks that every training image has them (``oacl.train.sideinfo``): an
image in no shard is an error naming the shards read and what each covered, and empty
rows (the CAM yields nothing) beyond ``side_info_max_empty`` of the images are one too.
"""

from __future__ import annotations

import json
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

from .. import codedeps, variants
from .. import fingerprint as fpr
from ..artifacts import merge_shards, read_manifest, read_shards
from ..geometry import IMAGENET_MEAN, IMAGENET_STD
from ..io import torch_save, write_text
from ..models import feat_dim, save_checkpoint
from ..params import merge_params
from . import augment, data, dist, health, knn, sideinfo
from .methods import build_method

log = logging.getLogger(__name__)

STATE_FORMAT = "oacl-train-state-v2"  # v2: content+code fingerprint instead of a config hash
STATE_NAME = "train_state.pt"
METRICS_NAME = "metrics.jsonl"

DEFAULTS = {
    "method": "moco",  # moco | byol | supervised
    "variant": "baseline",  # see oacl.train.data.VARIANTS
    "seed": 0,
    "arch": "resnet18_small",  # resnet18 | resnet50 | resnet18_small[_reflect|_circular]
    "image_size": 64,  # training crop side (224 for the paper's presets)
    "store_size": 64,  # side images are decoded/resized to before cropping (256 at 224 px)
    "epochs": 6,
    "batch_size": 64,  # global; each of N processes takes batch_size / N
    "base_lr": 0.03,  # x batch/256
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "min_lr": 1e-3,  # cosine floor at batch 256, scaled like base_lr
    "workers": None,  # data loader workers per process; None: SLURM_CPUS_PER_TASK / CPUs
    "ckpt_every_steps": 50,
    "knn_every": 2,  # epochs; 0 disables the monitor (the last epoch is always measured)
    "knn_k": 20,
    "knn_max": 10000,  # at most this many train (and val) images in the monitor
    "log_every": 20,  # steps between plain log lines when stderr is not a terminal
    "threads": None,  # torch CPU threads per process; None: torch's default (CPUs / processes under DDP)
    "gpus": 1,  # processes (one per GPU) for DDP; >1 re-launches under torchrun
    # share of the training images whose side information (boxes, mask, background
    # rectangle) may be empty (in the shards, but the CAM / GT yields nothing) before the
    # job fails; an image absent from every shard is always an error (oacl.train.sideinfo)
    "side_info_max_empty": 0.05,
    "moco": {
        "dim": 128,
        "hidden": None,  # None: the encoder's feature dim
        "queue_size": 4096,  # 65536 in the paper presets; 4096 suits ~2k images
        "momentum": 0.999,
        "temperature": 0.2,
        "symmetric": False,  # False: the original asymmetric MoCo v2 loss
        "bn_splits": 4,  # split-BN chunks per process (shuffle-BN emulation), 1: off
        "shuffle_bn": True,  # permute keys before their chunked BN pass
    },
    "byol": {
        "dim": 256,
        "hidden": None,  # None: 4096 (512 for resnet18_small)
        "base_momentum": 0.99,  # target EMA, cosine-increased to 1
    },
    "augment": augment.DEFAULTS,
}

# keys that do not change the trained weights (excluded from the resume fingerprint)
_NOT_HASHED = (
    "workers",
    "threads",
    "ckpt_every_steps",
    "knn_every",
    "knn_k",
    "knn_max",
    "log_every",
    "side_info_max_empty",  # decides whether to train, not how
)
# the src/oacl code this stage runs: the pretrain rule's code input (oacl.codedeps)
CODE = codedeps.code_of("oacl.train.cli")


# ------------------------------------------------------------------------ helpers


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but torch.cuda.is_available() is False")
    return torch.device(device)


def lr_at(step: int, total: int, params: dict) -> float:
    scale = params["batch_size"] / 256
    hi, lo = params["base_lr"] * scale, params["min_lr"] * scale
    return lo + (hi - lo) * (1 + math.cos(math.pi * step / max(1, total))) / 2


def resume_fingerprint(params: dict, world: int, manifest_path, df, train_df, boxes, masks) -> dict:
    """Fingerprint of a training run: parameters, process count, input bytes, code."""
    shaping = {k: v for k, v in params.items() if k not in _NOT_HASHED}
    val_df = df[(df["split"] == "val") & (df["variant"] == "original")]  # the kNN monitor's
    masks_gt = [p for p in train_df["mask_abspath"] if p] if "mask_abspath" in train_df else []
    return fpr.fingerprint(
        {"params": shaping, "world": world},
        {
            "manifest": [manifest_path],
            "train_images": list(train_df["abspath"]),
            "train_gt_masks": masks_gt,
            "val_images": list(val_df["abspath"]),
            "boxes": list(boxes),
            "masks": list(masks),
        },
        CODE,
    )


def _rng_state(gen: torch.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "augment": gen.get_state(),
    }


def _set_rng_state(s: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    gen.set_state(s["augment"])


def _gather_objects(obj) -> list:
    if not dist.is_dist():
        return [obj]
    out = [None] * dist.world()
    torch.distributed.all_gather_object(out, obj)
    return out


def _aux_inputs(params: dict, manifest_path, train_df, boxes_paths, masks_paths):
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


# ------------------------------------------------------------------------ main entry


def pretrain(
    params: dict, manifest_path, out_path, boxes=(), masks=(), device: str = "auto"
) -> dict:
    """Train and write ``out_path`` (model.pt), ``metrics.jsonl``; returns the last metrics."""
    params = merge_params(DEFAULTS, params, where="pretrain")
    out_path = Path(out_path)
    state_path = out_path.parent / STATE_NAME
    metrics_path = out_path.parent / METRICS_NAME
    dev = resolve_device(device)
    rank, world, local = dist.init(dev.type)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
    try:
        return _pretrain(
            params,
            Path(manifest_path),
            out_path,
            state_path,
            metrics_path,
            list(boxes or []),
            list(masks or []),
            dev,
            rank,
            world,
        )
    finally:
        dist.cleanup()


def _pretrain(
    params, manifest_path, out_path, state_path, metrics_path, boxes, masks, dev, rank, world
) -> dict:
    """The driver: set up, resume, train epoch by epoch, finish (cf. MoCo's main_moco.py)."""
    run = _setup(params, manifest_path, boxes, masks, dev, rank, world)
    _resume(run, state_path, boxes, masks)
    _start(run)
    while run.epoch < params["epochs"]:
        _train_epoch(run, state_path, metrics_path)
    dist.barrier()
    return _finish(run, out_path, metrics_path)


class _Run:
    """What the steps of one training run share (set by _setup, _resume and _start)."""

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


def _read_train_split(params, manifest_path, world):
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
    if params["method"] == "moco":
        keys = B * (2 if params["moco"]["symmetric"] else 1)
        if params["moco"]["queue_size"] % keys:
            raise ValueError(
                f"moco.queue_size {params['moco']['queue_size']} must be a multiple of the "
                f"keys enqueued per step ({keys}: batch_size{' x2, symmetric' if keys > B else ''})"
            )
    labels = train_df["label"].to_numpy()
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if params["method"] == "supervised" and (labels < 0).any():
        raise ValueError(f"method supervised needs a label for every train row of {manifest_path}")
    return df, train_df, num_classes


def _setup(params, manifest_path, boxes, masks, dev, rank, world) -> _Run:
    """Data (train split, dataset, workers, threads), then seeds, model, optimiser, augmentation."""
    run = _Run()
    run.params, run.dev, run.rank, run.world, run.manifest_path = (
        params,
        dev,
        rank,
        world,
        manifest_path,
    )
    run.df, run.train_df, run.num_classes = _read_train_split(params, manifest_path, world)
    variant = params["variant"]
    aux, run.side_info = _aux_inputs(params, manifest_path, run.train_df, boxes, masks)
    if rank == 0:
        sideinfo.log_coverage(run.side_info, log)
    run.train_ds = data.ManifestImages(run.train_df, params["store_size"], variant=variant, **aux)
    run.steps_per_epoch = len(run.train_df) // run.batch_size
    run.total_steps = run.steps_per_epoch * params["epochs"]
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    run.workers = dist.default_workers(params["workers"], local_world)
    threads = params["threads"] or (dist.cpu_count() // local_world if local_world > 1 else None)
    if threads:  # oversubscribed OpenMP threads spin and can slow training tenfold
        torch.set_num_threads(max(1, int(threads)))

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
    run.opt = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad],
        lr=lr_at(0, run.total_steps, params),
        momentum=params["momentum"],
        weight_decay=params["weight_decay"],
    )
    run.aug = augment.TwoViewAugment(
        params["augment"], variant, params["image_size"], method=params["method"]
    )
    run.gen = torch.Generator(device=dev).manual_seed(params["seed"] * 1000 + rank)
    return run


def _resume(run: _Run, state_path, boxes, masks) -> None:
    """Fingerprint the run (rank 0 reads the inputs) and load ``train_state.pt`` if it matches."""
    t0 = time.time()
    fp = None
    if run.rank == 0:  # one reader of every input file; the others receive the result
        fp = resume_fingerprint(
            run.params, run.world, run.manifest_path, run.df, run.train_df, boxes, masks
        )
        log.info(
            "fingerprint %s (%d train images hashed in %.1f s)",
            fp["digest"][:16],
            len(run.train_df),
            time.time() - t0,
        )
    run.fp = _broadcast_object(fp)
    run.history = []
    st = _load_state(state_path, run.fp) if state_path.exists() else None
    if st is not None:
        run.method.load_state_dict(st["method"])
        run.opt.load_state_dict(st["optimizer"])
        _set_rng_state(st["rng"][run.rank], run.gen)
        run.epoch, run.start_batch, run.step = st["epoch"], st["batch"], st["step"]
        run.history, run.elapsed = st["metrics"], st["elapsed"]
        if run.rank == 0:
            log.info(
                "resuming %s at epoch %d batch %d (step %d/%d)",
                state_path,
                run.epoch,
                run.start_batch,
                run.step,
                run.total_steps,
            )


def _start(run: _Run) -> None:
    """DDP wrapper, the kNN monitor's loaders (rank 0), the progress display, the clock."""
    run.model = run.method
    if run.world > 1:
        run.model = nn.parallel.DistributedDataParallel(
            run.method,
            device_ids=[run.dev.index] if run.dev.type == "cuda" else None,
            broadcast_buffers=False,
        )
    run.knn_loaders = (
        _knn_loaders(run.df, run.train_df, run.params, run.workers) if run.rank == 0 else None
    )
    run.tty = sys.stderr.isatty() and run.rank == 0
    run.t_start = time.time()


def _save_state(run: _Run, state_path, epoch, batch) -> None:
    """``train_state.pt`` (rank 0) with every rank's generators, to resume at (epoch, batch)."""
    rng = _gather_objects(_rng_state(run.gen))  # every rank's generators
    if run.rank == 0:
        torch_save(
            state_path,
            {
                "format": STATE_FORMAT,
                "fingerprint": run.fp,
                "params": run.params,
                "method": run.method.state_dict(),
                "optimizer": run.opt.state_dict(),
                "rng": rng,
                "epoch": epoch,
                "batch": batch,
                "step": run.step,
                "metrics": run.history,
                "elapsed": run.elapsed + time.time() - run.t_start,
            },
        )


def _train_step(run: _Run, batch) -> tuple[float, float]:
    """One optimiser step on one batch; returns (loss, lr)."""
    params, dev = run.params, run.dev
    lr = lr_at(run.step, run.total_steps, params)
    for g in run.opt.param_groups:
        g["lr"] = lr
    batch = data.to_device(batch, dev)
    v1, v2 = run.aug(batch, run.gen)
    v1 = v1.contiguous(memory_format=torch.channels_last)
    v2 = v2.contiguous(memory_format=torch.channels_last)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        loss, stats = run.model(v1, v2, batch["label"])
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.step += 1
    run.method.momentum_update(run.step / run.total_steps)
    loss_v = float(stats["loss"])
    if not math.isfinite(loss_v):
        raise FloatingPointError(f"loss became {loss_v} at step {run.step}; lower base_lr")
    return loss_v, lr


def _train_epoch(run: _Run, state_path, metrics_path) -> None:
    """One epoch (from ``start_batch`` when resumed), its metrics, the state and metrics.jsonl."""
    params, B, epoch = run.params, run.batch_size, run.epoch
    loader = getattr(run, "loader", None)
    if loader is None:  # one loader for the run: its workers start once, not every epoch
        loader = run.loader = data.build_loader(
            run.train_ds,
            B,
            run.workers,
            shuffle=True,
            drop_last=True,
            seed=params["seed"],
            epoch=epoch,
            start_batch=run.start_batch,
            rank=run.rank,
            world=run.world,
            persistent=True,
        )
    else:
        data.set_position(loader, epoch, run.start_batch)
    bar = _progress(run.tty, run.steps_per_epoch, run.start_batch, epoch, params["epochs"])
    t_epoch, n_seen, loss_sum, t_first = time.time(), 0, 0.0, None
    with torch.random.fork_rng(devices=[]):  # DataLoader draws a seed from the global RNG;
        batches = iter(loader)  # keep it out so resumed and uninterrupted runs agree
    for i, batch in enumerate(batches, start=run.start_batch):
        if t_first is None:  # workers started and the first batch decoded
            t_first = time.time()
        loss_v, lr = _train_step(run, batch)
        loss_sum += loss_v
        n_seen += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3f}", lr=f"{lr:.4f}")
        elif run.rank == 0 and params["log_every"] and run.step % params["log_every"] == 0:
            rate = n_seen * B / max(1e-9, time.time() - t_epoch)
            eta = (run.total_steps - run.step) * B / max(rate, 1e-9)
            log.info(
                "epoch %d step %d/%d loss %.4f lr %.5f %.1f img/s eta %.0fs",
                epoch + 1,
                run.step,
                run.total_steps,
                loss_v,
                lr,
                rate,
                eta,
            )
        if (
            i + 1 < run.steps_per_epoch
            and params["ckpt_every_steps"]
            and run.step % params["ckpt_every_steps"] == 0
        ):
            _save_state(run, state_path, epoch, i + 1)
    if bar is not None:
        bar.close()
    rec = _epoch_metrics(run, n_seen, loss_sum, time.time() - t_epoch)
    # loader start-up (worker processes importing torch, the first batch) apart from the
    # steady rate: in short epochs it would otherwise be most of the throughput figure
    start = (t_first or time.time()) - t_epoch
    rec["loader_start_s"] = start
    rec["img_per_s_steady"] = (n_seen - 1) * run.batch_size / max(rec["time_s"] - start, 1e-9)
    run.history.append(rec)
    run.epoch, run.start_batch = epoch + 1, 0
    _save_state(run, state_path, run.epoch, 0)
    if run.rank == 0:
        write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in run.history))


def _epoch_metrics(run: _Run, n_seen, loss_sum, dt) -> dict:
    """The epoch's line of metrics.jsonl: loss, lr, speed; kNN accuracy and health (rank 0)."""
    params, epoch, dev = run.params, run.epoch, run.dev
    loss_mean = dist.all_reduce_mean(loss_sum / max(1, n_seen), dev)
    rec = {
        "epoch": epoch + 1,
        "step": run.step,
        "loss": loss_mean,
        "lr": lr_at(run.step, run.total_steps, params),
        "img_per_s": n_seen * run.batch_size / max(dt, 1e-9),
        "time_s": dt,
        "knn_acc": None,
        "chance_loss": health.chance_loss(params, run.num_classes),
    }
    if run.side_info is not None and not run.history:  # the first line: what it trained on
        rec["side_info"] = run.side_info
    last = epoch + 1 == params["epochs"]
    if (
        run.rank == 0
        and run.knn_loaders
        and (last or (params["knn_every"] and (epoch + 1) % params["knn_every"] == 0))
    ):
        t0 = time.time()
        with torch.random.fork_rng(devices=[]):
            rec["knn_acc"] = knn.knn_accuracy(
                run.method.encoder,
                *run.knn_loaders,
                params["image_size"],
                dev,
                k=params["knn_k"],
                channels_last=True,
            )
        rec["knn_time_s"] = time.time() - t0
    if run.rank == 0 and last:
        with torch.random.fork_rng(devices=[]):
            rec["object_reliance"] = health.object_reliance(
                run.method.encoder, run.df, params, dev, run.workers
            )
    if run.rank == 0:
        log.info(
            "epoch %d/%d: %s",
            epoch + 1,
            params["epochs"],
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in rec.items()
                if k != "side_info"  # logged per shard before training
            ),
        )
    return rec


def _finish(run: _Run, out_path, metrics_path) -> dict:
    """Rank 0 exports model.pt (weights + meta) and the final metrics.jsonl; the last metrics."""
    params = run.params
    if run.rank == 0:
        meta = {
            "method": params["method"],
            "arch": params["arch"],
            "variant": params["variant"],
            "image_size": params["image_size"],
            "store_size": params["store_size"],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "num_classes": run.num_classes,
            "feat_dim": feat_dim(params["arch"]),
            "epoch": run.epoch,
            "seed": params["seed"],
            "fingerprint": run.fp["digest"],
        }
        save_checkpoint(out_path, run.method.export(meta))  # SyncBN keeps BatchNorm's state keys
        write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in run.history))
    return run.history[-1] if run.history else {}


def _load_state(path: Path, fp: dict) -> dict | None:
    """The saved state when it was written by this exact run (same fingerprint), else None.

    Anything else starts from scratch, and the log says why: a state that resumed
    after its inputs or code changed would return a model of the old ones.
    """
    why = None
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)  # our own file (RNG tuples)
    except Exception as exc:
        st, why = None, f"it cannot be read ({type(exc).__name__}: {exc})"
    if why is None and (not isinstance(st, dict) or st.get("format") != STATE_FORMAT):
        why = f"it is not an oacl training state of format {STATE_FORMAT}"
    if why is None:
        diff = fpr.differences(st.get("fingerprint"), fp)
        if diff:
            why = "; ".join(diff)
    if why is not None:
        if dist.rank() == 0:
            log.warning("not resuming from %s: %s; training from scratch", path, why)
        return None
    return st


def _broadcast_object(obj):
    if not dist.is_dist():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _knn_loaders(df, train_df, params, workers):
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


def _progress(tty: bool, total: int, start: int, epoch: int, epochs: int):
    if not tty:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc=f"epoch {epoch + 1}/{epochs}",
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
