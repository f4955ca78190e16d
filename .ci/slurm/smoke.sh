#!/usr/bin/env bash
# Run the smoke pipeline through Slurm and check it against a local run.
#
#   .ci/slurm/smoke.sh [REPO]        # REPO defaults to this checkout
#
# Needs a running Slurm (.ci/slurm/setup.sh). Two copies of the repository
# (sources only) are made under $OACL_SMOKE_WORK (default: a fresh temp dir):
#   local/  snakemake --cores all --configfile workflow/configs/smoke.yaml
#   slurm/  snakemake --cores all --profile slurm --configfile ... (same config)
# and the script fails (non-zero) unless
#   1. both runs succeed,
#   2. every rule that ran in the Slurm run has a Slurm log named by its job ID
#      (.snakemake/slurm_logs/rule_<rule>/.../<jobid>.log), at least one per job,
#   3. both runs produced the same set of result files, and
#   4. the deterministic results ($COMPARE, globs under $RESULTS) are equal
#      (parquet by table content, json by value without timing keys, .pt
#      checkpoints by meta and weights, anything else byte for byte).
# Environment:
#   OACL_SMOKE_CONFIG   config file (default workflow/configs/smoke.yaml)
#   OACL_SMOKE_JOBS     Slurm jobs in flight (default 4)
#   OACL_SMOKE_COMPARE  space-separated globs under $RESULTS to compare
#   OACL_SMOKE_RESULTS  results folder (default: the config's `results`)
#   OACL_SMOKE_JSON_IGNORE  JSON key patterns not compared (default "*_s hits misses")
#   OACL_SMOKE_TARGETS  snakemake targets (default: the whole smoke DAG)
#   OACL_SMOKE_LOCAL    an existing local-run directory to reuse (skips the local run)
#   OACL_SMOKE_KEEP=1   keep the work directory
#   SNAKEMAKE           snakemake executable (default REPO/.venv/bin/snakemake)
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
CONFIG=${OACL_SMOKE_CONFIG:-workflow/configs/smoke.yaml}
JOBS=${OACL_SMOKE_JOBS:-4}
# (targets go before the options: --configfile would swallow them)
read -r -a TARGETS <<<"${OACL_SMOKE_TARGETS:-}"
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
PYTHON=$(dirname "$SNAKEMAKE")/python
# the config's results folder (smoke.yaml: results/smoke), under which COMPARE globs match
RESULTS=${OACL_SMOKE_RESULTS:-$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get("results", "results"))' "$REPO/$CONFIG")}
# Deterministic outputs (globs under $RESULTS, ** recurses): the prepared data
# (seeded generator), the trained weights (seeded, same thread count in both runs)
# and what follows from them: CAM mask shards, refined box shards, evaluations.
COMPARE=${OACL_SMOKE_COMPARE:-"data/*/manifest.parquet data/*/classes.json data/**/*.png \
models/**/model.pt cam/**/*.parquet refine/**/*.parquet eval/**/*.json"}
# JSON keys that legitimately differ between runs (timings, feature-cache counters)
JSON_IGNORE=${OACL_SMOKE_JSON_IGNORE:-"*_s hits misses"}

log() { echo "[slurm-smoke] $*"; }
die() { echo "[slurm-smoke] FAIL: $*" >&2; exit 1; }

[ -x "$SNAKEMAKE" ] || die "no snakemake at $SNAKEMAKE (set SNAKEMAKE=...)"
[ -f "$REPO/$CONFIG" ] || die "no smoke config $REPO/$CONFIG"
sinfo -h -o '%T' >/dev/null 2>&1 || die "Slurm is not answering (run .ci/slurm/setup.sh first)"

