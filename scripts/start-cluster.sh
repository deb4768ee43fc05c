#!/usr/bin/env bash
# Start a throwaway Kubernetes API server (etcd + kube-apiserver v1.20.2, no scheduler, kubelet or
# controller-manager) on free loopback ports, in the background. See shared/TESTCLUSTER.md.
#
# Usage: scripts/start-cluster.sh DIR
#   DIR is created if missing; it must be empty (but for the `node/` that scripts/start-node.sh network
#   makes) or a directory this script made before (a cluster there must be stopped first with
#   scripts/stop-cluster.sh DIR).
#
# Env (optional):
#   KUBE_APISERVER          apiserver binary (default: the one scripts/build-kube.sh caches,
#                           ${HOTSYNC_CACHE:-~/.cache/hotsync}/kubernetes-v1.20.2/kube-apiserver)
#   HOTSYNC_BIND_ADDRESS    the address the API server listens on and advertises (default 127.0.0.1;
#                           a real node gives the address of the bridge it made, so that its pods reach
#                           the server too: scripts/start-node.sh network)
#   HOTSYNC_SA_ADMISSION    1: keep the ServiceAccount admission plugin on (a controller-manager makes
#                           each namespace's `default` ServiceAccount); otherwise it is off
#   ETCD                    etcd binary (default: etcd on PATH)
#   HOTSYNC_READY_TIMEOUT   seconds to wait for /readyz (default 60)
#
# Writes into DIR:
#   env               shell-sourceable: CLUSTER_DIR KUBECONFIG APISERVER_URL CA_FILE ETCD_URL
#                     ADMIN_TOKEN LIMITED_TOKEN NONE_TOKEN ETCD_PID APISERVER_PID
#   kubeconfig        admin (system:masters) token, context `hotsync-local`, CA embedded
#   ca.crt ca.key     the cluster CA (also --client-ca-file)
#   certs/            serving cert (SAN 127.0.0.1, localhost), service account keys, --cert-dir
#   tokens.csv        --token-auth-file: hotsync-admin (system:masters), hotsync-limited and
#                     hotsync-none (no groups; only system:authenticated, so RBAC grants nothing)
#   etcd.pid apiserver.pid etcd.log apiserver.log etcd-data/
# Prints `source DIR/env` hints on stderr; exits non-zero with the log tail on failure, having
# stopped whatever it started.
set -euo pipefail

log() { printf 'start-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 DIR" >&2; exit 2; }

KUBE_VERSION="v1.20.2"
CACHE_ROOT="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
APISERVER_BIN="${KUBE_APISERVER:-$CACHE_ROOT/kubernetes-$KUBE_VERSION/kube-apiserver}"
BIND_ADDRESS="${HOTSYNC_BIND_ADDRESS:-127.0.0.1}"
SA_ADMISSION="${HOTSYNC_SA_ADMISSION:-0}"
ETCD_BIN="${ETCD:-$(command -v etcd || true)}"
READY_TIMEOUT="${HOTSYNC_READY_TIMEOUT:-60}"
MARKER=".hotsync-cluster"

[ -x "$APISERVER_BIN" ] || die "kube-apiserver not found at $APISERVER_BIN; run scripts/build-kube.sh"
[ -n "$ETCD_BIN" ] && [ -x "$ETCD_BIN" ] || die "etcd not found; run scripts/install-deps.sh"
for cmd in openssl curl setsid base64; do
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found; run scripts/install-deps.sh"
done

mkdir -p "$1"
DIR="$(cd "$1" && pwd)"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
if [ -e "$DIR/$MARKER" ]; then
  for f in etcd.pid apiserver.pid; do
    if [ -s "$DIR/$f" ] && pid_alive "$(cat "$DIR/$f")"; then
      die "a cluster is already running in $DIR (pid $(cat "$DIR/$f") from $f); run scripts/stop-cluster.sh $DIR"
    fi
  done
  # Stale leftovers of a cluster that is no longer running: start fresh (a node network claimed for
  # this start by scripts/start-node.sh network stays).
  find "$DIR" -mindepth 1 -maxdepth 1 ! -name node -exec rm -rf {} +
elif [ -n "$(ls -A "$DIR" | grep -vx node)" ]; then
  die "$DIR is not empty and was not made by this script; give an empty or new directory"
fi
touch "$DIR/$MARKER"

# ------------------------------------------------------------------------------------------------
STARTED_PIDS=()
cleanup_on_failure() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED_PIDS[@]}"; do
      for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$DIR/etcd.pid" "$DIR/apiserver.pid" "$DIR/env"
    log "failed; stopped what was started. Logs stay in $DIR"
  fi
}
trap cleanup_on_failure EXIT

