"""The `oacl` command line. Every Snakemake rule calls one sub-command.

Each stage package owns a `cli` module with ``register(subparsers)``; this file only
dispatches, so stage code stays importable and testable without the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from oacl import ompenv

# before a sub-command module loads torch: libgomp reads its wait policy only then
ompenv.apply()

# sub-command modules, each exposing register(subparsers)
COMMAND_MODULES = [
    "oacl.data.cli",  # oacl data synth|index|prepare
    "oacl.train.cli",  # oacl pretrain
    "oacl.cam.cli",  # oacl cam
    "oacl.refine.cli",  # oacl refine, oacl inspect
    "oacl.evaluate.cli",  # oacl evaluate localization|linear|shift
    "oacl.report.cli",  # oacl report
    "oacl.interop",  # oacl import-boxes, oacl export
    "oacl.configcheck",  # oacl check-config
]

# the commands the workflow's jobs run: their logs start with host and device
JOB_COMMANDS = {"data", "pretrain", "cam", "refine", "evaluate", "report"}


class UserError(Exception):
    """An error caused by input or configuration; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oacl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not built yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command in JOB_COMMANDS:  # a job's log starts with where it runs
            from .device import job_header

            uses_torch = hasattr(args, "device")
            logging.getLogger("oacl").info(
                job_header(args.command, getattr(args, "device", None), uses_torch)
            )
        rc = args.func(args)
    except (UserError, FileNotFoundError, ValueError, KeyError) as exc:
        # input/config problems: one clear line, no traceback (use -v for it)
        if args.verbose:
            raise
        msg = str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
        print(f"oacl {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
