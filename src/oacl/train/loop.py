"""`pretrain(params, manifest, out)`: self-supervised (or supervised) pretraining.

Trains on the manifest's ``train`` split (``variant == original`` rows) with SGD
(lr = base_lr x batch/256, momentum 0.9, weight decay 1e-4 on all parameters) and a
per-step cosine schedule from that lr down to ``min_lr x batch/256`` (the project's "cosine
to 1e-3", read as 1e-3 at batch 256 and scaled with the batch like the base lr, so the
final/initial ratio is 1/30 at any batch size). No warm-up, as in MoCo v2.

Resumable and deterministic: ``train_state.pt`` beside ``out`` holds the method
(encoders, heads, queue, BN stats), the optimiser, the step counters, every RNG state
(torch, CUDA, numpy, python, the augmentation generator of every rank) and the
epoch metrics (oacl.train.state). It is written atomically every ``ckpt_every_steps``
steps and at each epoch end; a re-run continues from it. The loader's order depends only on (seed,
epoch) and starts mid-epoch at the saved batch, so on CPU a killed-and-resumed run
ends with the same weights as an uninterrupted one. The state records a fingerprint
(``oacl.fingerprint``) of everything that shapes the result: the parameters, the bytes
of the manifest, of every train/val image (and GT mask) it references and of the box /
mask shards, and the src/oacl code this stage runs (``state.CODE``). A re-run resumes only
when a fresh fingerprint is equal; otherwise it logs what changed and trains from
scratch (the stale state is overwritten at the first checkpoint).

Outputs: ``out`` (model.pt, see oacl.models.checkpoint) and ``metrics.jsonl`` beside
it (one JSON line per epoch: loss, lr, kNN accuracy, img/s, time; the first line of a
variant with side information also holds ``side_info``, its coverage per source shard).

Side information. Before the first step, a variant that needs boxes, masks or background
rectangles checks that every training image has them (``oacl.train.sideinfo``): an
image in no shard is an error naming the shards read and what each covered, and empty
rows (the CAM yields nothing) beyond ``side_info_max_empty`` of the images are one too.

Modules: the parameters are oacl.train.params (``pretrain`` takes them resolved there:
merged over DEFAULTS and checked); what a run is built of before its first step is
oacl.train.setup; its resumable state and fingerprint are oacl.train.state; this module
is the driver and the epoch loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from ..device import resolve_device
from ..geometry import IMAGENET_MEAN, IMAGENET_STD
from ..io import write_text
from ..models import feat_dim, save_checkpoint
from . import data, dist, health, knn
from .params import DEFAULTS
from .setup import Run, lr_at, setup, start
from .state import resume, save_state

log = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"
METRICS_NAME = "metrics.jsonl"


# ------------------------------------------------------------------------ main entry


class ChunkEnd(Exception):
    """Training reached its deadline (a walltime chunk) with train_state.pt saved; a
    re-run continues from there (oacl.train.cli exits with CHUNK_EXIT)."""


def pretrain(
    params: dict,
    manifest_path,
    out_path,
    boxes=(),
    masks=(),
    device: str = "auto",
    deadline: float | None = None,
) -> dict:
    """Train and write ``out_path`` (model.pt), ``metrics.jsonl``; returns the last metrics.

    ``params``: the resolved parameters (oacl.train.params.resolve: merged over DEFAULTS
    and checked), which are not merged or checked again here. ``deadline`` (a
    ``time.time()``): past it, after at least one step, the state is saved at the next
    step boundary and ChunkEnd raised, so that a job fits its walltime."""
    if params.keys() != DEFAULTS.keys():
        raise TypeError("pretrain takes the parameters of oacl.train.params.resolve(cfg)")
    out_path = Path(out_path)
    state_path = out_path.parent / STATE_NAME
    metrics_path = out_path.parent / METRICS_NAME
    dev = torch.device(resolve_device(device, "pretrain"))
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
            deadline,
        )
    finally:
        dist.cleanup()


def _pretrain(
    params,
    manifest_path,
    out_path,
    state_path,
    metrics_path,
    boxes,
    masks,
    dev,
    rank,
    world,
    deadline=None,
) -> dict:
    """The driver: set up, resume, train epoch by epoch, finish (cf. MoCo's main_moco.py)."""
    run = setup(params, manifest_path, boxes, masks, dev, rank, world)
    resume(run, state_path, boxes, masks)
    start(run)
    run.deadline, run.chunk_first_step = deadline, run.step
    while run.epoch < params["epochs"]:
        _train_epoch(run, state_path, metrics_path)
    dist.barrier()
    return _finish(run, out_path, metrics_path)


# ------------------------------------------------------------------------ the epoch loop


def _train_step(run: Run, batch) -> tuple[float, float]:
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


def _train_epoch(run: Run, state_path, metrics_path) -> None:
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
        if _past_deadline(run):  # the state at this batch, as a periodic checkpoint
            save_state(run, state_path, epoch, i)
            raise ChunkEnd(f"epoch {epoch + 1} batch {i} (step {run.step}/{run.total_steps})")
        if t_first is None:  # workers started and the first batch decoded
            t_first = time.time()
        loss_v, lr = _train_step(run, batch)
        if run.tuner is not None:
            run.tuner.update()
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
            save_state(run, state_path, epoch, i + 1)
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
    save_state(run, state_path, run.epoch, 0)
    if run.rank == 0:
        write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in run.history))


def _past_deadline(run: Run) -> bool:
    """Whether to stop before the next step: the deadline passed and this process made
    progress (at least one step). Every rank stops at the same step (any rank's clock)."""
    if run.deadline is None or run.step == run.chunk_first_step:
        return False
    late = float(time.time() >= run.deadline)
    if dist.is_dist():
        late = dist.all_reduce_mean(late, run.dev)  # > 0 when some rank is late
    return late > 0


def _epoch_metrics(run: Run, n_seen, loss_sum, dt) -> dict:
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
    if run.tuner is not None:  # the thread count at the epoch's end, and switches so far
        rec["threads"], rec["thread_switches"] = run.tuner.current, run.tuner.switches
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


def _finish(run: Run, out_path, metrics_path) -> dict:
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
