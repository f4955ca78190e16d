"""`oacl report`: the static HTML summary of a results folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write one static HTML page summarising results/")
    p.add_argument(
        "--cfg",
        default="{}",
        help="the pipeline config as JSON (shown in the page; its "
        "'report' section sets report options)",
    )
    p.add_argument("--results", default="results", help="results folder to summarise")
    p.add_argument(
        "--inputs",
        nargs="*",
        action="extend",  # a repeated --inputs adds to the list (as every list option)
        default=None,
        help="report exactly these files (eval JSONs, model.pt, mask/box shards; the "
        "workflow passes its DAG's); default: everything under --results",
    )
    p.add_argument("--out", required=True, help="output HTML")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .report import write_report

    try:
        cfg = json.loads(args.cfg) if args.cfg.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"report --cfg: not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValueError("report --cfg: expected a JSON object")
    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder not found: {results}")
    if args.inputs is not None:
        missing = [p for p in args.inputs if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"report: input(s) not found: {missing[:5]}")
    write_report(cfg, results, args.out, args.inputs)
    log.info("report: wrote %s", args.out)
    return 0
