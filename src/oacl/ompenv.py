"""The OpenMP wait policy of every oacl process, set where it starts, before torch loads.

libgomp (torch's intra-op pool) spins up to ~3 ms by default waiting for its peer
threads. When another process holds a core the peer is descheduled and the spinning
thread burns the core it needs: pretraining on 2 cores fell from ~500 to 11 img/s
beside one busy process. Two guards, measured by benchmarks/contention.py (see
docs/architecture.md "OpenMP wait policy"):

- ``oacl pretrain`` keeps libgomp's default spin, the fastest alone, and its CPU runs
  re-choose their thread count from the scheduler's counters (oacl.train.threads): one
  thread fewer beside a busy core has no peer to wait for.
- every other command (and pretrain under torchrun, which has no tuner) gets a short
  spin then sleep (POLICY), which does not collapse; in training it cost 6-13 % alone
  (0.87 / 0.94 of the default with 0 / 1 loader workers, 3 rounds).

libgomp reads these variables once, when it is loaded, so apply() must run before
``import torch``; child processes (DataLoader workers, torchrun, Snakemake jobs)
inherit them.
"""

from __future__ import annotations

import os

# what oacl sets when the user set none of USER_KEYS
POLICY = {"GOMP_SPINCOUNT": "1000"}
# libgomp's spin count when no variable is set (OMP_DISPLAY_ENV=verbose shows it); a user
# who wants libgomp's default back sets it
LIBGOMP_DEFAULT = "300000"
# a user who set any of these chose a policy: keep theirs untouched
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# sub-commands whose CPU runs have the thread tuner: they keep libgomp's default
TUNED = ("pretrain",)


def command(argv: list[str]) -> str | None:
    """The sub-command of ``oacl ARGV`` (its only global option, -v, takes no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def apply(environ=os.environ, cmd: str | None = None) -> dict[str, str]:
    """Set POLICY in ``environ`` unless the user set a wait policy or ``cmd`` is tuned."""
    if any(k in environ for k in USER_KEYS):
        return {}
    if cmd in TUNED and int(environ.get("WORLD_SIZE", "1")) <= 1:
        return {}
    environ.update(POLICY)
    return dict(POLICY)
