"""`oacl cam`: ContraCAM (or classifier CAM) soft masks for one shard of a manifest.

Argument parsing, and the parameters merged and checked (oacl.cam.params); the stage
(batching, the mask shard) is oacl.cam.run.
"""

from __future__ import annotations

from . import params, run


def _cmd(args) -> int:
    run.run_cam(
        params.resolve(args.cfg, device=args.device),
        args.checkpoint,
        args.manifest,
        args.shard,
        args.n_shards,
        args.out,
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cam", help="ContraCAM soft masks for one shard of a manifest", description=run.__doc__
    )
    p.add_argument(
        "--cfg", default="{}", help="JSON of the cam section (keys: oacl.cam.params.DEFAULTS)"
    )
    p.add_argument("--checkpoint", required=True, help="model.pt (oacl.models format)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--n-shards", type=int, default=1)
    p.add_argument(
        "--device", choices=params.CHOICES["device"], default=None, help="overrides cfg device"
    )
    p.add_argument("--out", required=True, help="mask shard (.parquet), written atomically")
    p.set_defaults(func=_cmd)
