#!/usr/bin/env bash
# Compares the systemd sandbox exposure of our unit with jitterentropy-rngd's (the best-sandboxed
# peer), in one run, and checks our unit files parse. Exit 1 if ours is more exposed.
#   scripts/systemd-security.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f /lib/systemd/system/jitterentropy.service ] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jitterentropy-rngd >/dev/null
  systemctl disable --now jitterentropy.service >/dev/null 2>&1 || true
}
score() { systemd-analyze security --offline=true --no-pager "$1" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'; }
ours=$(score systemd/qeaasd.service)
peer=$(score /lib/systemd/system/jitterentropy.service)
printf '%-34s %s\n' "unit" "exposure (systemd-analyze security --offline=true; lower is better)"
printf '%-34s %s\n' "qeaasd.service (ours)" "$ours" "jitterentropy.service (peer)" "$peer"
# Syntax: systemd-analyze verify needs the ExecStart binary; point it at a stand-in copy.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed "s#ExecStart=/usr/sbin/qeaasd#ExecStart=/bin/true#" systemd/qeaasd.service > "$tmp/qeaasd.service"
if out=$(systemd-analyze verify --man=no "$tmp/qeaasd.service" 2>&1); then echo "systemd-analyze verify: ok"; else echo "$out"; exit 1; fi
awk -v a="$ours" -v b="$peer" 'BEGIN { exit !(a <= b) }' || { echo "ours is more exposed than the peer"; exit 1; }
