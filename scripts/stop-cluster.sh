#!/usr/bin/env bash
# Stop a cluster started by scripts/start-cluster.sh DIR and remove its data.
#
# Usage: scripts/stop-cluster.sh [--keep-logs] DIR
#   Stops a real node beside it first (scripts/stop-node.sh), then sends SIGTERM to kube-apiserver, then etcd (pids from DIR/apiserver.pid, DIR/etcd.pid; a pid is
#   only signalled if it still runs the expected program), waits up to 10 s each, then SIGKILL.
#   Then deletes DIR, or with --keep-logs everything in DIR but its *.log files.
#   Idempotent: a stopped or missing cluster is not an error. Refuses a DIR that
#   start-cluster.sh did not make.
set -euo pipefail

log() { printf 'stop-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

keep_logs=0
if [ "${1:-}" = "--keep-logs" ]; then keep_logs=1; shift; fi
[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 [--keep-logs] DIR" >&2; exit 2; }

if [ ! -d "$1" ]; then
  log "$1 does not exist; nothing to stop"
  exit 0
fi
DIR="$(cd "$1" && pwd)"
[ -e "$DIR/.hotsync-cluster" ] || die "$DIR was not made by scripts/start-cluster.sh; not touching it"

# stop NAME PIDFILE EXPECTED_COMM
stop_one() {
  local name="$1" pidfile="$2" comm="$3" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) is not running"
    return 0
  fi
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != "$comm" ]; then
    log "pid $pid is no longer $name; not signalling it"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "could not stop $name (pid $pid)"
}

# A real node beside the cluster (scripts/start-node.sh) goes first, while the API server still answers.
if [ -d "$DIR/node" ]; then
  bash "$(dirname "$0")/stop-node.sh" "$DIR" || log "stopping the node failed (see above)"
fi

stop_one kube-apiserver "$DIR/apiserver.pid" kube-apiserver
stop_one etcd "$DIR/etcd.pid" etcd

if [ "$keep_logs" -eq 1 ]; then
  find "$DIR" -mindepth 1 -maxdepth 1 ! -name '*.log' ! -name .hotsync-cluster -exec rm -rf {} +
  log "removed data in $DIR (logs kept)"
else
  rm -rf "$DIR"
  log "removed $DIR"
fi
