#!/usr/bin/env bash
# Build genuine Kubernetes v1.20.2 binaries (kube-apiserver, kubelet, kube-scheduler,
# kube-controller-manager) from Debian bookworm's `kubernetes` source package, in one `make` of one
# tree, and cache them outside the repository.
#
# Usage: scripts/build-kube.sh
# Env:   HOTSYNC_CACHE  cache root (default ~/.cache/hotsync)
# Output: the last line on stdout is the directory holding the four binaries:
#   $HOTSYNC_CACHE/kubernetes-v1.20.2/
# If every binary already exists and runs, the script prints the directory and exits at once.
#
# Needs the packages from scripts/install-deps.sh. Does not touch /etc/apt: the source package
# is fetched with a private APT configuration whose deb-src lines are derived, at run time, from
# the URIs and suites the machine already uses in /etc/apt/sources.list.d/debian.sources.
#
# Layout under $HOTSYNC_CACHE/kubernetes-v1.20.2/:
#   kube-apiserver kubelet kube-scheduler kube-controller-manager   the binaries (kept)
#   pause            build/pause/linux/pause.c built static: the sandbox image's only file (kept)
#   go/cache         GOCACHE (kept, ~1.2 GB; a cold build took ~4 min on 2 cores). The
#                    Kubernetes Makefile uses its own GOPATH, _output/local/go inside the tree.
#   apt/             private APT config, lists and cache (kept, small)
#   download/        the downloaded source package files (kept, ~35 MB; no network on rebuild)
#   src/             the unpacked tree (deleted after a successful build; always unpacked at
#                    the same path so that GOCACHE entries stay valid)
#   build.log        output of the last make run
set -euo pipefail

KUBE_VERSION="v1.20.2"
DEB_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
DEBIAN_SOURCES="/etc/apt/sources.list.d/debian.sources"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
GOCODE="/usr/share/gocode/src/github.com"

CACHE_ROOT="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
OUT_DIR="$CACHE_ROOT/kubernetes-$KUBE_VERSION"
BINARIES=(kube-apiserver kubelet kube-scheduler kube-controller-manager)

log() { printf 'build-kube: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

binaries_ok() {
  local b
  [ -x "$OUT_DIR/pause" ] || return 1
  for b in "${BINARIES[@]}"; do
    [ -x "$OUT_DIR/$b" ] && "$OUT_DIR/$b" --version 2>/dev/null | grep -qF "Kubernetes $KUBE_VERSION" || return 1
  done
}

if binaries_ok; then
  log "cached: ${BINARIES[*]} $KUBE_VERSION in $OUT_DIR"
  echo "$OUT_DIR"
  exit 0
fi

# --- prerequisites ----------------------------------------------------------------------------
for cmd in go make rsync apt-get tar flock awk gcc; do
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found; run scripts/install-deps.sh first"
done
for d in "$GOCODE/modern-go/reflect2" "$GOCODE/json-iterator/go"; do
  [ -d "$d" ] || die "$d missing; run scripts/install-deps.sh first"
done
[ -r "$DEBIAN_SOURCES" ] || die "$DEBIAN_SOURCES not found: cannot derive deb-src lines"
[ -r "$KEYRING" ] || die "$KEYRING not found (package debian-archive-keyring)"

mkdir -p "$OUT_DIR"
# One build at a time per cache dir.
exec 9>"$OUT_DIR/.lock"
if ! flock -n 9; then
  log "another build holds $OUT_DIR/.lock; waiting"
  flock 9
fi
if binaries_ok; then
  log "built by a concurrent run: $OUT_DIR"
  echo "$OUT_DIR"
  exit 0
fi

start_ts=$(date +%s)

# --- 1. fetch the source package with a private APT configuration -------------------------------
APT_DIR="$OUT_DIR/apt"
DL_DIR="$OUT_DIR/download"
mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$DL_DIR"

have_download() {
  compgen -G "$DL_DIR/kubernetes_*.dsc" >/dev/null && compgen -G "$DL_DIR/kubernetes_*.orig.tar.*" >/dev/null
}

if ! have_download; then
  # deb-src lines from the deb822 stanzas of the machine's own sources (no host name is hard-coded).
  awk -v keyring="$KEYRING" '
    function flush() {
      if (uris != "" && suites != "") {
        n = split(uris, u, " "); m = split(suites, s, " ")
        for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
          printf "deb-src [signed-by=%s] %s %s %s\n", keyring, u[i], s[j], (comps == "" ? "main" : comps)
      }
      uris = ""; suites = ""; comps = ""
    }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^URIs:/       { sub(/^URIs:[ \t]*/, "");       uris = $0;   next }
    /^Suites:/     { sub(/^Suites:[ \t]*/, "");     suites = $0; next }
    /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0;  next }
    END { flush() }
  ' "$DEBIAN_SOURCES" >"$APT_DIR/sources.list"
  [ -s "$APT_DIR/sources.list" ] || die "no URIs/Suites found in $DEBIAN_SOURCES"
  log "private deb-src lines:"; sed 's/^/  /' "$APT_DIR/sources.list" >&2

  cat >"$APT_DIR/apt.conf" <<CONF
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "$APT_DIR/sources.list.d";
Dir::State::Lists "$APT_DIR/lists";
Dir::Cache "$APT_DIR/cache";
APT::Sandbox::User "root";
Acquire::Languages "none";
CONF
  export APT_CONFIG="$APT_DIR/apt.conf"

  log "apt-get update (private source lists)"
  apt-get -q update >&2 || die "apt-get update with the private deb-src config failed"
  log "apt-get source --download-only kubernetes=$DEB_SRC_VERSION"
  (cd "$DL_DIR" && apt-get -q source --download-only "kubernetes=$DEB_SRC_VERSION" >&2) \
    || die "apt-get source kubernetes=$DEB_SRC_VERSION failed (is that version still in the configured suites?)"
  unset APT_CONFIG
  have_download || die "download finished but no kubernetes .dsc/.orig tarball in $DL_DIR"
