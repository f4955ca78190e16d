"""`oacl evaluate linear|shift|localization`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..cliargs import add_list_option
from ..io import write_json
from ..params import merge_params
from .params import DEFAULTS

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a checkpoint or its masks/boxes")
    sub = p.add_subparsers(dest="evaluate_command", required=True)
    for name, helptext, func in [
        ("linear", "linear evaluation (L-BFGS logistic regression on frozen features)", _linear),
        (
            "shift",
            "linear head on original, tested on background/distribution-shift variants",
            _shift,
        ),
    ]:
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--cfg", default="{}", help="the rule's config section as JSON")
        q.add_argument("--checkpoint", required=True, help="model.pt")
        q.add_argument("--manifest", required=True, help="manifest.parquet")
        q.add_argument("--cache-dir", required=True, help="feature cache folder")
        q.add_argument("--out", required=True, help="output JSON")
        q.add_argument(
            "--device", default=None, help="auto | cpu | cuda[:i]; overrides the cfg's device"
        )
        if name == "shift":
            q.add_argument(
                "--linear-json",
                default=None,
                help="linear.json of this checkpoint: reuse its lambda if selected alike",
            )
        q.set_defaults(func=func)
    _register_localization(sub)


def _register_localization(sub) -> None:
    p = sub.add_parser(
        "localization",
        help="mask mIoU, box mIoU and MaxBoxAccV2 of ContraCAM masks vs ground truth",
        description="Object localisation quality of ContraCAM masks and boxes "
        "(paper Sec. 3.1, App. B.1; metrics: oacl.evaluate.localization).",
    )
    p.add_argument("--cfg", default="{}", help="JSON of localization parameters (over DEFAULTS)")
    p.add_argument("--manifest", required=True, help="manifest.parquet with GT masks/boxes")
    add_list_option(p, "--masks", "mask shards", required=True)
    add_list_option(p, "--boxes", "box shards (for CRF-mask and box metrics)", default=[])
    p.add_argument("--out", required=True, help="output JSON")
    p.set_defaults(func=_localization)


def _run(args, defaults: dict, compute, where: str, **kw) -> int:
    params = merge_params(defaults, args.cfg, where=where)
    if args.device:
        (params["linear"] if "linear" in params else params)["device"] = args.device
    t0 = time.perf_counter()
    result = compute(params, args.checkpoint, args.manifest, args.cache_dir, **kw)
    result["timing"]["wall_s"] = time.perf_counter() - t0
    write_json(args.out, result)
    log.info("%s: wrote %s", where, args.out)
    return 0


def _linear(args) -> int:
    from . import linear

    return _run(args, DEFAULTS["linear"], linear.run_linear, "evaluate linear --cfg")


def _shift(args) -> int:
    from . import shift

    linear_result = None
    if args.linear_json:
        try:
            linear_result = json.loads(Path(args.linear_json).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"--linear-json {args.linear_json}: cannot read it ({exc})") from exc
    return _run(
        args,
        DEFAULTS["shift"],
        shift.run_shift,
        "evaluate shift --cfg",
        linear_result=linear_result,
    )


def _localization(args) -> int:
    from .localization import evaluate_localization

    result = evaluate_localization(args.cfg, args.manifest, args.masks, args.boxes or [])
    write_json(args.out, result)
    print(result["table_md"], end="")
    return 0
