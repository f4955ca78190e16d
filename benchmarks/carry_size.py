"""What a GPU call carries: the working tree (tracked and untracked, not ignored) plus
``.whl/`` must stay under the device's 64 MiB; fails (exit 1) above it or when anything
was installed inside ``.whl/`` (gpu_check installs into its work folder, docs/gpu.md).

    .venv/bin/python benchmarks/carry_size.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20


def main() -> int:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    tree = sum((REPO / n).stat().st_size for n in names if n and (REPO / n).is_file())
    whl = REPO / ".whl"
    carry = sum(p.stat().st_size for p in whl.rglob("*") if p.is_file()) if whl.is_dir() else 0
    sites = sorted(p.name for p in whl.glob("site-*")) if whl.is_dir() else []
    print(f"carry: tree {tree / 2**20:.1f} MiB + .whl {carry / 2**20:.1f} MiB "
          f"= {(tree + carry) / 2**20:.1f} MiB of {LIMIT / 2**20:.0f}")  # fmt: skip
    if sites:
        print(f"carry: installed inside .whl/: {sites}", file=sys.stderr)
    return 1 if tree + carry > LIMIT or sites else 0


if __name__ == "__main__":
    sys.exit(main())
