#!/bin/sh
# The paper's DTLS 1.3 handshake matrix on loopback: {ECDHE P-256, X25519, ML-KEM-512} x
# {ECDSA P-256, ML-DSA-44 certificate} x {verified, unverified}, plus PSK and PSK + ML-KEM-512.
#
#   scripts/handshake-matrix.sh [RUNS]      # default 100 recorded handshakes per row
#
# Starts qeaas-sim, qeaasd and two qeaas-coapd (one per certificate algorithm, credentials from
# `qeaas-coapd gen-credentials`) in a temporary directory, runs the measuring client
# (qeaas-coap/examples/handshake-matrix.rs) over real UDP loopback sockets, and writes
# qeaas-coap/results/handshake-matrix.md and .svg. Release build. Run as root (the frontends
# drop to nobody, as deployed).
set -eu
cd "$(dirname "$0")/.."
runs="${1:-100}"
case "$runs" in ''|*[!0-9]*) echo "usage: $0 [RUNS]" >&2; exit 64;; esac
[ "$(id -u)" = 0 ] || { echo "$0: run as root (qeaas-coapd drops from root to nobody)" >&2; exit 77; }

cargo build --release --locked -p qeaas --bins
cargo build --release --locked -p qeaas-coap --bins --example handshake-matrix
bin=target/release
out=qeaas-coap/results
mkdir -p "$out"

dir=$(mktemp -d)
chmod 755 "$dir"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

wait_for() { # seconds, command...
    n=$(( $1 * 10 )); shift
    while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
    return 1
}

"$bin/qeaas-sim" --fifo "$dir/qrandom0" --rate 4M >/dev/null 2>&1 &
pids="$pids $!"
wait_for 10 test -p "$dir/qrandom0" || { echo "no simulator pipe" >&2; exit 1; }
cat >"$dir/qeaasd.toml" <<CFG
[socket]
path = "$dir/entropy.sock"
mode = 0o666

[kernel]
enable = false

[[source]]
name = "qsim"
kind = "quantis"
path = "$dir/qrandom0"
retry_secs = 1
CFG
"$bin/qeaasd" -c "$dir/qeaasd.toml" run --allow-root-worker 2>"$dir/qeaasd.log" &
pids="$pids $!"
wait_for 20 test -S "$dir/entropy.sock" || { cat "$dir/qeaasd.log" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for algo in ecdsa-p256 ml-dsa-44; do
    "$bin/qeaas-coapd" gen-credentials --out "$dir/$algo" --clients 1 --algo "$algo" >/dev/null
    port=$(free_port)
    eval "port_$(echo $algo | tr - _)=$port"
    { printf 'listen = "127.0.0.1:%s"\nsocket = "%s"\nuser = "nobody"\n' "$port" "$dir/entropy.sock"
      cat "$dir/$algo/coapd.toml"; } >"$dir/coapd-$algo.toml"
    "$bin/qeaas-coapd" -c "$dir/coapd-$algo.toml" 2>"$dir/coapd-$algo.log" &
    pids="$pids $!"
    wait_for 10 grep -q "serving CoAP over DTLS" "$dir/coapd-$algo.log" || { cat "$dir/coapd-$algo.log" >&2; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$bin/examples/handshake-matrix" \
    --ecdsa "127.0.0.1:$port_ecdsa_p256" --ecdsa-ca "$dir/ecdsa-p256/ca.pem" \
    --mldsa "127.0.0.1:$port_ml_dsa_44" --mldsa-ca "$dir/ml-dsa-44/ca.pem" \
    --psk-identity client-1 --psk-key-file "$dir/ecdsa-p256/client-1.psk" \
    --runs "$runs" --md "$out/handshake-matrix.md" --svg "$out/handshake-matrix.svg"
{
    echo
    echo "Measured $(date -u +%Y-%m-%d) with \`scripts/handshake-matrix.sh $runs\` (release build) on $(nproc) cores, $(uname -sr); load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows up as sd and p99)."
} >>"$out/handshake-matrix.md"
echo "wrote $out/handshake-matrix.md and $out/handshake-matrix.svg" >&2
