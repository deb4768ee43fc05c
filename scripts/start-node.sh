#!/usr/bin/env bash
# A real Kubernetes node beside a cluster started by scripts/start-cluster.sh: Debian's containerd with
# runc and the CNI plugins, kubelet, kube-scheduler and kube-controller-manager 1.20.2 (built by
# scripts/build-kube.sh), and a local OCI registry (Debian's docker-registry) on the node's address that every
# registry host our tests and examples name resolves to. See shared/REALNODE.md. Needs root.
#
# Usage:
#   scripts/start-node.sh network DIR   claim a bridge and a pod subnet (before start-cluster.sh: the API
#                                       server listens on the bridge address, so that pods reach it)
#   scripts/start-node.sh start DIR     start the registry, containerd, kubelet, scheduler and
#                                       controller-manager against the cluster in DIR (its env file)
#   DIR is the cluster's directory; everything of the node lives in DIR/node, and
#   scripts/stop-node.sh DIR (called by stop-cluster.sh) stops it and removes what it made on the machine.
#
# Env (optional):
#   KUBE_BIN_DIR            where kubelet, kube-scheduler and kube-controller-manager are (default: the
#                           directory scripts/build-kube.sh caches them in)
#   HOTSYNC_NODE_NAME       the node's name (default hotsync-node)
#   HOTSYNC_REGISTRY_HOSTS  registry hosts, space-separated, that pull from the local registry (default:
#                           docker.io registry.example.com registry.cn-hangzhou.aliyuncs.com)
#
# Writes DIR/node/env (shell-sourceable): NODE_DIR NODE_NAME NODE_IP BRIDGE POD_SUBNET REGISTRY
# CONTAINERD_SOCK SANDBOX_IMAGE and the pids. Traffic stays on loopback and on the bridge it made:
# the node's address is the bridge's, pods talk to the host only.
set -euo pipefail

log() { printf 'start-node: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 2 ] && [ -n "$2" ] || { echo "usage: $0 network|start DIR" >&2; exit 2; }
MODE="$1"
[ "$(id -u)" -eq 0 ] || die "a real node needs root (containerd, network interfaces, mounts); run as root or use the simulated node"

KUBE_VERSION="v1.20.2"
CACHE_ROOT="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
KUBE_BIN_DIR="${KUBE_BIN_DIR:-$CACHE_ROOT/kubernetes-$KUBE_VERSION}"
NODE_NAME="${HOTSYNC_NODE_NAME:-hotsync-node}"
REGISTRY_HOSTS="${HOTSYNC_REGISTRY_HOSTS:-docker.io registry.example.com registry.cn-hangzhou.aliyuncs.com}"
SANDBOX_IMAGE="docker.io/hotsync/pause:3.2"
CNI_BIN_DIR="/usr/lib/cni"

mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
NODE="$DIR/node"
mkdir -p "$NODE"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ---- network: a bridge of our own, its address the node's ---------------------------------------
if [ "$MODE" = network ]; then
  command -v ip >/dev/null 2>&1 || die "'ip' not found (iproute2); run scripts/install-deps.sh"
  [ ! -s "$NODE/net.env" ] || die "$NODE/net.env exists: a node network is already claimed there"
  # Claim the first free index: `ip link add` is atomic, so two test beds never share a bridge.
  for i in $(seq 0 63); do
    bridge="hsbr$i"
    subnet="10.213.$i"
    ip -4 addr show 2>/dev/null | grep -q " $subnet\." && continue
    [ -z "$(ip -4 route show "$subnet.0/24" 2>/dev/null)" ] || continue
    ip link add "$bridge" type bridge 2>/dev/null || continue
    ip addr add "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    {
      echo "# Written by scripts/start-node.sh network; source it."
      printf 'export BRIDGE=%q\nexport NODE_IP=%q\nexport POD_SUBNET=%q\n' "$bridge" "$subnet.1" "$subnet.0/24"
    } >"$NODE/net.env"
    log "claimed $bridge with $subnet.1/24"
    exit 0
  done
  die "no free bridge index (hsbr0..hsbr63 taken or their subnets 10.213.N.0/24 in use)"
fi

[ "$MODE" = start ] || die "unknown mode '$MODE' (network or start)"
[ -s "$DIR/env" ] || die "$DIR/env not found: start the cluster first (scripts/start-cluster.sh $DIR)"
[ -s "$NODE/net.env" ] || die "$NODE/net.env not found: run scripts/start-node.sh network $DIR first"
# shellcheck disable=SC1091
source "$DIR/env"
# shellcheck disable=SC1091
source "$NODE/net.env"