WORK=${OACL_SMOKE_WORK:-$(mktemp -d /tmp/oacl-slurm-smoke.XXXXXX)}
mkdir -p "$WORK"
[ "${OACL_SMOKE_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
log "work directory $WORK"

copy_repo() {  # copy_repo DEST: the tracked sources, no outputs, no venv
    mkdir -p "$1"
    tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=./results \
        --exclude=./.snakemake --exclude='*/__pycache__' -cf - . | tar -C "$1" -xf -
}

# --- local reference run -----------------------------------------------------
if [ -n "${OACL_SMOKE_LOCAL:-}" ]; then
    LOCAL=$OACL_SMOKE_LOCAL
    log "reusing local run in $LOCAL"
else
    LOCAL=$WORK/local
    copy_repo "$LOCAL"
    log "local run"
    t0=$(date +%s)
    (cd "$LOCAL" && "$SNAKEMAKE" "${TARGETS[@]}" --cores all --configfile "$CONFIG" >"$WORK/local.log" 2>&1) \
        || { tail -40 "$WORK/local.log"; die "local run failed (log: $WORK/local.log)"; }
    log "local run done in $(( $(date +%s) - t0 ))s"
fi

# --- Slurm run ------------------------------------------------------------------
SL=$WORK/slurm
copy_repo "$SL"
log "Slurm run (profile $SL/slurm)"
t0=$(date +%s)
# CI Slurm has no slurmdbd: status via squeue; fast first status check; keep the
# logs of successful jobs so that step 2 can see them.
(cd "$SL" && "$SNAKEMAKE" "${TARGETS[@]}" --cores all --profile slurm --configfile "$CONFIG" \
    --jobs "$JOBS" --slurm-status-command squeue \
    --slurm-init-seconds-before-status-checks 2 --slurm-keep-successful-logs \
    >"$WORK/slurm.log" 2>&1) \
    || { tail -60 "$WORK/slurm.log"; die "Slurm run failed (log: $WORK/slurm.log)"; }
log "Slurm run done in $(( $(date +%s) - t0 ))s"
# Snakemake's own report of the run (workflow description, captioned evaluations)
(cd "$SL" && "$SNAKEMAKE" "${TARGETS[@]}" --configfile "$CONFIG" --report "$WORK/snakemake_report.html" \
    >"$WORK/report.log" 2>&1) || { tail -20 "$WORK/report.log"; die "snakemake --report failed"; }
grep -q "Object-aware Contrastive Learning" "$WORK/snakemake_report.html" \
    || die "snakemake --report: no workflow description in the report"
log "snakemake --report built ($(du -k "$WORK/snakemake_report.html" | cut -f1) KiB)"

# --- checks ------------------------------------------------------------------
# a compare pattern that matches nothing fails the whole DAG's check, not a partial one
STRICT=$([ ${#TARGETS[@]} -eq 0 ] && echo 1 || echo 0)
"$PYTHON" - "$LOCAL" "$SL" "$WORK/slurm.log" "$COMPARE" "$STRICT" "$JSON_IGNORE" "$RESULTS" <<'EOF'
import fnmatch, glob, json, os, re, sys
from collections import Counter
from pathlib import Path

local, slurm, slurm_log = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
compare, strict, json_ignore = sys.argv[4].split(), sys.argv[5] == "1", sys.argv[6].split()
res_dir = sys.argv[7]
errors = []

# 2. every job of every (non-local) rule that ran has a Slurm log named <jobid>.log
text = open(slurm_log).read()
jobs = Counter(re.findall(r"^rule (\w+):$", text, flags=re.M))  # localrules print "localrule"
logs = Counter()
for p in (slurm / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"):
    if re.fullmatch(r"\d+\.log", p.name):
        logs[p.relative_to(slurm / ".snakemake" / "slurm_logs").parts[0][len("rule_"):]] += 1
if not jobs:
    errors.append("the Slurm run ran no rule through Slurm (nothing to do? empty results?)")
for rule, n in sorted(jobs.items()):
    if logs[rule] < n:
        errors.append(f"rule {rule}: {n} job(s) submitted but {logs[rule]} Slurm log(s) with a job ID")
print("[slurm-smoke] jobs per rule through Slurm:", dict(sorted(jobs.items())))

# 3. the same result files (logs and timings differ by nature)
def results(root):
    skip = ("logs/", "benchmarks/")
    return {str(p.relative_to(root / res_dir)) for p in (root / res_dir).rglob("*")
            if p.is_file() and not str(p.relative_to(root / res_dir)).startswith(skip)
            and p.name != ".gitkeep"}
lr, sr = results(local), results(slurm)
for name in sorted(lr - sr)[:20]:
    errors.append(f"only in the local run: {res_dir}/{name}")
for name in sorted(sr - lr)[:20]:
    errors.append(f"only in the Slurm run: {res_dir}/{name}")

# 4. deterministic outputs equal
def same(a, b):
    if a.suffix == ".pt":  # the zip container differs run to run; compare the content
        import torch
        x, y = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
        sx, sy = x.pop("state_dict", {}), y.pop("state_dict", {})
        return x == y and sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sx)
    if a.suffix == ".parquet":
        import pyarrow.parquet as pq
        return pq.read_table(a).equals(pq.read_table(b))
    if a.suffix == ".json":
        def strip(v):
            if isinstance(v, dict):
                return {k: strip(x) for k, x in v.items()
                        if not any(fnmatch.fnmatch(k, pat) for pat in json_ignore)}
            return [strip(x) for x in v] if isinstance(v, list) else v
        return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))
    return a.read_bytes() == b.read_bytes()

n = 0
for pattern in compare:
    matches = sorted(glob.glob(str(local / res_dir / pattern), recursive=True))
    if not matches and strict:
        errors.append(f"compare pattern {res_dir}/{pattern} matched nothing in the local run")
    for a in map(Path, matches):
        b = slurm / a.relative_to(local)
        n += 1
        if not b.exists():
            errors.append(f"missing in the Slurm run: {b.relative_to(slurm)}")
        elif not same(a, b):
            errors.append(f"differs between local and Slurm runs: {b.relative_to(slurm)}")
print(f"[slurm-smoke] compared {n} deterministic file(s)")
if n == 0:
    errors.append("no deterministic file was compared")

for e in errors:
    print("[slurm-smoke] FAIL:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
log "OK"
