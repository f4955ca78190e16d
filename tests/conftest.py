import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    env = dict(os.environ)
    # the copied src must shadow the installed package for code-change tests
    env["PYTHONPATH"] = str(workdir / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture
def workflow_copy(tmp_path):
    return copy_workflow(tmp_path)
