#!/usr/bin/env bash
# CI: start a single-node Slurm, run the smoke pipeline through it, stop Slurm.
# Called by .ci/run (as root on a Debian runner without systemd).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

t0=$(date +%s)
bash "$HERE/setup.sh"
echo "[slurm-ci] Slurm up in $(( $(date +%s) - t0 ))s"
trap 'bash "$HERE/stop.sh"' EXIT

# the profile/plugin tests that submit real jobs, then the smoke pipeline
"$REPO/.venv/bin/python" -m pytest -m slurm -q "$REPO/tests/test_slurm_profile.py" \
    -k "not smoke_pipeline"
bash "$HERE/smoke.sh" "$REPO"
# walltime chunks: the smoke model trained in one-step Slurm jobs equals an unchunked run
bash "$HERE/chunks.sh" "$REPO"
