"""The resumable state of a training run (oacl.train.loop): ``train_state.pt`` and the
fingerprint that decides whether a re-run may resume from it.

``train_state.pt`` beside ``model.pt`` holds the method (encoders, heads, queue, BN
stats), the optimiser, the step counters, every RNG state (torch, CUDA, numpy, python,
the augmentation generator of every rank, as tensors) and the epoch metrics (``save_state``);
it is read with weights_only=True (``read_state``), so a planted file runs no code. The
fingerprint (``oacl.fingerprint``) covers everything that shapes the result: the
parameters but ``NOT_HASHED``, the process count, the bytes of the manifest, of every
train/val image (and GT mask) it references and of the box / mask shards, and the
src/oacl code this stage runs (``CODE``). ``resume`` loads the state only when a fresh
fingerprint is equal; otherwise it logs what changed and the run trains from scratch.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from .. import codedeps
from .. import fingerprint as fpr
from ..io import UnreadableFile, torch_load, torch_save
from . import dist

log = logging.getLogger(__name__)

STATE_FORMAT = "oacl-train-state-v3"  # v3: RNG states as tensors (loads with weights_only=True)

# keys that do not change the trained weights (excluded from the resume fingerprint)
NOT_HASHED = (
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


def resume_fingerprint(params: dict, world: int, manifest_path, df, train_df, boxes, masks) -> dict:
    """Fingerprint of a training run: parameters, process count, input bytes, code."""
    shaping = {k: v for k, v in params.items() if k not in NOT_HASHED}
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


def rng_state(gen: torch.Generator) -> dict:
    """Every generator's state as tensors and plain values (numpy's and python's tuples
    hold a class name and arrays), so train_state.pt loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "mt": torch.tensor(mt, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "augment": gen.get_state(),
    }


def set_rng_state(s: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    py = s["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss_next"]))
    gen.set_state(s["augment"])


def gather_objects(obj) -> list:
    if not dist.is_dist():
        return [obj]
    out = [None] * dist.world()
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not dist.is_dist():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def resume(run, state_path: Path, boxes, masks) -> None:
    """Fingerprint the run (rank 0 reads the inputs) and load ``train_state.pt`` if it
    matches (``run``: oacl.train.setup.Run)."""
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
    run.fp = broadcast_object(fp)
    run.history = []
    st = load_state(state_path, run.fp) if state_path.exists() else None
    if st is not None:
        run.method.load_state_dict(st["method"])
        run.opt.load_state_dict(st["optimizer"])
        set_rng_state(st["rng"][run.rank], run.gen)
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


def save_state(run, state_path, epoch, batch) -> None:
    """``train_state.pt`` (rank 0) with every rank's generators, to resume at (epoch, batch)."""
    rng = gather_objects(rng_state(run.gen))  # every rank's generators
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


def read_state(path) -> dict:
    """``train_state.pt`` as tensors and plain containers (weights_only=True: a tampered
    or foreign file runs no code); ValueError naming the file when it is not one."""
    return torch_load(path, "oacl training state")


def load_state(path: Path, fp: dict) -> dict | None:
    """The saved state when it was written by this exact run (same fingerprint), else None.

    Anything else starts from scratch, and the log says why: a state that resumed
    after its inputs or code changed would return a model of the old ones.
    """
    why = None
    try:
        st = read_state(path)
    except UnreadableFile as exc:
        st, why = None, f"it cannot be read ({exc.reason})"
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
