"""The thread tuner of CPU training (oacl.train.threads): every `period` seconds it reads
how long this process's threads waited for a CPU and how idle its CPUs were, and moves the
thread count by one. The counters and the clock are given here, so the decisions are
tested without a loaded machine; the speeds themselves are measured by
benchmarks/contention.py, and the real counters' readings by the last test."""

import subprocess
import sys

import pytest
import torch

from oacl.train import threads


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class FakeMachine:
    """A clock and the two cumulative counters, advanced one `period` per step."""

    def __init__(self):
        self.t, self.wait, self.idle = 0.0, 0.0, 0.0

    def clock(self):
        return self.t

    def counters(self):
        return self.wait, self.idle

    def run(self, tuner, periods):
        """`periods`: (wait fraction per thread, idle cores) for each period in turn."""
        seen = []
        for wait, idle in periods:
            self.t += tuner.period
            self.wait += wait * tuner.period * tuner.current
            self.idle += idle * tuner.period
            tuner.update()
            seen.append(tuner.current)
        return seen


def make(n=2):
    m = FakeMachine()
    return m, threads.ThreadTuner(n, period=5.0, counters=m.counters, clock=m.clock)


QUIET_FULL = (0.004, 0.03)  # measured: 2 threads alone on 2 cores
BUSY_FULL = (0.36, 0.04)  # 2 threads beside a process holding a core
QUIET_ONE = (0.0, 0.99)  # 1 thread alone
BUSY_ONE = (0.007, 0.0)  # 1 thread beside the busy core


def test_quiet_machine_keeps_all_threads():
    m, t = make()
    assert m.run(t, [QUIET_FULL] * 20) == [2] * 20
    assert t.switches == 0 and t.last["wait"] == pytest.approx(0.004)


def test_drops_a_thread_under_load_and_takes_it_back_when_the_load_ends():
    m, t = make()
    seen = m.run(
        t, [QUIET_FULL] * 2 + [BUSY_FULL] + [BUSY_ONE] * 5 + [QUIET_ONE] + [QUIET_FULL] * 3
    )
    assert seen == [2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert t.switches == 2 and torch.get_num_threads() == 2


def test_no_decision_before_a_period_has_passed():
    m, t = make()
    m.t += 4.9
    m.wait += 100.0  # heavy waiting, but not a whole period yet
    t.update()
    assert t.current == 2 and t.switches == 0


def test_a_raise_that_does_not_hold_doubles_the_wait_before_the_next():
    m, t = make()
    # a load that leaves a core idle while the run has one thread, and makes two wait
    flapping = [BUSY_FULL] + [QUIET_ONE, BUSY_FULL] * 1
    seen = m.run(t, flapping)
    assert seen == [1, 2, 1]
    # now 2 idle periods in a row are needed, then 4
    assert m.run(t, [QUIET_ONE, QUIET_ONE, BUSY_FULL]) == [1, 2, 1]
    assert m.run(t, [QUIET_ONE] * 3) == [1, 1, 1]
    assert m.run(t, [QUIET_ONE]) == [2]
    # a raise that holds resets it: the next drop and raise take one period each
    assert m.run(t, [QUIET_FULL, BUSY_FULL, QUIET_ONE]) == [2, 1, 2]


def test_more_than_two_threads_move_one_at_a_time():
    m, t = make(4)
    assert m.run(t, [(0.3, 0.0)] * 3) == [3, 2, 1]
    assert m.run(t, [(0.3, 0.0)]) == [1]  # never below 1
    assert m.run(t, [(0.0, 2.0)] * 4) == [2, 3, 4, 4]  # never above n


def test_build_only_for_cpu_runs_that_ask_for_it():
    params = {"threads": "auto"}
    torch.set_num_threads(2)
    assert isinstance(threads.build(params, torch.device("cpu"), 1), threads.ThreadTuner)
    # the default keeps its count: a switch changes the weights' last bits
    assert threads.build({"threads": None}, torch.device("cpu"), 1) is None
    assert threads.build({"threads": 2}, torch.device("cpu"), 1) is None
    assert threads.build(params, torch.device("cpu"), 2) is None  # DDP sets its own
    assert threads.build(params, torch.device("cuda"), 1) is None
    torch.set_num_threads(1)
    assert threads.build(params, torch.device("cpu"), 1) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_wait_counter_sees_a_thread_that_has_no_cpu():
    """Real counters: a busy loop sharing its only CPU with a busy process waits ~half the time."""
    code = (
        "import os, subprocess, sys, time\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from oacl.train.threads import _wait_s\n"
        "hog = subprocess.Popen([sys.executable, '-c', 'while True: pass'])  # same CPU\n"
        "time.sleep(0.3)\n"
        "w0, end = _wait_s(), time.monotonic() + 1.0\n"
        "while time.monotonic() < end: pass\n"
        "print(_wait_s() - w0); hog.kill()\n"
    )
    src = str(threads.__file__).rsplit("/oacl/", 1)[0]
    out = subprocess.run([sys.executable, "-c", code, src], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 0.2 < float(out.stdout) < 1.0  # ~0.5 s of the 1 s loop without its CPU
