"""The CPU thread count of a training process, re-chosen from the scheduler's own counters.

Another process that holds one core (a browser, another job on a node without core
binding) slows a training process that uses every core by far more than its share: its
OpenMP team waits at each barrier for the thread that lost its core. One thread fewer
avoids the wait. Timing a window of steps with each count could not tell the two apart
on a quiet machine (it dropped a thread alone in 5 of 5 benchmark rounds), so the tuner
reads what contention is, from Linux:

- **wait**: the time this process's threads were runnable but had no CPU
  (``/proc/self/task/*/schedstat``, second field), per thread per second. Alone on 2
  cores it measured 0.004; beside a busy core 0.36. Above ``down_wait`` (0.15): one
  thread fewer.
- **idle**: the idle time of the CPUs this process may run on (``/proc/stat``), in
  cores. On 1 thread of 2 alone it measured 0.99 cores; beside a busy core 0.00. At least
  ``up_idle`` (0.75) cores idle: one thread more.

Both are averaged over ``period`` seconds (5) of steps, so no step runs with a count
chosen to measure it. A count raised and dropped again at the next decision doubles the
idle periods needed before the next raise, so a load that comes and goes does not make
it swing every period. Where the counters cannot be read (not Linux), ``build`` gives
no tuner and the wait policy of oacl.ompenv alone guards against contention.

Thread counts change the order of floating-point sums (weight gradients differ in the
last bits), so a run that switched is not bitwise equal to one that did not: the same
pipeline run locally and through Slurm gave 22 different files in CI. The tuner therefore
runs only where the pretrain parameter ``threads`` is ``"auto"``; by default the count is
fixed and results are bitwise reproducible.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

AUTO = "auto"  # the pretrain parameter ``threads`` that asks for the tuner


def _wait_s() -> float:
    """Seconds this process's threads have spent runnable without a CPU, so far."""
    total = 0
    for path in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            pass
    return total / 1e9


def _idle_s() -> float:
    """Idle (and iowait) CPU-seconds so far of the CPUs this process may run on."""
    cpus = os.sched_getaffinity(0)
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = line.split()
                if int(v[0][3:]) in cpus:
                    total += int(v[4]) + int(v[5])
    return total / os.sysconf("SC_CLK_TCK")


def linux_counters() -> tuple[float, float]:
    """(wait seconds of this process, idle CPU-seconds of its CPUs), both cumulative."""
    return _wait_s(), _idle_s()


class ThreadTuner:
    """Call ``update()`` after each optimiser step; it changes torch's thread count."""

    def __init__(
        self,
        n: int,
        period: float = 5.0,
        down_wait: float = 0.15,
        up_idle: float = 0.75,
        counters: Callable[[], tuple[float, float]] = linux_counters,
        clock: Callable[[], float] = time.monotonic,
    ):
        if n < 2 or period <= 0:
            raise ValueError("ThreadTuner: need n >= 2 and period > 0")
        self.n, self.period = n, period
        self.down_wait, self.up_idle = down_wait, up_idle
        self.counters, self.clock = counters, clock
        self.current = n
        self.switches = 0
        self.last = {"wait": 0.0, "idle": 0.0}  # the last period's readings, for logs/tests
        self._need = 1  # idle periods in a row needed before one thread more
        self._idle_run = 0
        self._raised = False  # the last decision raised the count
        self._t0 = clock()
        self._c0 = counters()

    def _set(self, k: int, why: str) -> None:
        log.info("threads %d -> %d: %s", self.current, k, why)
        self.current = k
        self.switches += 1
        torch.set_num_threads(k)

    def update(self) -> None:
        t = self.clock()
        if t - self._t0 < self.period:
            return
        c = self.counters()
        dt = t - self._t0
        wait = (c[0] - self._c0[0]) / (dt * self.current)
        idle = (c[1] - self._c0[1]) / dt
        self._t0, self._c0 = t, c
        self.last = {"wait": wait, "idle": idle}
        raised, self._raised = self._raised, False
        if wait > self.down_wait and self.current > 1:
            if raised:  # the raise did not hold: wait twice as long before the next one
                self._need = min(2 * self._need, 32)
            self._idle_run = 0
            self._set(self.current - 1, f"threads waited {wait:.2f} of the time for a CPU")
            return
        if raised:  # the last raise held
            self._need = 1
        self._idle_run = self._idle_run + 1 if idle >= self.up_idle else 0
        if self.current < self.n and self._idle_run >= self._need:
            self._idle_run = 0
            self._raised = True
            self._set(self.current + 1, f"{idle:.2f} cores idle")


def build(params: dict, dev: torch.device, world: int) -> ThreadTuner | None:
    """The tuner of a CPU run whose ``threads`` is "auto"; None otherwise."""
    if dev.type != "cpu" or params["threads"] != AUTO or world > 1:
        return None
    n = torch.get_num_threads()
    if n < 2:
        return None
    try:
        linux_counters()
    except (OSError, AttributeError, ValueError) as e:  # no /proc, no sched_getaffinity
        log.info("no thread tuner: the scheduler's counters are not readable (%s)", e)
        return None
    return ThreadTuner(n)
