#!/usr/bin/env bash
# Builds the Debian packages (debian/, debhelper) from this tree into target/debian/, then runs
# lintian on them:
#   qeaasd, qeaas-coapd, qeaas-fetch, qeaas-httpsd, libqeaas-openssl-provider, qeaas-sim
#   (no -dbgsym packages unless DEB_BUILD_OPTIONS says otherwise: nothing here uses them, and
#   compressing their debug info costs minutes).
#
#   scripts/build-debs.sh            build and lint (exit 1 on a lintian error)
#   scripts/build-debs.sh --no-lint  build only
#
# Runs debian/rules clean, build and binary directly rather than dpkg-buildpackage, which can only
# write into the parent directory of the tree. The release build is the one scripts/demo.sh makes
# (same command, same environment), so the two share it. Rust comes from rustup (Debian 12's
# rustc is too old); the Debian tools from scripts/setup-debian.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LINT=1
[ "${1:-}" = "--no-lint" ] && LINT=0
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
for t in dh help2man lintian cargo; do
  command -v "$t" >/dev/null || { echo "$0: $t missing: run scripts/setup-debian.sh" >&2; exit 69; }
done

# One version: the workspace's must be the changelog's (a native package: no Debian revision).
ws=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
deb=$(dpkg-parsechangelog -S Version)
[ "$ws" = "$deb" ] || {
  echo "$0: Cargo.toml says $ws, debian/changelog $deb: add a changelog entry (dch -v $ws)" >&2
  exit 1
}

export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-noddebs}
out=target/debian
rm -rf "$out"
start=$(date +%s)
echo "==> debian/rules build binary (version $deb)"
debian/rules clean >/dev/null
debian/rules build
log=$(mktemp)
debian/rules binary DEB_OUT="$out" >"$log" 2>&1 || { tail -40 "$log"; rm -f "$log"; exit 1; }
grep -E '^dpkg-deb: building' "$log" || true
rm -f "$log"
debian/rules clean >/dev/null
ls "$out"/*.deb >/dev/null 2>&1 || { echo "$0: no packages in $out" >&2; exit 1; }
echo "==> packages in $out ($(($(date +%s) - start)) s):"
for f in "$out"/*.deb; do
  printf '    %-60s %s\n' "$(basename "$f")" "$(du -h "$f" | cut -f1)"
done

[ "$LINT" -eq 1 ] || exit 0
echo "==> lintian"
# Errors fail the build; warnings are listed with their reasons in ARCHITECTURE.md (and kept in
# debian/*.lintian-overrides where the reason is ours to give).
lint=$(lintian --tag-display-limit 0 --info "$out"/*.deb 2>&1) || true
printf '%s\n' "$lint" | grep -E '^[EW]:' | sed 's/^/    /' || true
if printf '%s\n' "$lint" | grep -q '^E:'; then
  echo "    FAIL: lintian reports errors"
  exit 1
fi
echo "    ok: no lintian error ($(printf '%s\n' "$lint" | grep -c '^W:' || true) warnings)"