missing=()
for cmd in containerd containerd-shim-runc-v2 runc ctr docker-registry ip mount umount; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
for p in bridge host-local loopback portmap; do
  [ -x "$CNI_BIN_DIR/$p" ] || missing+=("CNI plugin $CNI_BIN_DIR/$p")
done
for b in kubelet kube-scheduler kube-controller-manager; do
  [ -x "$KUBE_BIN_DIR/$b" ] || missing+=("$KUBE_BIN_DIR/$b (scripts/build-kube.sh)")
done
[ "${#missing[@]}" -eq 0 ] || die "missing: ${missing[*]} (run scripts/install-deps.sh and scripts/build-kube.sh)"

STARTED_PIDS=()
cleanup_on_failure() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "failed; stopping what was started (logs stay in $NODE)"
    for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  fi
}
trap cleanup_on_failure EXIT

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

spawn() {
  local logfile="$1" pidfile="$2"; shift 2
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$logfile" 2>&1 &
  local i
  for i in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || die "could not start $1 (no pid file)"
  STARTED_PIDS+=("$(cat "$pidfile")")
}

wait_for() { # WHAT SECONDS PID CMD...
  local what="$1" secs="$2" pid="$3"; shift 3
  local deadline=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    pid_alive "$pid" || return 1
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "$what not ready within $secs s"
  return 1
}

fail_with_log() {
  log "$1; last 30 lines of $2:"
  tail -n 30 "$2" >&2 || true
  die "$1"
}

# What the machine had before, so that stop-node.sh removes only what this node made.
for d in /run/containerd; do
  [ -e "$d" ] || echo "$d" >>"$NODE/created-dirs"
