"""Progress of a long loop: a tqdm bar on a terminal; in a log file (a job's stderr is
redirected to its log) one plain line every ``PERCENT`` % or every ``SECONDS`` seconds,
whichever comes first, instead of a bar redrawn with carriage returns into one line.

``progress(iterable, desc=..., unit=...)`` is used like ``tqdm``: iterate it, or call
``update(n)`` and ``close()``.
"""

from __future__ import annotations

import os
import sys
import time

PERCENT = 10  # a log line at every 10 % of the total ...
SECONDS = float(os.environ.get("OACL_PROGRESS_SECONDS", 60))  # ... or after this long


def progress(iterable=None, *, total=None, desc="", unit="it", disable=False, initial=0, **tqdm_kw):
    """A tqdm bar when stderr is a terminal, else line-based progress (LineProgress)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not disable and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, **tqdm_kw)
    return LineProgress(iterable, total, desc, unit, disable, initial)


class LineProgress:
    """tqdm's interface, writing ``desc: n/total unit (p %), elapsed, rate`` lines."""

    def __init__(self, iterable, total, desc, unit, disable=False, initial=0, stream=None):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.n, self.stream = disable, initial, stream or sys.stderr
        self.start = self.last_time = time.monotonic()
        self.last_step = self._step()
        self.printed_n = None

    def _step(self) -> int:
        return int(self.n * 100 / PERCENT // self.total) if self.total else 0

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = self._step()
        if step > self.last_step or now - self.last_time >= SECONDS:
            self._line(now)
            self.last_step, self.last_time = step, now

    def _line(self, now: float) -> None:
        if self.disable or self.printed_n == self.n:
            return
        elapsed = now - self.start
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        rate = f", {self.n / elapsed:.2f} {self.unit}/s" if elapsed > 0 else ""
        print(
            f"{self.desc}: {done} {self.unit}{pct}, {elapsed:.0f} s{rate}",
            file=self.stream,
            flush=True,
        )
        self.printed_n = self.n

    def close(self) -> None:
        if self.n:  # the final count, once
            self._line(time.monotonic())

    def set_postfix(self, *args, **kw) -> None:  # tqdm's; nothing to show in a log line
        pass
