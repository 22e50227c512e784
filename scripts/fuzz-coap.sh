#!/usr/bin/env bash
# Fuzzes qeaas-coapd's request path for MINUTES (default 10) with the stable-Rust mutation loop
# in qeaas-coap/examples/fuzz-coap.rs: decrypted CoAP requests through an established DTLS
# session, and raw datagrams into the listener. Crashing inputs land in target/fuzz-coap/.
# Usage: scripts/fuzz-coap.sh [MINUTES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
MINUTES=${1:-10}
case "$MINUTES" in ''|*[!0-9]*) echo "usage: $0 [MINUTES] [SEED]" >&2; exit 64;; esac
cargo build --release --locked -q -p qeaas-coap --example fuzz-coap
args=(--seconds $((MINUTES * 60)) --out target/fuzz-coap)
[ $# -ge 2 ] && args+=(--seed "$2")
set +e
target/release/examples/fuzz-coap "${args[@]}"
rc=$?
set -e
# 1: a Rust panic (input saved); above 128: killed by a signal (a crash in C, or an abort).
[ "$rc" -eq 0 ] || echo "fuzz-coap: FAILED with exit status $rc" >&2
exit "$rc"