port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q . 
}

# Print N distinct free loopback TCP ports. The kernel picks them (bind to port 0) while all N
# sockets are held open, so they are distinct; a fallback picks random ports checked with ss.
free_ports() {
  local n="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" <<'PY' && return 0
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
  fi
  local ports=() p
  while [ "${#ports[@]}" -lt "$n" ]; do
    p=$(( 20000 + RANDOM % 40000 ))
    port_in_use "$p" && continue
    case " ${ports[*]} " in *" $p "*) continue ;; esac
    ports+=("$p")
  done
  echo "${ports[*]}"
}

# Start "$@" in its own session, detached from this script, output to LOGFILE; its pid goes to
# PIDFILE (written by the process itself just before exec, so it is the server's own pid).
spawn() {
  local logfile="$1" pidfile="$2"; shift 2
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$logfile" 2>&1 &
  local i
  for i in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || die "could not start $1 (no pid file)"
  STARTED_PIDS+=("$(cat "$pidfile")")
}

fail_with_log() {
  local what="$1" logfile="$2"
  log "$what; last 30 lines of $logfile:"
  tail -n 30 "$logfile" >&2 || true
  if grep -qi 'address already in use' "$logfile" 2>/dev/null; then
    die "$what: a port is already in use (see log above)"
  fi
  die "$what"
}

