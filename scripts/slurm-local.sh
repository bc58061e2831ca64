#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for trying and testing `hydra/launcher=slurm`.
#
#   scripts/slurm-local.sh up       # install (if missing) and start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   scripts/slurm-local.sh status   # which daemons run, sinfo; exit 0 only when the cluster is usable
#   scripts/slurm-local.sh down     # stop the daemons this script started (by pid file), nothing else
#   scripts/slurm-local.sh env      # prints `export SLURM_CONF=...` (eval "$(scripts/slurm-local.sh env)")
#
# Runs as root on Debian. No systemd, no cgroups: proctrack/linuxproc, task/none. Everything it writes (config,
# munge key, MariaDB data, SLURM state, logs, pid files, sockets) lives under one folder, $FEATVIS_SLURM_DIR
# (default /tmp/featvis-slurm); the system's /etc/slurm, /etc/munge and MariaDB are neither read nor touched.
# MariaDB listens on a unix socket only (skip-networking); the SLURM daemons talk over 127.0.0.1 on ports
# 16817-16819, not SLURM's defaults, so they never meet a system SLURM. Clients find this cluster through SLURM_CONF
# (see `env`).
# `up` is idempotent (starts only what is not running) and waits until the node is idle and sacct answers
# ($FEATVIS_SLURM_TIMEOUT seconds, default 90). `down` cancels this cluster's jobs, then stops its daemons;
# `down --purge` also deletes the folder.
set -euo pipefail

ROOT="${FEATVIS_SLURM_DIR:-/tmp/featvis-slurm}"
TIMEOUT="${FEATVIS_SLURM_TIMEOUT:-90}"
CLUSTER=featvis
PARTITION=debug
NODE=localhost
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

ETC="$ROOT/etc"
RUN="$ROOT/run"
LOG="$ROOT/log"
DBDATA="$ROOT/mysql"
export SLURM_CONF="$ETC/slurm.conf"
export MYSQL_UNIX_PORT="$RUN/mysqld.sock"  # libmariadb's default socket: slurmdbd connects to our MariaDB only

# daemon name -> pid file (the process name in /proc/PID/comm must match too, so a reused pid is never killed)
declare -A PIDFILE=(
  [munged]="$RUN/munged.pid"
  [mariadbd]="$RUN/mysqld.pid"
  [slurmdbd]="$RUN/slurmdbd.pid"
  [slurmctld]="$RUN/slurmctld.pid"
  [slurmd]="$RUN/slurmd.pid"
)
START_ORDER=(munged mariadbd slurmdbd slurmctld slurmd)
STOP_ORDER=(slurmd slurmctld slurmdbd mariadbd munged)

say() { printf 'slurm-local: %s\n' "$*"; }
die() {
  printf 'slurm-local: error: %s\n' "$*" >&2
  exit 1
}

# whether process $2 is alive (not a zombie) and named $1
alive_as() {
  local stat
  [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ] || return 1
  stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

# pid of a daemon we started, if it is alive; empty otherwise
daemon_pid() {
  local name="$1" file="${PIDFILE[$1]}" pid
  [ -s "$file" ] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  if [ -n "$pid" ] && alive_as "$name" "$pid"; then echo "$pid"; fi
  return 0
}

running() { [ -n "$(daemon_pid "$1")" ]; }

# wait up to $2 seconds for command "${@:3}" to succeed
wait_for() {
  local what="$1" secs="$2" deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.3
  done
  say "$what ready"
}

show_log() {
  local file="$LOG/$1.log"
  [ -f "$file" ] && {
    echo "---- last lines of $file" >&2
    tail -n 15 "$file" >&2
  }
  return 0
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} (apt-get)"
  # keep the packages' own services from starting (this script runs its own daemons)
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  } >"$ROOT/apt.log" 2>&1 || rc=$?
  [ -n "$made_policy" ] && rm -f "$policy"
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$ROOT/apt.log" >&2
    die "apt-get install ${missing[*]} failed (full log: $ROOT/apt.log)"
  fi
}

write_if_changed() {  # write stdin to $1 (mode $2) unless it already holds exactly that
  local file="$1" mode="$2" tmp
  tmp="$(mktemp "$file.XXXXXX")"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$file"
  fi
}

write_config() {
  local hw cpus mem host
  hw="$(slurmd -C 2>/dev/null | head -n 1)" || true
  cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
  mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not read CPUs and RealMemory from 'slurmd -C' (got: $hw)"
  host="$(hostname -s)"
  write_if_changed "$ETC/slurm.conf" 644 <<EOF
# written by scripts/slurm-local.sh: a one-node cluster, no systemd, no cgroups
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$RUN/munge.socket
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for accounting_storage/slurmdbd this names the munge socket the clients (sacct, sacctmgr, slurmctld) use
AccountingStoragePass=$RUN/munge.socket
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF
# written by scripts/slurm-local.sh: accounting in our own MariaDB (unix socket $MYSQL_UNIX_PORT)
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=${PIDFILE[slurmdbd]}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=featvis_slurm_acct_db
EOF
}

start_munged() {
  if [ ! -s "$ETC/munge.key" ]; then
    (umask 077 && dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none)
  fi
  chmod 600 "$ETC/munge.key"
  rm -f "$RUN/munge.socket" "$RUN/munge.socket.lock"
  munged --key-file="$ETC/munge.key" --socket="$RUN/munge.socket" --pid-file="${PIDFILE[munged]}" \
    --log-file="$LOG/munged.log" --seed-file="$ROOT/munged.seed" </dev/null >>"$LOG/munged.log" 2>&1 ||
    { show_log munged; die "munged did not start"; }
  wait_for munged 15 test -S "$RUN/munge.socket" || { show_log munged; die "munged socket did not appear"; }
}

