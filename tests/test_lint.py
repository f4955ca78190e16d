"""The tree is lint-clean and formatted: `ruff check`, `ruff format --check` (settings in
pyproject.toml) and `snakefmt --check` on the Snakefile and the rules, so CI, which runs
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
