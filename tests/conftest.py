import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest

# OpenMP threads (torch's intra-op pool) wait for work asleep instead of spinning. The
# thread counts, and so every result, stay the same; on a machine whose cores are busy
# with other work a spinning thread takes the core from the one computing (measured
# here: a tiny 2-thread pretrain 250 s wall, 52 s CPU spinning; 28 s and 7.6 s asleep).
# Set before torch is imported; subprocesses (stage commands, Snakemake jobs) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# commands such as `oacl` resolve to this interpreter's environment even when it is not
# activated (the README runs `.venv/bin/python -m pytest`), as the workflow does
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def copy_workflow(dst: Path) -> Path:
    """A private copy of the workflow (Snakefile, rules, config, src) to run in."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, dst / name)
    for name in ("workflow", "src", "profiles", "envs"):
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, fresh: bool = False
):
    """`python -m snakemake ARGS` in ``workdir``; the workflow copy's src is first on
    PYTHONPATH. By default it runs in a child forked from this process with Snakemake
    already imported (see _forked_snakemake); ``fresh=True``, or
    OACL_TEST_FRESH_SNAKEMAKE=1 for every call, starts a new interpreter instead."""
    env = dict(os.environ)
    # the copied src must shadow the installed package for code-change tests
    env["PYTHONPATH"] = str(workdir / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if fresh or os.environ.get("OACL_TEST_FRESH_SNAKEMAKE") == "1" or not hasattr(os, "fork"):
        proc = subprocess.run(
            [*SNAKEMAKE, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    else:
        proc = _forked_snakemake(list(args), workdir, env, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


_PRELOADED = []


def _preload():
    """What every Snakemake start imports (Snakemake with its plugins, and the third-party
    modules of the Snakefile's config check, which is torch-free): about 1 s of CPU that a
    forked child need not repeat."""
    if _PRELOADED:
        return
    import snakemake.cli  # noqa: F401

    from oacl import configcheck

    configcheck.full_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    _PRELOADED.append(True)


def _forked_snakemake(args, workdir, env, timeout):
    """Snakemake's command line (snakemake.cli.main, what `python -m snakemake` runs) in a
    forked child that starts as a fresh interpreter would: working directory, environment,
    sys.path from PYTHONPATH, stdout/stderr to files, no logging handlers, and no oacl
    module loaded (the Snakefile imports the workflow copy's own). Only the third-party
    imports are inherited."""
    _preload()
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.chdir(workdir)
                os.environ.clear()
                os.environ.update(env)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                for fd, path in ((1, out_path), (2, err_path)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                sys.stdin = open(0, closefd=False)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                root = logging.getLogger()
                for handler in list(root.handlers):
                    root.removeHandler(handler)
                root.setLevel(logging.WARNING)
                for name in [m for m in sys.modules if m.split(".")[0] == "oacl"]:
                    del sys.modules[name]
                paths = [str(workdir)] + env["PYTHONPATH"].split(os.pathsep)
                sys.path[:0] = [p for p in paths if p]
                sys.argv = [SNAKEMAKE[-1], *args]
                from snakemake.cli import main

                try:
                    main(args)
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([*SNAKEMAKE, *args], timeout)
            time.sleep(0.05)
        with open(out_path) as out, open(err_path) as err:
            stdout, stderr = out.read(), err.read()
    return subprocess.CompletedProcess(
        [*SNAKEMAKE, *args], os.waitstatus_to_exitcode(status), stdout, stderr
    )


@pytest.fixture
def workflow_copy(tmp_path):
    return copy_workflow(tmp_path)
