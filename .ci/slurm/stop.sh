#!/usr/bin/env bash
# Stop the daemons .ci/slurm/setup.sh started, by the PIDs it recorded
# (never by name: other Slurm/munge instances on the machine are left alone).
set -euo pipefail

STATE=${OACL_SLURM_STATE:-/var/spool/oacl-slurm}
PIDS="$STATE/pids"
[ -f "$PIDS" ] || { echo "[slurm-stop] nothing recorded in $PIDS"; exit 0; }

# slurmd first (it talks to slurmctld), munged last (both use it)
for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$PIDS" | tail -1)
    [ -n "$pid" ] || continue
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
        echo "[slurm-stop] stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        if [ -d "/proc/$pid" ]; then
            echo "[slurm-stop] $name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" || true
        fi
    fi
done
rm -f "$PIDS"
