#!/usr/bin/env bash
# A real single-node SLURM cluster on this host, for the cluster integration test (tests/test_slurm.py)
# and for trying the SLURM profile by hand. Debian/Ubuntu, as root.
#
#   workflow/scripts/slurm-single-node.sh up     # install slurm-wlm + munge if missing, configure, start
#   workflow/scripts/slurm-single-node.sh down   # stop the daemons this script started (by PID)
#   workflow/scripts/slurm-single-node.sh status # sinfo
#
# The cluster: one node (this host) with all its CPUs and memory and one fake GPU as GRES
# (gpu:fake:1, a character device), partitions `cpu` (default) and `gpu`; munge authentication;
# proctrack/linuxproc and task/none (no cgroups); no accounting database, so Snakemake's executor
# reads job states from squeue (--slurm-status-command squeue, with MinJobAge=300 so finished jobs stay
# visible). The configuration is written to /etc/slurm (where slurmd and the job steps look for it);
# state, logs and PID files go to $CCGRADE_SLURM_STATE (default /tmp/ccgrade-slurm). Exit status 3 means
# "cannot run here" (not root, no apt-get, a daemon that does not start), with the reason on stderr.
set -euo pipefail
STATE="${CCGRADE_SLURM_STATE:-/tmp/ccgrade-slurm}"
CONF_DIR=/etc/slurm
NODE="$(hostname -s)"
MUNGE_PID=/run/munge/ccgrade-munged.pid   # only a munged this script started (a system one is left alone)

cannot() { echo "slurm-single-node: cannot run here: $*" >&2; exit 3; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  [[ $(id -u) == 0 ]] || cannot "slurm-wlm/munge are not installed and installing them needs root"
  command -v apt-get >/dev/null || cannot "slurm-wlm/munge are not installed and there is no apt-get"
  echo "[slurm] installing slurm-wlm and munge (apt-get)" >&2
  apt-get update -qq >/dev/null || cannot "apt-get update failed (no package registry?)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
    || cannot "apt-get install slurm-wlm munge failed"
}

MARK="# written by ccgrade workflow/scripts/slurm-single-node.sh"

write_conf() {
  local cpus mem
  if [[ -f "$CONF_DIR/slurm.conf" ]] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
    cannot "$CONF_DIR/slurm.conf exists and was not written by this script (a real cluster's node?): not replacing it"
  fi
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p "$STATE"/{ctld,d,log} "$CONF_DIR"
  # a fake GPU: any character device will do for GRES bookkeeping (jobs see CUDA_VISIBLE_DEVICES)
  [[ -c "$STATE/fakegpu0" ]] || mknod "$STATE/fakegpu0" c 1 3
  cat > "$CONF_DIR/slurm.conf" <<CONF
$MARK: a single-node test cluster
ClusterName=ccgrade-test
SlurmctldHost=$NODE
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=30
GresTypes=gpu
NodeName=$NODE CPUs=$cpus RealMemory=$mem Gres=gpu:fake:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
CONF
  cat > "$CONF_DIR/gres.conf" <<CONF
$MARK
NodeName=$NODE Name=gpu Type=fake File=$STATE/fakegpu0
CONF
}

up() {
  install
  [[ $(id -u) == 0 ]] || cannot "starting slurmctld/slurmd/munged needs root"
  if [[ -f "$STATE/slurmctld.pid" ]] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    echo "[slurm] already up (slurmctld PID $(cat "$STATE/slurmctld.pid"))" >&2
    return
  fi
  write_conf
  if ! munge -n </dev/null >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create --force >/dev/null 2>&1 \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    # the PID file in munge's own run folder: munged (run as the munge user) can write it there
    if id munge >/dev/null 2>&1; then
      su -s /bin/sh munge -c "munged --pid-file=$MUNGE_PID" 2>/dev/null || munged --force --pid-file="$MUNGE_PID"
    else
      munged --force --pid-file="$MUNGE_PID"
    fi
    munge -n </dev/null >/dev/null 2>&1 || cannot "munged did not start"
  fi
  rm -rf "${STATE:?}/ctld/"* "${STATE:?}/d/"*
  slurmctld -i || cannot "slurmctld did not start (see $STATE/log/slurmctld.log)"
  slurmd || cannot "slurmd did not start (see $STATE/log/slurmd.log)"
  for _ in $(seq 60); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "[slurm] up: $(sinfo -h -o '%P %D %c %m %G' | tr '\n' ';')" >&2
      return
    fi
    sleep 1
  done
  cannot "the node did not become idle within 60 s: $(sinfo -h -N -o '%t %E' 2>&1 | head -1)"
}

down() {
  for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$MUNGE_PID"; do
    if [[ -f "$f" ]]; then
      local pid
      pid="$(cat "$f")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  # with a slurm.conf but no controller, every scontrol call (the Snakemake SLURM plugin makes one at
  # import, to read MinJobAge) waits ~30 s: remove the configuration this script wrote
  for f in slurm.conf gres.conf; do
    if [[ -f "$CONF_DIR/$f" ]] && grep -qF "$MARK" "$CONF_DIR/$f"; then rm -f "$CONF_DIR/$f"; fi
  done
  echo "[slurm] down" >&2
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
