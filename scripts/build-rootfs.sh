#!/usr/bin/env bash
# The base of the hotsync image that the deploy test builds without Docker: a Debian bookworm root
# filesystem made by debootstrap (minbase, plus ca-certificates, tzdata and libssl3), from the mirror apt
# uses. Built once, cached in $HOTSYNC_CACHE/rootfs-bookworm (default ~/.cache/hotsync); prints its path
# on the last line. The image takes from it only what the binary needs (its shared libraries, the CA
# bundle, the time zones; see crates/hotsync-sim/src/oci.rs). Needs root.
set -euo pipefail
CACHE="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
OUT="$CACHE/rootfs-bookworm"
LOG="$CACHE/rootfs-bookworm.log"
log() { printf 'build-rootfs: %s\n' "$*" >&2; }

if [ -f "$OUT/.complete" ]; then
  echo "$OUT"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "error: debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { log "error: debootstrap not found (scripts/install-deps.sh)"; exit 1; }

# The Debian mirror apt is configured with (deb822 or one-line sources).
mirror="$(sed -n 's/^URIs: *\(\S*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

tmp="$OUT.tmp"
cleanup() {
  # debootstrap mounts these in the target while it installs; a failed run can leave them.
  for m in "$tmp/proc" "$tmp/sys" "$tmp/dev/pts" "$tmp/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap cleanup EXIT
cleanup
rm -rf "$tmp"
mkdir -p "$CACHE"
log "debootstrap bookworm from $mirror (log: $LOG)"
start=$SECONDS
if ! debootstrap --variant=minbase --include=ca-certificates,tzdata,libssl3 bookworm "$tmp" "$mirror" >"$LOG" 2>&1; then
  tail -n 20 "$LOG" >&2
  log "error: debootstrap failed"
  exit 1
fi
cleanup
rm -rf "$OUT"
mv "$tmp" "$OUT"
touch "$OUT/.complete"
log "done in $((SECONDS - start)) s"
echo "$OUT"