# ---- certificates, keys, tokens ----------------------------------------------------------------
CERTS="$DIR/certs"
mkdir -p "$CERTS"
(
  set -e
  cd "$DIR"
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
    -keyout ca.key -out ca.crt -subj "/CN=hotsync-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  openssl req -new -nodes -newkey rsa:2048 -sha256 \
    -keyout certs/apiserver.key -out certs/apiserver.csr -subj "/CN=kube-apiserver"
  cat >certs/apiserver.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$BIND_ADDRESS,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EXT
  openssl x509 -req -sha256 -days 3650 -in certs/apiserver.csr -CA ca.crt -CAkey ca.key \
    -CAcreateserial -extfile certs/apiserver.ext -out certs/apiserver.crt
  openssl genrsa -out certs/sa.key 2048
  openssl rsa -in certs/sa.key -pubout -out certs/sa.pub
) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log" >&2; die "openssl failed making the CA or keys"; }
chmod 600 "$DIR/ca.key" "$CERTS"/*.key

ADMIN_TOKEN="$(openssl rand -hex 24)"
LIMITED_TOKEN="$(openssl rand -hex 24)"
NONE_TOKEN="$(openssl rand -hex 24)"
cat >"$DIR/tokens.csv" <<EOF
$ADMIN_TOKEN,hotsync-admin,hotsync-admin,"system:masters"
$LIMITED_TOKEN,hotsync-limited,hotsync-limited
$NONE_TOKEN,hotsync-none,hotsync-none
EOF
chmod 600 "$DIR/tokens.csv"

# ---- etcd and kube-apiserver, retried on a port race ------------------------------------------
start_etcd() {
  read -r ETCD_CLIENT_PORT ETCD_PEER_PORT < <(free_ports 2)
  ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
  rm -rf "$DIR/etcd-data"
  spawn "$DIR/etcd.log" "$DIR/etcd.pid" "$ETCD_BIN" \
    --name hotsync \
    --data-dir "$DIR/etcd-data" \
    --listen-client-urls "$ETCD_URL" \
    --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "hotsync=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --listen-metrics-urls '' \
    --snapshot-count 10000
  ETCD_PID="$(cat "$DIR/etcd.pid")"
  local i
  for i in $(seq 200); do   # up to 20 s
    pid_alive "$ETCD_PID" || return 1
    curl -fsS --max-time 1 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  return 2
}

start_apiserver() {
  read -r APISERVER_PORT < <(free_ports 1)
  APISERVER_URL="https://$BIND_ADDRESS:$APISERVER_PORT"
  local admission=(--disable-admission-plugins ServiceAccount)
  [ "$SA_ADMISSION" = 1 ] && admission=()
  spawn "$DIR/apiserver.log" "$DIR/apiserver.pid" "$APISERVER_BIN" \
    --etcd-servers "$ETCD_URL" \
    --bind-address "$BIND_ADDRESS" \
    --secure-port "$APISERVER_PORT" \
    --advertise-address "$BIND_ADDRESS" \
    --insecure-port 0 \
    --cert-dir "$CERTS" \
    --tls-cert-file "$CERTS/apiserver.crt" \
    --tls-private-key-file "$CERTS/apiserver.key" \
    --client-ca-file "$DIR/ca.crt" \
    --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$CERTS/sa.pub" \
    --service-account-signing-key-file "$CERTS/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    "${admission[@]}" \
    --kubelet-preferred-address-types InternalIP \
    --endpoint-reconciler-type none \
    --allow-privileged=true
  APISERVER_PID="$(cat "$DIR/apiserver.pid")"
  local deadline=$(( $(date +%s) + READY_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    pid_alive "$APISERVER_PID" || return 1
    if curl -fsS --max-time 2 --cacert "$DIR/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$APISERVER_URL/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 2
}

stop_pid() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do pid_alive "$pid" || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

attempt=1
while :; do
  rc=0; start_etcd || rc=$?
  [ "$rc" -eq 0 ] && break
  if [ "$rc" -eq 1 ] && [ "$attempt" -lt 3 ] && grep -qi 'address already in use' "$DIR/etcd.log"; then
    log "etcd port taken (race); retrying with new ports"
    attempt=$((attempt + 1)); continue
  fi
  [ "$rc" -eq 2 ] && fail_with_log "etcd did not become healthy within 20 s" "$DIR/etcd.log"
  fail_with_log "etcd exited during startup" "$DIR/etcd.log"
done

attempt=1
while :; do
  rc=0; start_apiserver || rc=$?
  [ "$rc" -eq 0 ] && break
  if [ "$rc" -eq 1 ] && [ "$attempt" -lt 3 ] && grep -qi 'address already in use' "$DIR/apiserver.log"; then
    log "apiserver port taken (race); retrying with a new port"
    attempt=$((attempt + 1)); continue
  fi
  if [ "$rc" -eq 2 ]; then
    stop_pid "$APISERVER_PID"
    fail_with_log "kube-apiserver not ready within $READY_TIMEOUT s ($APISERVER_URL/readyz)" "$DIR/apiserver.log"
  fi
  fail_with_log "kube-apiserver exited during startup" "$DIR/apiserver.log"
done

# ---- kubeconfig and env -------------------------------------------------------------------------
CA_DATA="$(base64 -w0 <"$DIR/ca.crt")"
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hotsync-local
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $CA_DATA
users:
- name: hotsync-admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: hotsync-local
  context:
    cluster: hotsync-local
    user: hotsync-admin
    namespace: default
current-context: hotsync-local
EOF
chmod 600 "$DIR/kubeconfig"

{
  echo "# Written by scripts/start-cluster.sh; source it."
  for v in CLUSTER_DIR KUBECONFIG APISERVER_URL CA_FILE ETCD_URL ADMIN_TOKEN LIMITED_TOKEN NONE_TOKEN \
           ETCD_PID APISERVER_PID; do
    case "$v" in
      CLUSTER_DIR) val="$DIR" ;;
      KUBECONFIG) val="$DIR/kubeconfig" ;;
      CA_FILE) val="$DIR/ca.crt" ;;
      *) val="${!v}" ;;
    esac
    printf 'export %s=%q\n' "$v" "$val"
  done
} >"$DIR/env"

trap - EXIT
log "ready: $APISERVER_URL (etcd pid $ETCD_PID, apiserver pid $APISERVER_PID)"
log "use: source $DIR/env   # or: kubectl --kubeconfig $DIR/kubeconfig get ns"
log "stop: scripts/stop-cluster.sh $DIR"
