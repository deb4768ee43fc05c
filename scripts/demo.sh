#!/usr/bin/env bash
# The demo, on a fresh machine: builds hotsync, makes a scratch repository from examples-repo/,
# commits the seed's sidecar bump (v0.1 -> v0.2) and a risky change, and shows what `hotsync plan`
# tells a reviewer about each.
set -euo pipefail
cd "$(dirname "$0")/.."
export HOTSYNC_CACHE="${HOTSYNC_CACHE:-$HOME/.cache/hotsync}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOTSYNC_CACHE/target}"
scripts/install-deps.sh
cargo build --release --locked --bin hotsync
HOTSYNC="$CARGO_TARGET_DIR/release/hotsync"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r examples-repo/. "$scratch/"
cd "$scratch"
git init -q -b main
git -c user.name=demo -c user.email=demo@example.com add -A
git -c user.name=demo -c user.email=demo@example.com commit -qm "GameServerSets"
git update-ref refs/remotes/origin/main HEAD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "hotsync validate: every manifest checked, with file and line on error"
"$HOTSYNC" validate

say "An operator bumps the minecraft sidecar: v0.1 -> v0.2"
sed -i 's/sidecar:v0.1/sidecar:v0.2/' gameservers/minecraft.yaml
git -c user.name=demo -c user.email=demo@example.com commit -qam "Bump minecraft sidecar to v0.2"
set +e
"$HOTSYNC" plan
echo "(exit code $?: 1 means changes)"

say "The same change as a pull-request comment (markdown)"
"$HOTSYNC" plan -o markdown

say "Someone also bumps the lobby's metrics agent; lobby has no podUpdatePolicy (ReCreate)"
sed -i 's/metrics-agent:0.9/metrics-agent:1.0/' gameservers/lobby.yaml
git -c user.name=demo -c user.email=demo@example.com commit -qam "Bump lobby metrics agent"
"$HOTSYNC" plan --fail-on recreate
echo "(exit code $?: 3 means a --fail-on class is present; CI would block this merge)"
