"""The OpenMP wait policy (oacl.ompenv): set when oacl starts, before torch loads, unless
the user chose one. libgomp prints the spin count it actually uses (OMP_DISPLAY_ENV), so
these tests read what OpenMP saw, not only os.environ."""

import json
import os
import re
import subprocess
import sys

import contention
import pytest
from conftest import REPO

from oacl import ompenv


def _libgomp_spincount(args, **user_env) -> str:
    """GOMP_SPINCOUNT as libgomp read it in ``python ARGS``, run with ``user_env`` only."""
    env = {k: v for k, v in os.environ.items() if k not in ompenv.USER_KEYS}
    env.update(user_env, OMP_DISPLAY_ENV="verbose", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr)
    assert m, f"libgomp printed no GOMP_SPINCOUNT (not torch's OpenMP?):\n{proc.stderr}"
    return m[1]


def test_oacl_command_starts_with_the_policy():
    # `python -m oacl.cli` loads torch while building the parser; before this issue
    # libgomp kept its default (300000) and training collapsed beside a busy core
    assert _libgomp_spincount(["-m", "oacl.cli", "--help"]) == ompenv.POLICY["GOMP_SPINCOUNT"]


def test_pretrain_gets_the_policy_too():
    # pretraining's thread tuner is opt-in (threads: auto), so pretrain needs the policy
    assert (
        _libgomp_spincount(["-m", "oacl.cli", "pretrain", "--help"])
        == ompenv.POLICY["GOMP_SPINCOUNT"]
    )


@pytest.mark.parametrize(
    "user, seen",
    [({"OMP_WAIT_POLICY": "PASSIVE"}, "0"), ({"GOMP_SPINCOUNT": "12345"}, "12345")],
)
def test_a_users_own_setting_is_kept(user, seen):
    assert _libgomp_spincount(["-c", "import oacl.cli, torch"], **user) == seen


def test_apply_sets_only_when_unset():
    env = {}
    assert ompenv.apply(env) == ompenv.POLICY and env == ompenv.POLICY
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert ompenv.apply(env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_contention_benchmark_conditions():
    """Each condition of benchmarks/contention.py starts from no wait variable at all."""
    os.environ["GOMP_SPINCOUNT"] = "7"  # a stray setting of the caller must not leak in
    try:
        default = contention.policy_env("default")
        passive = contention.policy_env("OMP_WAIT_POLICY=PASSIVE")
        ours = contention.policy_env("oacl")
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    assert default["GOMP_SPINCOUNT"] == ompenv.LIBGOMP_DEFAULT
    assert "OMP_WAIT_POLICY" not in default
    assert passive["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in passive
    # "oacl" is what every oacl command runs with, no tuner; "+tuner" adds it
    assert ours["GOMP_SPINCOUNT"] == ompenv.POLICY["GOMP_SPINCOUNT"] and not contention.tuned(
        "oacl"
    )
    spin = contention.policy_env("oacl+tuner")
    assert spin["GOMP_SPINCOUNT"] == "1000" and contention.tuned("oacl+tuner")


@pytest.mark.slow
def test_documented_contention_command_runs(tmp_path):
    """The benchmark command of docs/architecture.md, shrunk to one tiny round."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    m = re.search(r"`python (benchmarks/contention\.py[^`]*)`", doc)
    assert m, "docs/architecture.md shows no benchmarks/contention.py command"
    tiny = "--rounds 1 --workers 0 --policies default oacl --images 64 --batch 16"
    tiny += f" --steps 1 --warmup 0 --seconds 0 --json {tmp_path / 'c.json'}"
    proc = subprocess.run(
        [sys.executable, *m[1].split(), *tiny.split()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [(r["workers"], r["policy"]) for r in rows] == [(0, "default"), (0, "oacl")]
    assert rows[0]["alone_ratio"] == 1.0 and all(r["hog_img_s"] > 0 for r in rows)