fi

orig=""
for f in "$DL_DIR"/kubernetes_*.orig.tar.*; do
  case "$f" in *.asc) continue ;; esac
  orig="$f"; break
done
[ -n "$orig" ] || die "no kubernetes_*.orig.tar.* in $DL_DIR"

# --- 2. unpack (always at the same path, so GOCACHE hits on a rebuild) --------------------------
SRC_PARENT="$OUT_DIR/src"
rm -rf "$SRC_PARENT"
mkdir -p "$SRC_PARENT/unpack"
log "unpacking $(basename "$orig")"
tar -xf "$orig" -C "$SRC_PARENT/unpack" || die "cannot unpack $orig"
top=$(find "$SRC_PARENT/unpack" -mindepth 1 -maxdepth 1 -type d)
[ "$(printf '%s\n' "$top" | wc -l)" -eq 1 ] && [ -n "$top" ] || die "unexpected layout of $orig"
mv "$top" "$SRC_PARENT/kubernetes"
rmdir "$SRC_PARENT/unpack"
SRC="$SRC_PARENT/kubernetes"
[ -f "$SRC/Makefile" ] && [ -d "$SRC/cmd/kube-apiserver" ] && [ -d "$SRC/vendor" ] \
  || die "$orig does not look like a kubernetes tree with vendor/"

# --- 3. swap in reflect2 1.0.2 and json-iterator 1.1.12 (reflect2 1.0.1 faults under Go >= 1.18) --
replace_vendor() {
  local from="$1" to="$SRC/vendor/github.com/$2"
  rm -rf "$to"
  mkdir -p "$to"
  cp -a "$from/." "$to/"
  find "$to" -name '*_test.go' -delete
  find "$to" -depth -type d \( -name '*_tests' -o -name benchmarks \) -exec rm -rf {} +
}
replace_vendor "$GOCODE/modern-go/reflect2" modern-go/reflect2
replace_vendor "$GOCODE/json-iterator/go" json-iterator/go
log "vendored reflect2 and json-iterator replaced by Debian's copies"

# --- 4. build -----------------------------------------------------------------------------------
# hack/lib/golang.sh forces GOPATH=_output/local/go and GOCACHE=_output/local/go/cache inside the
# tree, so a GOCACHE variable would be ignored. Point that path at a cache dir that outlives the tree.
GO_DIR="$OUT_DIR/go"
mkdir -p "$GO_DIR/cache" "$SRC/_output/local/go"
ln -sfn "$GO_DIR/cache" "$SRC/_output/local/go/cache"
LOG="$OUT_DIR/build.log"
WHAT=""
for b in "${BINARIES[@]}"; do WHAT="$WHAT cmd/$b"; done
WHAT="${WHAT# }"
log "make WHAT=\"$WHAT\" (log: $LOG; ~9 min cold on 2 cores, faster with a warm GOCACHE)"
if ! (
  cd "$SRC"
  unset GOFLAGS GOROOT GOBIN GO111MODULE
  export CGO_ENABLED=0 GOCACHE="$GO_DIR/cache" GOPROXY=off
  make WHAT="$WHAT" KUBE_GIT_VERSION="$KUBE_VERSION" KUBE_GIT_TREE_STATE=clean
) >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  die "make failed; full log in $LOG (source left in $SRC)"
fi

bindir="$SRC/_output/local/bin/$(go env GOOS)/$(go env GOARCH)"
for b in "${BINARIES[@]}"; do
  built="$bindir/$b"
  [ -x "$built" ] || built=$(find "$SRC/_output" -type f -name "$b" -perm -u+x | head -n 1)
  [ -n "$built" ] && [ -x "$built" ] || die "make succeeded but no $b binary under $SRC/_output"
  "$built" --version | grep -qF "Kubernetes $KUBE_VERSION" \
    || die "built $b reports '$("$built" --version 2>&1)', expected Kubernetes $KUBE_VERSION"
  cp "$built" "$OUT_DIR/$b.tmp"
  mv -f "$OUT_DIR/$b.tmp" "$OUT_DIR/$b"
done
# The pause image's one binary, from the same tree (build/pause/linux/pause.c), static.
gcc -static -O2 -Wall -Werror -DVERSION="$KUBE_VERSION" -o "$OUT_DIR/pause.tmp" "$SRC/build/pause/linux/pause.c" \
  || die "gcc -static of build/pause/linux/pause.c failed"
mv -f "$OUT_DIR/pause.tmp" "$OUT_DIR/pause"
rm -rf "$SRC_PARENT"
log "built ${BINARIES[*]} and pause $KUBE_VERSION in $(( $(date +%s) - start_ts )) s"
echo "$OUT_DIR"
