#!/usr/bin/env bash
# Runs every test on a fresh machine: installs Debian's packages, builds Kubernetes 1.20.2
# (kube-apiserver, kubelet, scheduler, controller-manager) and installs helm 3.17.1 once (cached in
# ~/.cache/hotsync), then
# `cargo test --workspace`: every crate (the product, the model, the simulation, the binary). Tests that
# need the API server or the real node start their own.
set -euo pipefail
cd "$(dirname "$0")/.."
export HOTSYNC_CACHE="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOTSYNC_CACHE/target}"
scripts/install-deps.sh
KUBE_BIN_DIR="$(scripts/build-kube.sh | tail -n 1)"
export KUBE_BIN_DIR
HOTSYNC_TEST_HELM="$(scripts/install-helm.sh | tail -n 1)"
export HOTSYNC_TEST_HELM
status=0
cargo test --locked --workspace "$@" || status=$?

# Each test binary's shared test bed lives in a static, which Rust never drops: a reaper process stops
# it (and removes its state directory) once the binary has exited. Wait for the reapers whose owner is
# gone, so that nothing is left running or on disk when this script returns, even if whatever ran it
# stops every process then. Reapers of test beds whose owner still runs are not ours to wait for.
orphaned_reapers() {
  local pid owner
  for pid in $(pgrep -f '^bash -c while kill -0 [0-9]+ 2>/dev/null; do sleep 0.5; done; bash' || true); do
    owner="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^bash -c while kill -0 \([0-9]*\) .*/\1/p')"
    [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null && echo "$pid"
  done
  return 0
}
for _ in $(seq 240); do
  [ -z "$(orphaned_reapers)" ] && break
  sleep 0.5
done
left="$(orphaned_reapers)"
[ -z "$left" ] || echo "test.sh: test bed reapers still stopping after 120 s: $left" >&2
exit "$status"
