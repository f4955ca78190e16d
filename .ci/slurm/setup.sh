#!/usr/bin/env bash
# Install, configure and start a single-node Slurm (slurmctld + slurmd + munged)
# for CI, without systemd and without accounting (no slurmdbd).
#
#   sudo .ci/slurm/setup.sh          # idempotent: a second run keeps the
#                                    # running daemons if the config is unchanged
#
# The node advertises fake resources so that rules sized for a cluster can be
# scheduled on a small CI box (SlurmdParameters=config_overrides lets the
# configured CPUs/memory exceed the real ones; nothing is enforced, no cgroups):
#   OACL_SLURM_CPUS     CPUs to advertise        (default: max(nproc, 8))
#   OACL_SLURM_MEM_MB   memory to advertise, MB  (default: max(real, 32768))
#   OACL_SLURM_GPUS     fake GPUs (gres gpu)     (default: 2)
#   OACL_SLURM_TIMEOUT  seconds to wait for the node to become idle (default 60)
# Daemon PIDs are recorded in $OACL_SLURM_STATE/pids (default /var/spool/oacl-slurm);
# .ci/slurm/stop.sh stops exactly those.
set -euo pipefail

STATE=${OACL_SLURM_STATE:-/var/spool/oacl-slurm}
TIMEOUT=${OACL_SLURM_TIMEOUT:-60}
GPUS=${OACL_SLURM_GPUS:-2}
CONF_DIR=/etc/slurm
T0=$(date +%s)

log() { echo "[slurm-setup] $*"; }
die() { echo "[slurm-setup] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

# --- 1. packages -------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
log "$(slurmd -V)"

# --- 2. munge ----------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

mkdir -p "$STATE"
PIDS="$STATE/pids"
touch "$PIDS"

# pid_alive NAME: true if the PID recorded for NAME is a live process of that name
pid_of() { awk -v n="$1" '$1 == n {print $2}' "$PIDS" | tail -1; }
pid_alive() {
    local p; p=$(pid_of "$1")
    [ -n "$p" ] && [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = "$1" ]
}
record_pid() {  # record_pid NAME PID (replaces an older entry)
    { grep -v "^$1 " "$PIDS" || true; echo "$1 $2"; } > "$PIDS.tmp"
    mv "$PIDS.tmp" "$PIDS"
}

if ! pid_alive munged; then
    log "starting munged"
    # --foreground + setpriv (which execs) so that $! is the daemon itself
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
        >"$STATE/munged.out" 2>&1 &
    record_pid munged $!
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null || die "munge does not work (see $STATE/munged.out)"

# --- 3. slurm.conf / gres.conf ----------------------------------------------
NODE=$(hostname -s)
REAL_CPUS=$(nproc)
REAL_MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
CPUS=${OACL_SLURM_CPUS:-$(( REAL_CPUS > 8 ? REAL_CPUS : 8 ))}
MEM=${OACL_SLURM_MEM_MB:-$(( REAL_MEM > 32768 ? REAL_MEM : 32768 ))}

mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<EOF
# Written by .ci/slurm/setup.sh: single-node CI cluster, no accounting, no cgroups.
ClusterName=oacl-ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# advertised CPUs/memory may exceed the real ones (CI only)
SlurmdParameters=config_overrides
ReturnToService=2
# keep finished jobs visible to squeue (the status command without slurmdbd)
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
NEW_GRES=$(mktemp)
# fake GPUs: Slurm wants one device file per GPU (File=/dev/null alone counts as
# one GPU). Character devices (copies of /dev/null) make slurmd also export
# CUDA_VISIBLE_DEVICES to GPU jobs as on a real node; where mknod is not allowed
# plain files still give a schedulable gres, just without that variable.
GPU_FILES=""
for i in $(seq 0 $(( GPUS - 1 ))); do
    f="$STATE/fakegpu$i"
    if [ ! -e "$f" ]; then mknod "$f" c 1 3 2>/dev/null || touch "$f"; fi
    GPU_FILES="${GPU_FILES:+$GPU_FILES,}$f"
done
echo "NodeName=${NODE} Name=gpu File=${GPU_FILES}" >"$NEW_GRES"

CHANGED=0
cmp -s "$NEW_CONF" "$CONF_DIR/slurm.conf" || CHANGED=1
cmp -s "$NEW_GRES" "$CONF_DIR/gres.conf" || CHANGED=1
if [ "$CHANGED" = 1 ]; then
    log "writing $CONF_DIR/slurm.conf (node $NODE: CPUs=$CPUS RealMemory=$MEM gpu:$GPUS)"
    mv "$NEW_CONF" "$CONF_DIR/slurm.conf"
    mv "$NEW_GRES" "$CONF_DIR/gres.conf"
    chmod 0644 "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
else
    rm -f "$NEW_CONF" "$NEW_GRES"
fi

# --- 4. daemons --------------------------------------------------------------
stop_daemon() {  # stop_daemon NAME: stop the recorded PID and wait for it
    local p; p=$(pid_of "$1")
    if pid_alive "$1"; then
        kill "$p"
        for _ in $(seq 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
    fi
}
if [ "$CHANGED" = 1 ]; then
    stop_daemon slurmd
    stop_daemon slurmctld
fi
if ! pid_alive slurmctld; then
    log "starting slurmctld"
    # -D: stay in the foreground so $! is the daemon; -i: tolerate unreadable
    # state files left by an earlier run (jobs in them are kept when readable)
    /usr/sbin/slurmctld -D -i >"$STATE/slurmctld.out" 2>&1 &
    record_pid slurmctld $!
fi
if ! pid_alive slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd -D >"$STATE/slurmd.out" 2>&1 &
    record_pid slurmd $!
fi

# --- 5. wait until the node is idle -----------------------------------------
log "waiting up to ${TIMEOUT}s for node $NODE to become idle"
deadline=$(( $(date +%s) + TIMEOUT ))
state=""
while :; do
    state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) break ;;
        drained*|draining*|down*)
            # a node left down by an earlier run: bring it back
            scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    for d in slurmctld slurmd munged; do
        pid_alive "$d" || die "$d died; see $STATE/$d.out and /var/log/slurm/$d.log"
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer}'); \
see /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log"
    fi
    sleep 0.5
done
log "node $NODE is $state; ready in $(( $(date +%s) - T0 ))s"
sinfo -N -o '%N %T %c %m %G'
