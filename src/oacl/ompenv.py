"""The OpenMP wait policy of every oacl process, set where it starts, before torch loads.

libgomp (torch's intra-op pool) spins up to ~3 ms by default waiting for its peer
threads. When another process holds a core the peer is descheduled and the spinning
thread burns the core it needs: pretraining on 2 cores fell from ~500 to 11 img/s
beside one busy process. Every command gets a short spin then sleep (POLICY), which
does not collapse: measured by benchmarks/contention.py (docs/architecture.md "OpenMP
wait policy"), training ran at 0.85-0.99 of the default's speed alone and 0.32-0.53 of
it beside a busy core (the default: 0.01-0.02). Pretraining with ``threads: auto`` adds
the thread tuner (oacl.train.threads), opt-in because a run whose thread count changes
is not bitwise reproducible.

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


def apply(environ=os.environ) -> dict[str, str]:
    """Set POLICY in ``environ`` unless the user set a wait policy."""
    if any(k in environ for k in USER_KEYS):
        return {}
    environ.update(POLICY)
    return dict(POLICY)