start_mariadbd() {
  if [ ! -d "$DBDATA/mysql" ]; then
    rm -rf "$DBDATA"
    mariadb-install-db --no-defaults --user=root --datadir="$DBDATA" --auth-root-authentication-method=socket \
      --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || { show_log mariadb-install; die "mariadb-install-db failed"; }
  fi
  rm -f "$MYSQL_UNIX_PORT"
  # no TCP (skip-networking); root logs in through the socket as the unix user root
  setsid mariadbd --no-defaults --user=root --datadir="$DBDATA" --socket="$MYSQL_UNIX_PORT" --skip-networking \
    --pid-file="${PIDFILE[mariadbd]}" --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M \
    --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  wait_for MariaDB 30 mariadb-admin --no-defaults --socket="$MYSQL_UNIX_PORT" -uroot ping ||
    { show_log mariadb; die "MariaDB did not answer on $MYSQL_UNIX_PORT"; }
}

start_slurmdbd() {
  slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 || { show_log slurmdbd; die "slurmdbd did not start"; }
}

register_cluster() {  # slurmctld would register itself too; doing it first makes sacct work from the start
  wait_for slurmdbd 30 sacctmgr -n -P list cluster || { show_log slurmdbd; die "slurmdbd did not answer sacctmgr"; }
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    say "cluster $CLUSTER registered in accounting"
  fi
}

start_slurmctld() {
  slurmctld -f "$SLURM_CONF" </dev/null >>"$LOG/slurmctld.log" 2>&1 || { show_log slurmctld; die "slurmctld did not start"; }
}

start_slurmd() {
  slurmd -f "$SLURM_CONF" -N "$NODE" </dev/null >>"$LOG/slurmd.log" 2>&1 || { show_log slurmd; die "slurmd did not start"; }
}

node_idle() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

usable() { node_idle && sacct -n -X -S now-1minutes >/dev/null 2>&1; }

cmd_up() {
  [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and runs the SLURM daemons as root)"
  local t0=$SECONDS
  mkdir -p "$ROOT" "$ETC" "$RUN" "$LOG" "$ROOT/state" "$ROOT/spool"
  chmod 755 "$ROOT" "$RUN"
  local all=1 name
  for name in "${START_ORDER[@]}"; do running "$name" || all=""; done
  if [ -n "$all" ] && usable; then
    say "already up ($ROOT); export SLURM_CONF=$SLURM_CONF"
    return 0
  fi
  install_packages
  write_config
  for name in "${START_ORDER[@]}"; do
    if running "$name"; then
      say "$name already running (pid $(daemon_pid "$name"))"
    else
      "start_$name"
      # daemons that fork write their pid file a moment later
      wait_for "$name pid file" 10 running "$name" || { show_log "$name"; die "$name is not running"; }
    fi
    if [ "$name" = slurmdbd ]; then register_cluster; fi
  done
  # a node someone drained or SLURM set down (not only at start) is given back
  if sinfo -h -n "$NODE" -o '%T' 2>/dev/null | grep -Eq '^(drain|drained|draining|down)'; then
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
  fi
  if ! wait_for "node $NODE idle, sacct" "$TIMEOUT" usable; then
    sinfo -N -l >&2 || true
    sacct -n -X -S now-1minutes >&2 || true
    show_log slurmctld
    show_log slurmd
    die "cluster not usable after ${TIMEOUT}s (node not idle or sacct failing); logs in $LOG"
  fi
  say "up in $((SECONDS - t0))s: partition $PARTITION, $(sinfo -h -o '%c CPUs, %m MB' -n "$NODE")"
  say "export SLURM_CONF=$SLURM_CONF"
}

cmd_down() {
  local purge="${1:-}" name pid n
  if [ -f "$SLURM_CONF" ] && running slurmctld && command -v scancel >/dev/null; then
    # this cluster's jobs first, so that no slurmstepd or job process outlives it
    local jobs
    jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs >/dev/null 2>&1 || true
      say "cancelled jobs $jobs"
    fi
    for n in $(seq 1 20); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for name in "${STOP_ORDER[@]}"; do
    pid="$(daemon_pid "$name")"
    if [ -z "$pid" ]; then
      rm -f "${PIDFILE[$name]}"
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for n in $(seq 1 100); do
      alive_as "$name" "$pid" || break
      sleep 0.1
    done
    if alive_as "$name" "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      say "$name (pid $pid) killed"
    else
      say "$name (pid $pid) stopped"
    fi
    rm -f "${PIDFILE[$name]}"
  done
  # slurmctld's state stays (its queue is empty now), so job ids go on where they were, as in accounting
  if [ "$purge" = "--purge" ]; then
    rm -rf "$ROOT"
    say "purged $ROOT"
  fi
  say "down"
}

cmd_status() {
  local name pid rc=0
  for name in "${START_ORDER[@]}"; do
    pid="$(daemon_pid "$name")"
    if [ -n "$pid" ]; then
      printf '  %-10s running (pid %s)\n' "$name" "$pid"
    else
      printf '  %-10s not running\n' "$name"
      rc=3
    fi
  done
  if [ "$rc" -eq 0 ] && usable; then
    sinfo -h -N -o '  %N %P %T %c CPUs %m MB' 2>/dev/null || true
    say "up ($ROOT); export SLURM_CONF=$SLURM_CONF"
  else
    say "not up (scripts/slurm-local.sh up)"
    rc=3
  fi
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *)
    echo "usage: $0 up|down [--purge]|status|env   (folder: \$FEATVIS_SLURM_DIR, default /tmp/featvis-slurm)" >&2
    exit 2
    ;;
esac
