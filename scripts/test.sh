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
cargo test --locked --workspace "$@"
