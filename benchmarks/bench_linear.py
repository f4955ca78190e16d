"""Benchmark: the 45-value L-BFGS path on CPU, 2 threads (baseline) vs 1 thread, same process.

Features shaped like the default run (N=200 train, 60 val, 128-d, 8 classes).
    .venv/bin/python /tmp/bench_linear.py
"""

import time

from oacl import ompenv

ompenv.apply()  # before torch loads: libgomp reads its wait policy only then

import numpy as np  # noqa: E402
import torch  # noqa: E402

from oacl.evaluate import linear  # noqa: E402
from oacl.evaluate.params import DEFAULTS  # noqa: E402

rng = np.random.default_rng(0)
centers = rng.normal(size=(8, 128))


def data(n):
    y = rng.integers(0, 8, n)
    return (centers[y] + 2.0 * rng.normal(size=(n, 128))).astype(np.float32), y


Xtr, ytr = data(200)
Xva, yva = data(60)
grid = linear.reg_grid(DEFAULTS["linear"]["c_grid"])


def timed(threads_limit):
    linear.SINGLE_THREAD_BELOW = threads_limit
    torch.set_num_threads(2)
    t = time.perf_counter()
    lam, _ = linear.select_lambda(Xtr, ytr, Xva, yva, grid)
    return time.perf_counter() - t, lam


timed(0)  # warm-up (first L-BFGS call pays torch's start-up)
base, lam_b = timed(0)  # never single-threaded: torch's 2 threads
fast, lam_f = timed(1 << 22)  # the default rule: small problems single-threaded
print(
    f"2 threads {base:.2f} s, 1 thread {fast:.2f} s, speed-up x{base / fast:.1f}; same lambda: {lam_b == lam_f}"
)
