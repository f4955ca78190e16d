"""The Slurm profile (slurm/), the local workflow profile, and runs through Slurm.

Unmarked tests need only Snakemake: the profiles parse and every key is an option
the installed Snakemake + slurm plugin accept (an unknown key is an error), and the
workflow's rules declare what the plugin needs to place them. Tests marked `slurm`
need a running Slurm (.ci/slurm/setup.sh) and submit real jobs:
    .venv/bin/python -m pytest -m slurm tests/test_slurm_profile.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# what the CI Slurm (no slurmdbd) needs on top of the profile; see docs/cluster.md
CI_FLAGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
]

TINY = """
rule all:
    input: "cpu.txt", "gpu.txt", "retried.txt"

rule cpu_step:
    output: "cpu.txt"
    threads: 2
    resources: mem_mb=500, runtime=5
    shell: "echo job $SLURM_JOB_ID cpus $SLURM_CPUS_PER_TASK > {output}"

rule gpu_step:
    input: "cpu.txt"
    output: "gpu.txt"
    resources: mem_mb=1000, runtime=10, gpu=1, cpus_per_task=2
    shell: "echo job $SLURM_JOB_ID gpus $SLURM_GPUS_ON_NODE > {output}"

# fails on attempt 1, succeeds on attempt 2 with the grown memory
rule retry_step:
    output: "retried.txt"
    resources: mem_mb=lambda wc, attempt: 500 * attempt, runtime=5
    shell: "test {resources.mem_mb} -ge 1000 || exit 3; echo mem {resources.mem_mb} > {output}"

# writes part of its output, then fails: nothing may be left behind
rule broken:
    output: "broken.txt"
    resources: mem_mb=500, runtime=5
    shell: "echo partial > {output}; echo 'broken on purpose' >&2; exit 7"
"""


def run_snakemake(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(
        SNAKEMAKE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "Snakefile").write_text(TINY)
    return tmp_path


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


# ------------------------------------------------------------ profile content
def test_slurm_profile_settings():
    prof = load(PROFILE / "config.yaml")
    assert prof["executor"] == "slurm"
    assert prof["rerun-incomplete"] is True
    assert prof["retries"] >= 1, "rules grow mem_mb/runtime with attempt; needs a retry"
    assert prof["latency-wait"] >= 30
    res = prof["default-resources"]
    assert res["mem_mb"] > 0 and res["runtime"] > 0
    # site settings belong to the user's own profile, never to the repository
    assert not {"slurm_account", "slurm_partition"} & set(res)
    assert prof.get("slurm-status-command") in (None, "sacct", "squeue")


def test_profiles_are_accepted_by_the_installed_snakemake(tiny):
    # an unknown key fails with "unrecognized arguments"; -n needs no cluster
    for extra in (
        ["--profile", str(PROFILE)],
        ["--profile", str(PROFILE)] + CI_FLAGS,
        ["--workflow-profile", str(ROOT / "profiles/default")],
    ):
        out = run_snakemake(["-n"] + extra, cwd=tiny)
        assert out.returncode == 0, out.stderr[-2000:]


def test_unknown_profile_key_is_rejected(tiny):
    # guards the test above: a profile with a typo does fail
    bad = tiny / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("executor: slurm\nslurm-status-comand: squeue\n")
    out = run_snakemake(["-n", "--profile", str(bad)], cwd=tiny)
    assert out.returncode != 0 and "unrecognized arguments" in out.stderr


def test_local_profile_has_no_cluster_settings():
    prof = load(ROOT / "profiles/default/config.yaml")
    assert "executor" not in prof and "default-resources" not in prof
    # a workflow profile overrides --profile slurm key by key: keep-going must not be here
    assert "keep-going" not in prof


@pytest.mark.skipif(not (ROOT / "workflow/configs/smoke.yaml").exists(), reason="no smoke config")
def test_every_workflow_job_declares_slurm_resources():
    out = run_snakemake(
        ["-n", "--profile", "slurm", "--configfile", "workflow/configs/smoke.yaml"], cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    # one block per job: "rule NAME:" ... "resources: ..." ... "Shell command: ..."
    jobs = re.findall(
        r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)\nShell command: (.*)$", text, flags=re.M
    )
    jobs = [(rule, res) for rule, res, shell in jobs if shell != "None"]  # `all` runs locally
    assert jobs, "no job found in the dry run"
    for rule, resources in jobs:
        keys = {kv.split("=")[0] for kv in resources.split(", ")}
        assert {"mem_mb", "runtime", "cpus_per_task"} <= keys, f"{rule}: {resources}"
        # the slurm plugin reads `gpu` (and `gpu_model`); `gpus` would be ignored
        assert "gpus" not in keys, f"{rule}: use resource `gpu`, not `gpus`"


# --------------------------------------------------------- through real Slurm
def slurm_up():
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and re.search(r"idle|mixed|alloc", out.stdout) is not None


needs_slurm = pytest.mark.skipif(not slurm_up(), reason="no running Slurm (.ci/slurm/setup.sh)")


def sbatch_lines(log, rule):
    return [
        line
        for line in log.splitlines()
        if line.startswith("sbatch call:") and f"--comment rule_{rule}" in line
    ]


@pytest.mark.slurm
@needs_slurm
def test_jobs_run_through_slurm_with_gpus_cpus_and_retry(tiny):
    out = run_snakemake(["all", "--profile", str(PROFILE), "--verbose"] + CI_FLAGS, cwd=tiny)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    (gpu_call,) = sbatch_lines(log, "gpu_step")
    assert "--gpus=1" in gpu_call and "--cpus-per-task=2" in gpu_call and "--mem 1000" in gpu_call
    assert "-t 10" in gpu_call and "--requeue" in gpu_call
    (cpu_call,) = sbatch_lines(log, "cpu_step")
    assert "--gpus" not in cpu_call and "--cpus-per-task=2" in cpu_call  # from threads
    # each job ran as a Slurm job: its log is named by the job ID it printed
    for rule, output in (("cpu_step", "cpu.txt"), ("gpu_step", "gpu.txt")):
        job_id = (tiny / output).read_text().split()[1]
        assert (tiny / ".snakemake/slurm_logs" / f"rule_{rule}" / f"{job_id}.log").is_file()
    assert "gpus 1" in (tiny / "gpu.txt").read_text()
    # retry: attempt 1 (500 MB) failed, attempt 2 ran with 1000 MB
    retry_calls = sbatch_lines(log, "retry_step")
    assert [re.search(r"--mem (\d+)", c).group(1) for c in retry_calls] == ["500", "1000"]
    assert (tiny / "retried.txt").read_text().strip() == "mem 1000"


@pytest.mark.slurm
@needs_slurm
def test_failing_job_reports_and_leaves_no_output(tiny):
    out = run_snakemake(
        ["broken", "--profile", str(PROFILE), "--retries", "0"] + CI_FLAGS, cwd=tiny
    )
    log = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Error in rule broken" in log and "FAILED" in log
    assert not (tiny / "broken.txt").exists(), "partial output of a failed job was kept"
    (slurm_log,) = (tiny / ".snakemake/slurm_logs/rule_broken").glob("*.log")
    assert "broken on purpose" in slurm_log.read_text()


@pytest.mark.slurm
@needs_slurm
def test_smoke_pipeline_through_slurm_matches_local_run():
    out = subprocess.run(
        ["bash", str(ROOT / ".ci/slurm/smoke.sh"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
