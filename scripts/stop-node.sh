#!/usr/bin/env bash
# Stop a node started by scripts/start-node.sh DIR and remove what it made on the machine: its
# processes (kubelet, scheduler, controller-manager, every container and shim, containerd, the
# registry), the mounts under DIR/node, the bridge and the pods' veths, the directories it created
# outside DIR (recorded at start), then DIR/node itself (with the pod logs: containerd and the kubelet
# see DIR/node/log as /var/log in a mount namespace of their own). Idempotent; called by
# scripts/stop-cluster.sh before the API server stops.
#
# Usage: scripts/stop-node.sh DIR
set -uo pipefail

log() { printf 'stop-node: %s\n' "$*" >&2; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1/node" ] || exit 0
NODE="$(cd "$1/node" && pwd)"
CTRD="$NODE/containerd"
SOCK="$CTRD/containerd.sock"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# stop_one NAME PIDFILE COMM: SIGTERM, 10 s, SIGKILL; only a pid that still runs COMM.
stop_one() {
  local name="$1" pidfile="$2" comm="$3" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  pid_alive "$pid" || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$comm" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do pid_alive "$pid" || return 0; sleep 0.1; done
  log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 50); do pid_alive "$pid" || return 0; sleep 0.1; done
}

# The containers' ids, before anything is removed.
container_ids=()
if [ -S "$SOCK" ]; then
  while read -r id; do [ -n "$id" ] && container_ids+=("$id"); done < <(
    ctr --address "$SOCK" -n k8s.io containers ls -q 2>/dev/null)
fi

stop_one kube-controller-manager "$NODE/controller-manager.pid" kube-controller
stop_one kube-scheduler "$NODE/scheduler.pid" kube-scheduler
stop_one kubelet "$NODE/kubelet.pid" kubelet

# Every container: kill its processes, delete the task and the container (the shim exits with them).
if [ -S "$SOCK" ]; then
  for id in "${container_ids[@]}"; do
    ctr --address "$SOCK" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in "${container_ids[@]}"; do
    for _ in $(seq 20); do
      ctr --address "$SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 && break
      ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null | grep -qx "$id" || break
      sleep 0.1
    done
    ctr --address "$SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
  done
fi
# Shims still running for this containerd (started with its address), and anything left in them.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null); do
  kill -9 "$pid" 2>/dev/null || true
done
stop_one containerd "$NODE/containerd.pid" containerd
stop_one docker-registry "$NODE/registry.pid" docker-registry

# Mounts under the node's directory (overlay rootfs, netns, shm, the kubelet's volumes), deepest first.
for _ in 1 2 3; do
  mapfile -t mounts < <(awk -v p="$NODE/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  [ "${#mounts[@]}" -eq 0 ] && break
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done

# The bridge and any veth still attached to it.
if [ -s "$NODE/net.env" ]; then
  # shellcheck disable=SC1091
  source "$NODE/net.env"
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$veth" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
fi

# Directories this node created outside its own (recorded at start), when nothing else uses them.
if [ -s "$NODE/created-dirs" ]; then
  while read -r d; do
    [ -n "$d" ] && [ -d "$d" ] || continue
    find "$d" -depth -type d -empty -delete 2>/dev/null || true
  done <"$NODE/created-dirs"
fi

# cgroups are removed with rmdir, deepest first, once no process is left in them.
if [ -s "$NODE/created-cgroups" ]; then
  while read -r d; do
    [ -n "$d" ] && [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done <"$NODE/created-cgroups"
fi

rm -rf "$NODE" 2>/dev/null || { sleep 1; rm -rf "$NODE" || log "could not remove $NODE"; }
log "stopped the node and removed $NODE"
