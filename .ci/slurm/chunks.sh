#!/usr/bin/env bash
# CI: walltime chunks through a real Slurm (docs/cluster.md, "Walltime chunks").
#
#   .ci/slurm/chunks.sh [REPO]     (Slurm up: .ci/slurm/setup.sh)
#
# One smoke model, trained twice from the same prepared data: once unchunked (local),
# once through Slurm with `resources.pretrain.chunk_s` short enough that every Slurm
# job stops after one step (train_state.pt saved, exit 75) and Snakemake resubmits it.
# Fails unless the Slurm run took at least two chunks (two or more Slurm jobs of rule
# pretrain, the last one resuming) and its model.pt equals the unchunked one tensor for
# tensor (and byte for byte: on CPU the file is reproducible).
# Environment: OACL_CHUNK_S (default 1), OACL_SMOKE_KEEP=1 keeps the work directory,
# SNAKEMAKE (default REPO/.venv/bin/snakemake).
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
PYTHON=$(dirname "$SNAKEMAKE")/python
CONFIG=workflow/configs/smoke.yaml
MODEL=results/smoke/models/scenes_multi/moco-baseline-s0/model.pt
CHUNK_S=${OACL_CHUNK_S:-1}

log() { echo "[slurm-chunks] $*"; }
die() { echo "[slurm-chunks] FAIL: $*" >&2; exit 1; }
sinfo -h -o '%T' >/dev/null 2>&1 || die "Slurm is not answering (run .ci/slurm/setup.sh first)"

WORK=$(mktemp -d /tmp/oacl-slurm-chunks.XXXXXX)
[ "${OACL_SMOKE_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=./results --exclude=./.snakemake \
    --exclude='*/__pycache__' -cf - . | tar -C "$WORK" -xf -
cd "$WORK"

log "unchunked reference (local)"
"$SNAKEMAKE" --cores all --configfile "$CONFIG" -- "$MODEL" >"$WORK/local.log" 2>&1 \
    || { tail -40 "$WORK/local.log"; die "local run failed"; }
mkdir -p "$WORK/ref" && mv "$MODEL" "$WORK/ref/model.pt"
rm -f "$(dirname "$MODEL")/train_state.pt"  # the Slurm run starts from scratch

log "chunked through Slurm (chunk_s=$CHUNK_S)"
"$SNAKEMAKE" --profile slurm --configfile "$CONFIG" --config "resources={pretrain: {chunk_s: $CHUNK_S}}" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    --slurm-keep-successful-logs -- "$MODEL" >"$WORK/slurm.log" 2>&1 \
    || { tail -60 "$WORK/slurm.log"; die "chunked Slurm run failed"; }

n=$(find .snakemake/slurm_logs/rule_pretrain -name '[0-9]*.log' | wc -l)
log "pretrain ran as $n Slurm job(s)"
[ "$n" -ge 2 ] || die "expected at least two walltime chunks (Slurm jobs), got $n"
grep -q "resuming" results/smoke/logs/pretrain/scenes_multi/moco-baseline-s0.log \
    || die "the last chunk did not resume"

"$PYTHON" - "$WORK/ref/model.pt" "$MODEL" <<'PY'
import sys
import torch
a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in sys.argv[1:])
sa, sb = a.pop("state_dict"), b.pop("state_dict")
assert sa.keys() == sb.keys(), "different tensors"
bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
assert not bad and a == b, f"chunked model differs: {bad[:5]}"
print(f"[slurm-chunks] model.pt tensor-identical ({len(sa)} tensors)")
PY
cmp -s "$WORK/ref/model.pt" "$MODEL" && log "model.pt byte-identical" || log "model.pt bytes differ (tensors equal)"
log "OK"
