"""`oacl pretrain`: train one model (MoCo v2, BYOL or supervised) from a manifest.

    oacl pretrain --cfg JSON --manifest M --out model.pt [--boxes SHARD [SHARD ...]]
                  [--masks SHARD [SHARD ...]] [--device auto|cpu|cuda] [--nproc N]
                  [--stop-after SECONDS]

``--boxes`` / ``--masks`` take every shard of the CAM run: several values after one flag,
or the flag repeated (the values accumulate; as for every list option of oacl). A
training image that no shard covers is an error (oacl.train.sideinfo).

``--cfg`` is the rule's ``pretrain`` section merged with method/variant/seed (keys:
oacl.train.params.DEFAULTS; merged over them and checked there). With ``gpus`` (or
``--nproc``) > 1 the command re-launches itself under torchrun, one process per GPU
(gloo processes with ``--device cpu``).

``--stop-after`` makes the job fit a walltime: training stops cleanly at the next step
after that many seconds, saves ``train_state.pt`` and exits with status 75; a re-run
(Snakemake's retry of the rule) resumes exactly there (docs/cluster.md, walltime chunks).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch

from ..cliargs import add_list_option
from ..device import NAMES as DEVICES
from . import dist, params

# exit status of a run stopped at its --stop-after deadline (EX_TEMPFAIL: try again)
CHUNK_EXIT = 75


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an encoder (moco | byol | supervised)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cfg", default="{}", help="JSON config (keys: oacl.train.params.DEFAULTS)")
    p.add_argument("--manifest", required=True, help="manifest.parquet")
    p.add_argument(
        "--out", required=True, help="model.pt to write (train_state.pt, metrics.jsonl beside it)"
    )
    add_list_option(
        p, "--boxes", "box shards, all of the CAM run (oa_crop_cam, bg_mixup_cam)", default=[]
    )
    add_list_option(p, "--masks", "mask shards, all of the CAM run (bg_mixup_cam)", default=[])
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument(
        "--nproc", type=int, default=None, help="processes for DDP (default: the config's gpus)"
    )
    p.add_argument(
        "--stop-after",
        type=float,
        default=0,
        metavar="SECONDS",
        help="a walltime chunk: this long after the start, stop at the next step (at least "
        f"one step per run), save train_state.pt and exit with status {CHUNK_EXIT}; a re-run "
        "continues (0: no limit)",
    )
    p.set_defaults(func=run)


def shard_args(boxes, masks) -> list[str]:
    """``--boxes``/``--masks`` for a command line: each flag once, with every shard."""
    argv = []
    for flag, paths in (("--boxes", boxes), ("--masks", masks)):
        if paths:
            argv += [flag, *map(str, paths)]
    return argv


def run(args) -> int:
    from .loop import ChunkEnd, pretrain

    t0 = time.time()
    deadline = t0 + args.stop_after if args.stop_after > 0 else None
    cfg = params.resolve(args.cfg)
    nproc = args.nproc if args.nproc is not None else int(cfg["gpus"])
    if nproc < 1:
        raise ValueError(f"--nproc/gpus must be >= 1, got {nproc}")
    if nproc > 1 and not dist.under_torchrun():
        use_cuda = args.device == "cuda" or (
            args.device == "auto" and (torch.cuda.is_available() or cfg["gpus"] > 1)
        )
        if use_cuda:
            dist.check_gpus(nproc)
        device = "cuda" if use_cuda else "cpu"
        argv = [
            "pretrain",
            "--cfg",
            json.dumps(cfg),
            "--manifest",
            str(args.manifest),
            "--out",
            str(args.out),
            "--device",
            device,
        ]  # no --nproc: torchrun's parser
        # would take it for an abbreviation of its --nproc-per-node; children see WORLD_SIZE
        if deadline is not None:  # the time left, for the children's own clocks
            argv += ["--stop-after", str(max(1e-3, deadline - time.time()))]
        return dist.relaunch(argv + shard_args(args.boxes, args.masks), nproc)
    try:
        pretrain(
            cfg,
            args.manifest,
            args.out,
            boxes=args.boxes,
            masks=args.masks,
            device=args.device,
            deadline=deadline,
        )
    except ChunkEnd as end:
        logging.getLogger(__name__).warning(
            "walltime chunk over after %.0f s: stopped at %s with train_state.pt saved; "
            "exit %d, a re-run continues from there",
            time.time() - t0,
            end,
            CHUNK_EXIT,
        )
        return CHUNK_EXIT
    return 0
