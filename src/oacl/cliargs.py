"""The one convention for list-valued command-line options of every stage.

A list option accumulates: ``--masks a b`` == ``--masks a --masks b``. (With plain
``nargs`` argparse keeps only the last occurrence, which once dropped all but the last
shard of CAM boxes from retraining.)
"""

from __future__ import annotations


def add_list_option(parser, flag: str, help: str, **kw) -> None:
    """``flag`` taking one or more values, repeated flags extending the list."""
    kw.setdefault("metavar", "SHARD")
    parser.add_argument(flag, nargs="+", action="extend", help=help, **kw)