done
touch "$NODE/created-dirs"
# containerd puts each container's cgroup under k8s.io/ of every hierarchy (cgroupfs driver).
for h in /sys/fs/cgroup/*/; do
  [ -e "${h}k8s.io" ] || echo "${h}k8s.io" >>"$NODE/created-cgroups"
done
touch "$NODE/created-cgroups"

# ---- the registry ---------------------------------------------------------------------------------
read -r REGISTRY_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT < <(free_ports 3)
# On the node's address (the bridge's, the test bed's own): the host pushes there, containerd pulls from
# there, and pods (hotsync's own, deployed by the tests) can ask it about images too.
REGISTRY="$NODE_IP:$REGISTRY_PORT"
mkdir -p "$NODE/registry/data"
cat >"$NODE/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $NODE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
spawn "$NODE/registry.log" "$NODE/registry.pid" docker-registry serve "$NODE/registry/config.yml"
REGISTRY_PID="$(cat "$NODE/registry.pid")"
wait_for "the registry" 20 "$REGISTRY_PID" curl -fsS --max-time 1 "http://$REGISTRY/v2/" \
  || fail_with_log "the registry did not start" "$NODE/registry.log"

# ---- containerd -----------------------------------------------------------------------------------
CTRD="$NODE/containerd"
mkdir -p "$CTRD/root" "$CTRD/state" "$CTRD/opt" "$CTRD/runc" "$NODE/certs.d" "$NODE/cni/net.d" "$NODE/cni/ipam"
CONTAINERD_SOCK="$CTRD/containerd.sock"
for host in $REGISTRY_HOSTS "$REGISTRY"; do
  mkdir -p "$NODE/certs.d/$host"
  cat >"$NODE/certs.d/$host/hosts.toml" <<EOF
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
done
cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$CTRD/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE/certs.d"
EOF
# The bridge is ours (made by `network`); no masquerade and no gateway role: pods talk to the host's
# address on the bridge only, so the plugin neither turns on IP forwarding nor writes iptables rules.
cat >"$NODE/cni/net.d/10-hotsync.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "hotsync-$BRIDGE",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "${POD_SUBNET%.0/24}.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# containerd and the kubelet share a mount namespace of their own in which /var/log is this node's
# NODE/log: the kubelet writes pod logs under /var/log/pods whatever its root dir, and its container
# GC removes every pod log directory there that it does not know, so two nodes on one machine would
# delete each other's logs (and the machine would keep them). The mounts containerd makes (rootfs,
# netns, shm) live and die with that namespace too.
mkdir -p "$NODE/log/pods" "$NODE/log/containers"
spawn "$NODE/containerd.log" "$NODE/containerd.pid" \
  unshare --mount --propagation private -- \
  bash -c 'mount --bind "$0" /var/log && exec "$@"' "$NODE/log" \
  containerd --config "$CTRD/config.toml"
CONTAINERD_PID="$(cat "$NODE/containerd.pid")"
wait_for "containerd" 30 "$CONTAINERD_PID" ctr --address "$CONTAINERD_SOCK" version \
  || fail_with_log "containerd did not start" "$NODE/containerd.log"

# ---- kubeconfig for the node's components -----------------------------------------------------------
# The admin token: this node trusts its own loopback cluster.
cp "$KUBECONFIG" "$NODE/kubeconfig"
chmod 600 "$NODE/kubeconfig"

# ---- kubelet ----------------------------------------------------------------------------------------
KL="$NODE/kubelet"
mkdir -p "$KL/root" "$KL/certs" "$KL/volume-plugins"
: >"$KL/resolv.conf"
cat >"$KL/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
volumePluginDir: $KL/volume-plugins
resolvConf: $KL/resolv.conf
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
runtimeRequestTimeout: 2m
EOF
spawn "$NODE/kubelet.log" "$NODE/kubelet.pid" \
  nsenter --target "$CONTAINERD_PID" --mount -- "$KUBE_BIN_DIR/kubelet" \
  --config "$KL/config.yaml" \
  --kubeconfig "$NODE/kubeconfig" \
  --container-runtime remote \
  --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
  --root-dir "$KL/root" \
  --cert-dir "$KL/certs" \
  --hostname-override "$NODE_NAME" \
  --node-ip "$NODE_IP" \
  --node-labels "hotsync.dev/node=real" \
  --pod-infra-container-image "$SANDBOX_IMAGE" \
  --v 1
KUBELET_PID="$(cat "$NODE/kubelet.pid")"
wait_for "the kubelet" 60 "$KUBELET_PID" curl -fsS --max-time 1 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" \
  || fail_with_log "the kubelet did not start" "$NODE/kubelet.log"

# ---- scheduler and controller-manager ---------------------------------------------------------------
spawn "$NODE/scheduler.log" "$NODE/scheduler.pid" "$KUBE_BIN_DIR/kube-scheduler" \
  --kubeconfig "$NODE/kubeconfig" \
  --leader-elect=false \
  --secure-port 0 \
  --port 0
SCHEDULER_PID="$(cat "$NODE/scheduler.pid")"
spawn "$NODE/controller-manager.log" "$NODE/controller-manager.pid" "$KUBE_BIN_DIR/kube-controller-manager" \
  --kubeconfig "$NODE/kubeconfig" \
  --leader-elect=false \
  --secure-port 0 \
  --port 0 \
  --controllers nodelifecycle,garbagecollector,serviceaccount,serviceaccount-token,deployment,replicaset,namespace,podgc,ttl \
  --service-account-private-key-file "$DIR/certs/sa.key" \
  --root-ca-file "$DIR/ca.crt" \
  --use-service-account-credentials=false \
  --node-monitor-period 2s
CONTROLLER_MANAGER_PID="$(cat "$NODE/controller-manager.pid")"
sleep 1
pid_alive "$SCHEDULER_PID" || fail_with_log "kube-scheduler exited" "$NODE/scheduler.log"
pid_alive "$CONTROLLER_MANAGER_PID" || fail_with_log "kube-controller-manager exited" "$NODE/controller-manager.log"

{
  echo "# Written by scripts/start-node.sh; source it."
  for v in NODE_DIR NODE_NAME NODE_IP BRIDGE POD_SUBNET REGISTRY REGISTRY_HOSTS CONTAINERD_SOCK SANDBOX_IMAGE \
           REGISTRY_PID CONTAINERD_PID KUBELET_PID SCHEDULER_PID CONTROLLER_MANAGER_PID; do
    case "$v" in
      NODE_DIR) val="$NODE" ;;
      *) val="${!v}" ;;
    esac
    printf 'export %s=%q\n' "$v" "$val"
  done
} >"$NODE/env"

trap - EXIT
log "started: node $NODE_NAME at $NODE_IP, registry $REGISTRY, containerd $CONTAINERD_SOCK"
