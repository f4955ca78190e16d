"""`oacl pretrain`: train one model (MoCo v2, BYOL or supervised) from a manifest.

    oacl pretrain --cfg JSON --manifest M --out model.pt [--boxes SHARD [SHARD ...]]
                  [--masks SHARD [SHARD ...]] [--device auto|cpu|cuda] [--nproc N]

``--boxes`` / ``--masks`` take every shard of the CAM run: several values after one flag,
or the flag repeated (the values accumulate; as for every list option of oacl). A
training image that no shard covers is an error (oacl.train.sideinfo).

``--cfg`` is the rule's ``pretrain`` section merged with method/variant/seed (keys:
oacl.train.params.DEFAULTS; merged over them and checked there). With ``gpus`` (or
``--nproc``) > 1 the command re-launches itself under torchrun, one process per GPU
(gloo processes with ``--device cpu``).
"""

from __future__ import annotations

import argparse
import json

import torch

from ..cliargs import add_list_option
from ..device import NAMES as DEVICES
from . import dist, params


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
    p.set_defaults(func=run)


def shard_args(boxes, masks) -> list[str]:
    """``--boxes``/``--masks`` for a command line: each flag once, with every shard."""
    argv = []
    for flag, paths in (("--boxes", boxes), ("--masks", masks)):
        if paths:
            argv += [flag, *map(str, paths)]
    return argv


def run(args) -> int:
    from .loop import pretrain

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
        return dist.relaunch(argv + shard_args(args.boxes, args.masks), nproc)
    pretrain(cfg, args.manifest, args.out, boxes=args.boxes, masks=args.masks, device=args.device)
    return 0
