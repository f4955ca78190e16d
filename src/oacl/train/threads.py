"""The CPU thread count of a training process, re-chosen while it runs.

Another process that holds one core (a browser, another job on a node without core
binding) slows a training process that uses every core by far more than its share: its
OpenMP team waits at each barrier for the thread that lost its core. The short spin of
oacl.ompenv keeps that from collapsing (0.016 -> ~0.37 of the quiet speed on 2 cores),
and one thread fewer avoids the wait altogether. Which count is faster depends on the
load, which changes while a run goes on, so every ``every`` steps the tuner times a
short window of steps with the other count and one with the current count, and keeps
the other only when it is clearly faster (docs/architecture.md, "OpenMP wait policy",
has the measurement): ``gain`` (1.6) for one thread fewer, ``gain_up`` (1.15) for going
back. The two differ because the true ratios do: alone on 2 cores one thread is ~1.35x
slower, beside a busy core ~2x faster. Known miss: quiet benchmark runs still end on one
thread (1.25 both ways: 3 of 3 rounds, 0.81 of the quiet speed; 1.6 / 1.15: 2 of 2, 0.85);
the cause is not found.

The schedule follows the global step, so a resumed run repeats it. Thread counts change
the order of floating-point sums (weight gradients differ in the last bits), so a run
that switched is not bitwise equal to one that did not. Setting the pretrain parameter
``threads`` turns the tuner off.
"""

from __future__ import annotations

import logging
import statistics

import torch

log = logging.getLogger(__name__)


class ThreadTuner:
    """Call ``before(step)`` before each optimiser step and ``after(step, seconds)`` after.

    ``step`` is the global step about to run (0-based). Steps ``k * every + [0, window)``
    run with the other count (``n - 1`` while running ``n``, and back), steps
    ``k * every + [window, 2 * window)`` with the current one; the median times of the
    two windows decide. The first period starts at ``every``: the first steps are warm-up.
    """

    def __init__(
        self, n: int, every: int = 100, window: int = 4, gain: float = 1.6, gain_up: float = 1.15
    ):
        if n < 2 or window < 2 or every < 2 * window:
            raise ValueError("ThreadTuner: need n >= 2, window >= 2, every >= 2 * window")
        self.n, self.every, self.window = n, every, window
        self.gain, self.gain_up = gain, gain_up
        self.current = n
        self.switches = 0
        self._times: dict[str, list[float]] = {"other": [], "current": []}

    def _phase(self, step: int) -> str | None:
        if step < self.every:
            return None
        p = step % self.every
        if p < self.window:
            return "other"
        if p < 2 * self.window:
            return "current"
        return None

    def _other(self) -> int:
        return self.n - 1 if self.current == self.n else self.n

    def before(self, step: int) -> None:
        phase = self._phase(step)
        want = self._other() if phase == "other" else self.current
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def after(self, step: int, seconds: float) -> None:
        phase = self._phase(step)
        if phase is None:
            return
        if step % self.every == 0:  # a new period (a resumed run may start mid-window)
            self._times = {"other": [], "current": []}
        self._times[phase].append(seconds)
        if step % self.every != 2 * self.window - 1 or not self._times["other"]:
            return
        other = statistics.median(self._times["other"])
        cur = statistics.median(self._times["current"])
        gain = self.gain if self._other() < self.current else self.gain_up
        if other * gain < cur:
            log.info(
                "threads %d -> %d at step %d: %.3f s/step against %.3f (another process "
                "holds a core, or it left)",
                self.current,
                self._other(),
                step + 1,
                other,
                cur,
            )
            self.current = self._other()
            self.switches += 1
            torch.set_num_threads(self.current)


def build(params: dict, dev: torch.device, world: int) -> ThreadTuner | None:
    """The tuner of a CPU run whose thread count the user left to oacl; None otherwise."""
    if dev.type != "cpu" or params["threads"] or world > 1:
        return None
    n = torch.get_num_threads()
    return ThreadTuner(n) if n >= 2 else None
