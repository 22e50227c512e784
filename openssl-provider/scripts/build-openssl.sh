#!/usr/bin/env bash
# Builds OpenSSL 3.5 (static libraries and the `openssl` app) from the sources shipped in the
# crates.io package openssl-src (pinned in openssl-provider/Cargo.toml, never compiled by Cargo),
# so the provider's tests and benchmark also run against a newer ABI than Debian 12's 3.0.
#
#   openssl-provider/scripts/build-openssl.sh [PREFIX]
#
# Static libraries (no-shared, no-module): the trimmed sources in openssl-src lack the scripts that
# shared libraries and the legacy module need. A static `openssl` still loads external providers
# with dlopen (DSO stays on), and a provider calls its core only through the dispatch table.
# PREFIX defaults to <workspace target dir>/openssl-3.5. Idempotent: does nothing when
# PREFIX/bin/openssl already exists. ~5 min on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cargo=${CARGO:-cargo}
meta() { "$cargo" metadata --format-version=1 --manifest-path "$here/Cargo.toml" "$@"; }
json=$(meta --offline 2>/dev/null || meta)
target=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
prefix=${1:-$target/openssl-3.5}
if [ -x "$prefix/bin/openssl" ]; then
    echo "$prefix/bin/openssl already built"
    exit 0
fi
src=${OPENSSL_SRC_DIR:-$(printf '%s' "$json" | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if p["name"] == "openssl-src" and p["version"].startswith("300.5."):
        print(os.path.join(os.path.dirname(p["manifest_path"]), "openssl"))
        break
')}
[ -x "$src/Configure" ] || { echo "openssl-src 300.5 sources not found (run cargo fetch)" >&2; exit 1; }
build=$prefix.build
mkdir -p "$build"
cd "$build"
# Out-of-tree build: the registry copy of the sources stays untouched.
if [ ! -f Makefile ]; then
    "$src/Configure" --prefix="$prefix" --libdir=lib --openssldir="$prefix/ssl" \
        no-shared no-module no-tests no-docs >configure.log
fi
nice make -j"${JOBS:-2}" build_sw >make.log 2>&1 || { tail -40 make.log >&2; exit 1; }
make install_sw >install.log 2>&1
"$prefix/bin/openssl" version
