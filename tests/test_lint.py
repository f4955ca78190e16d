"""The tree is lint-clean and formatted: `ruff check`, `ruff format --check` (settings in
pyproject.toml), `snakefmt --check` on the Snakefile and the rules and `snakemake --lint`, so CI, which runs
the default suite, fails on a violation."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKE_FILES = [
    "Snakefile",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk")),
]


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "--output-format", "concise", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", *SNAKE_FILES],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_clean(cmd):
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_snakemake_lint_is_clean():
    """Snakemake's own linter (it reads rule and function definitions by regex, comments
    and docstrings included) finds nothing in the workflow."""
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-3000:]
