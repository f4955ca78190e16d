"""The thread tuner of CPU training (oacl.train.threads): it times a window of steps with
one thread fewer (or back) every `every` steps and switches only for a clear gain. Step
times are given here, so the decisions are tested without a loaded machine; the speeds
themselves are measured by benchmarks/contention.py."""

import pytest
import torch

from oacl.train import threads


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def drive(tuner, steps, seconds_at):
    """Run `steps` fake steps; each takes seconds_at(step, thread count) seconds."""
    seen = []
    for s in steps:
        tuner.before(s)
        k = torch.get_num_threads()
        seen.append(k)
        tuner.after(s, seconds_at(s, k))
    return seen


def test_quiet_machine_keeps_all_threads_and_probes_on_schedule():
    t = threads.ThreadTuner(2, every=10, window=2)
    seen = drive(t, range(40), lambda s, k: 1.0 / (1.6 if k == 2 else 1.0))
    assert t.current == 2 and t.switches == 0
    # warm-up period without probes, then steps 0-1 of each period with one thread
    assert [s for s, k in enumerate(seen) if k == 1] == [10, 11, 20, 21, 30, 31]


def test_switches_down_under_load_and_back_when_it_ends():
    t = threads.ThreadTuner(2, every=10, window=2)
    busy = range(15, 45)  # another process holds a core: two threads crawl

    def secs(s, k):
        if s in busy:
            return 1.0 if k == 1 else 2.5
        return 1.0 if k == 1 else 0.72  # alone, one thread is ~1.4x slower

    seen = drive(t, range(60), secs)
    assert seen[20:24] == [1, 1, 2, 2]  # first probe under load: 1 thread is faster
    assert seen[24:30] == [1] * 6  # switched
    assert seen[30:40] == [2, 2] + [1] * 8  # probing 2 again, still loaded: stays at 1
    assert seen[50:54] == [2, 2, 1, 1]  # the load ended: 2 threads are faster again
    assert seen[54:] == [2] * 6 and t.current == 2 and t.switches == 2


def test_small_gains_do_not_switch():
    t = threads.ThreadTuner(2, every=10, window=2)
    # 1 thread looks 1.5x faster (timing noise on a quiet machine): not enough to go down
    drive(t, range(50), lambda s, k: 1.0 if k == 1 else 1.5)
    assert t.current == 2 and t.switches == 0


def test_resume_mid_window_makes_no_decision_from_half_a_window():
    t = threads.ThreadTuner(2, every=10, window=2)
    drive(t, range(12, 14), lambda s, k: 5.0)  # resumed at step 12: no 'other' times yet
    assert t.current == 2 and t.switches == 0


def test_build_only_for_cpu_runs_that_left_threads_to_oacl():
    params = {"threads": None}
    torch.set_num_threads(2)
    assert isinstance(threads.build(params, torch.device("cpu"), 1), threads.ThreadTuner)
    assert threads.build({"threads": 2}, torch.device("cpu"), 1) is None
    assert threads.build(params, torch.device("cpu"), 2) is None  # DDP sets its own
    assert threads.build(params, torch.device("cuda"), 1) is None
    torch.set_num_threads(1)
    assert threads.build(params, torch.device("cpu"), 1) is None
