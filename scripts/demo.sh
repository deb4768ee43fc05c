#!/usr/bin/env bash
# The demo, on a fresh machine: installs Debian's packages, builds Kubernetes 1.20.2 (kube-apiserver,
# kubelet, scheduler, controller-manager) once (cached in ~/.cache/hotsync), builds hotsync, and runs
# `hotsync demo`: a local cluster with a real node (as root; otherwise a simulated kubelet, said in one
# line) and OKG and Kruise simulated, a scratch repository, a sync, the sidecar bump v0.1 -> v0.2 picked
# up by the daemon, the real kubectl before and after, the status commit it wrote back, and a canary
# (the next bump one game server first, then hotsync promote).
set -euo pipefail
cd "$(dirname "$0")/.."
export HOTSYNC_CACHE="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOTSYNC_CACHE/target}"
scripts/install-deps.sh
KUBE_BIN_DIR="$(scripts/build-kube.sh | tail -n 1)"
export KUBE_BIN_DIR
cargo build --release --locked --bin hotsync
exec "$CARGO_TARGET_DIR/release/hotsync" demo "$@"
