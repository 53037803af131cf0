#!/usr/bin/env bash
# A single-node Slurm cluster on loopback for the cluster test tier (tests/test_slurm.py).
#
#   scripts/slurm-loopback.sh install   apt-get install Debian's slurmctld, slurmd and munge (needs root)
#   scripts/slurm-loopback.sh up        write the config, start munged, slurmctld and slurmd; wait until
#                                       the node is idle (at most SLURM_LOOPBACK_WAIT_S, default 60 s)
#   scripts/slurm-loopback.sh down      stop the three daemons
#   scripts/slurm-loopback.sh env       print the export line clients need (SLURM_CONF)
#
# Everything lives in $SLURM_LOOPBACK_DIR (default /tmp/slurm-loopback): slurm.conf, the munge key and
# socket, state, spool and logs; nothing under /etc is written. The node is "localhost" with
# $SLURM_LOOPBACK_CPUS CPUs (default 2), no accounting database (submitit's sacct calls then fail, and
# the harness follows jobs through squeue and scontrol instead), requeue allowed.
set -euo pipefail

DIR="${SLURM_LOOPBACK_DIR:-/tmp/slurm-loopback}"
CPUS="${SLURM_LOOPBACK_CPUS:-2}"
WAIT_S="${SLURM_LOOPBACK_WAIT_S:-60}"
CONF="$DIR/slurm.conf"
SOCKET="$DIR/munge/munge.socket"
export SLURM_CONF="$CONF"

die() { echo "slurm-loopback: $*" >&2; exit 1; }

write_config() {
    mkdir -p "$DIR"/{munge,state,spool,log,run}
    chmod 700 "$DIR/munge"
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
    cat >"$CONF" <<CONF
ClusterName=loopback
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=5
SchedulerParameters=sched_interval=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        || die "slurmctld, slurmd or munged not found; run: $0 install"
    write_config
    if ! pid_alive "$DIR/run/munged.pid"; then
        munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" --pid-file="$DIR/run/munged.pid" \
            --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed" \
            || die "munged did not start (see $DIR/log/munged.log)"
    fi
    pid_alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
    pid_alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" -N localhost || die "slurmd did not start (see $DIR/log/slurmd.log)"
    local deadline=$((SECONDS + WAIT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
        if [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]; then
            echo "slurm-loopback: up (node localhost, $CPUS CPUs, $state); export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 1
    done
    die "the node did not become idle within ${WAIT_S}s (state: ${state:-none}; logs in $DIR/log)"
}

stop_pid() {
    local file="$1" pid
    pid_alive "$file" || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    stop_pid "$DIR/run/slurmd.pid"
    stop_pid "$DIR/run/slurmctld.pid"
    stop_pid "$DIR/run/munged.pid"
    echo "slurm-loopback: down"
}

install() {
    command -v apt-get >/dev/null || die "apt-get not found: install slurmctld, slurmd and munge by hand"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd munge slurm-client
}

case "${1:-}" in
    install) install ;;
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 install|up|down|env" ;;
esac
