"""`oacl refine` (CRF, boxes, background rectangle per mask shard) and `oacl inspect`."""

from __future__ import annotations

import argparse

from ..cliargs import add_list_option


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "refine",
        help="CRF-refine ContraCAM masks; extract boxes and background rectangles",
        description="Refine one mask shard into one box shard (see oacl.refine.shard).",
    )
    p.add_argument("--cfg", default="{}", help="JSON of refine parameters (over DEFAULTS)")
    p.add_argument("--manifest", required=True, help="manifest.parquet")
    p.add_argument("--masks", required=True, help="mask shard (masks_i.parquet)")
    p.add_argument("--out", required=True, help="box shard to write (boxes_i.parquet)")
    p.add_argument(
        "--n-shards",
        type=int,
        default=0,
        help="shards of the CAM run: boxes_j.parquet beside --out with j >= this are removed",
    )
    p.set_defaults(func=_refine)

    q = subparsers.add_parser(
        "inspect",
        help="draw an image with its soft mask, boxes and background rectangle",
        description=(
            "Render image + boxes | heat map | CRF mask + background rectangle. SOURCE is a "
            "mask or box shard, or a results/ folder (shards found by --image-id)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    q.add_argument("source", nargs="?", default=None, help="shard file or results directory")
    q.add_argument("--image-id", default=None, help="image to draw (one PNG)")
    q.add_argument(
        "--gallery", type=int, default=0, metavar="N", help="write an HTML page of N overlays"
    )
    q.add_argument("--out", required=True, help="overlay .png, or .html with --gallery")
    q.add_argument("--manifest", default=None, help="manifest.parquet (else derived from SOURCE)")
    add_list_option(q, "--masks", "mask shard(s) (else derived)")
    add_list_option(q, "--boxes", "box shard(s) (else derived)")
    q.add_argument("--dataset", default=None, help="restrict a results/ search to this dataset")
    q.add_argument("--model", default=None, help="restrict a results/ search to this model")
    q.add_argument("--cam", default=None, help="restrict a results/ search to this CAM config")
    q.add_argument("--size", type=int, default=256, help="panel size (shorter side, px)")
    q.set_defaults(func=_inspect)


def _refine(args) -> int:
    from ..params import merge_params
    from .params import DEFAULTS
    from .shard import refine_shard

    params = merge_params(DEFAULTS, args.cfg, "refine --cfg")
    refine_shard(params, args.manifest, args.masks, args.out, n_shards=args.n_shards)
    return 0


def _inspect(args) -> int:
    from .inspect import run_inspect

    return run_inspect(args)
