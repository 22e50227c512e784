#!/usr/bin/env bash
# Requests/s for 32-byte CoAP GETs on established DTLS 1.2 PSK sessions: qeaas-coapd (in front of
# qeaasd and a simulated QRNG) beside libcoap's coap-server-gnutls (Debian libcoap3-bin, PSK,
# /example_data holding 32 bytes), in one run, under the same load from the same generator
# (qeaas-coap/examples/coap-load.rs, on our wolfSSL build).
#   scripts/bench-coap.sh [seconds-per-run] [sessions] [pipeline] [rounds]   (default 10 64 4 2)
# Each round measures both servers one after the other (alternating which goes first).
# A measurement script, not a test: CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || exec sudo -E "$0" "$@"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
SECS=${1:-10}
SESSIONS=${2:-64}
PIPELINE=${3:-4}
ROUNDS=${4:-2}
for v in "$SECS" "$SESSIONS" "$PIPELINE" "$ROUNDS"; do
    case $v in '' | *[!0-9]*) echo "usage: $0 [seconds] [sessions] [pipeline] [rounds]" >&2; exit 64 ;; esac
done
DIR=$(mktemp -d /tmp/qeaas-bench-coap.XXXXXX)
chmod 755 "$DIR" # the frontend runs as nobody and must reach the daemon's socket in here
ID=bench-1
KEY=bench-key-0123456789
QPORT=${QEAAS_BENCH_COAP_PORT:-25684}
LPORT=$((QPORT + 10)) # libcoap listens for DTLS on -p + 1

command -v coap-server-gnutls >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcoap3-bin >/dev/null; }

if ! out=$(cargo build --release --locked --bins --example coap-load -p qeaas -p qeaas-coap 2>&1); then echo "$out" >&2; exit 1; fi
T=${CARGO_TARGET_DIR:-target}/release

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The simulator at the PCIe-240M's rate, so that the source does not bound the figure.
$T/qeaas-sim --fifo "$DIR/qrandom0" --rate 30M 2>/dev/null & pids+=($!)
for _ in $(seq 50); do [ -p "$DIR/qrandom0" ] && break; sleep 0.1; done
cat >"$DIR/qeaasd.toml" <<CFG
[socket]
path = "$DIR/entropy.sock"
mode = 0o666
[metrics]
enable = false
[kernel]
enable = false
[[source]]
name = "qsim"
kind = "quantis"
path = "$DIR/qrandom0"
CFG
$T/qeaasd -c "$DIR/qeaasd.toml" run --allow-root-worker 2>"$DIR/qeaasd.log" & DPID=$!; pids+=($DPID)
for _ in $(seq 100); do [ -S "$DIR/entropy.sock" ] && break; sleep 0.1; done
[ -S "$DIR/entropy.sock" ] || { echo "qeaasd did not come up:" >&2; cat "$DIR/qeaasd.log" >&2; exit 1; }

cat >"$DIR/coapd.toml" <<CFG
listen = "127.0.0.1:$QPORT"
socket = "$DIR/entropy.sock"
user = "nobody"
max_sessions = 1024
max_handshakes = 64
[[psk]]
identity = "$ID"
key = "$KEY"
CFG
QEAAS_LOG=info $T/qeaas-coapd -c "$DIR/coapd.toml" 2>"$DIR/coapd.log" & QPID=$!; pids+=($QPID)
# libcoap: PSK, dynamic resources off, quiet; listens on UDP $((LPORT - 1)) and DTLS $LPORT.
coap-server-gnutls -A 127.0.0.1 -p $((LPORT - 1)) -k "$KEY" -v 0 2>"$DIR/libcoap.log" & LPID=$!; pids+=($LPID)
for _ in $(seq 100); do grep -q "serving CoAP" "$DIR/coapd.log" && break; sleep 0.1; done
sleep 1
# libcoap's example resource returns what was last PUT: 32 random bytes.
head -c 32 /dev/urandom >"$DIR/32"
coap-client-gnutls -B 5 -u "$ID" -k "$KEY" -m put -f "$DIR/32" "coaps://127.0.0.1:$LPORT/example_data"
coap-client-gnutls -B 5 -u "$ID" -k "$KEY" -o "$DIR/got" "coaps://127.0.0.1:$LPORT/example_data"
cmp -s "$DIR/32" "$DIR/got" || { echo "libcoap did not serve 32 bytes" >&2; exit 1; }

ticks() { # CPU ticks (utime + stime) of the given pids, summed
    local t=0 p f
    for p in "$@"; do f=$(cut -d')' -f2 "/proc/$p/stat"); set -- $f; t=$((t + ${12} + ${13})); done
    echo "$t"
}
load() { # label port path pids-whose-CPU-counts...
    local label=$1 port=$2 path=$3 line t0 t1
    shift 3
    t0=$(ticks "$@")
    line=$($T/examples/coap-load --label "$label" --target "127.0.0.1:$port" --path "$path" --id "$ID" --key "$KEY" \
        --sessions "$SESSIONS" --pipeline "$PIPELINE" --seconds "$SECS" --expect-len 32)
    t1=$(ticks "$@")
    # Server-side CPU per answered request (qeaas: frontend + daemon), in microseconds.
    echo "$line" | awk -F'\t' -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
        '{ split($4, a, "="); printf "%s\tserver_cpu_s=%.2f\tcpu_us_per_req=%.1f\n", $0, t / hz, t / hz * 1e6 / a[2] }'
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d" " -f1-3 /proc/loadavg); ${SECS}s per run, $SESSIONS sessions x $PIPELINE in flight, $ROUNDS rounds"
res="$DIR/results"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        load qeaas-coapd $QPORT entropy "$QPID" "$DPID" | tee -a "$res"
        load libcoap $LPORT example_data "$LPID" | tee -a "$res"
    else
        load libcoap $LPORT example_data "$LPID" | tee -a "$res"
        load qeaas-coapd $QPORT entropy "$QPID" "$DPID" | tee -a "$res"
    fi
done
# Mean req/s per server over the rounds, and the ratio.
awk -F'\t' '{ split($5, a, "="); s[$1] += a[2]; n[$1]++ }
    END { q = s["qeaas-coapd"] / n["qeaas-coapd"]; l = s["libcoap"] / n["libcoap"];
          printf "mean req/s: qeaas-coapd %.0f, libcoap %.0f, ratio %.2f\n", q, l, q / l }' "$res"
awk -F'\t' '{ split($12, a, "="); s[$1] += a[2]; n[$1]++ }
    END { q = s["qeaas-coapd"] / n["qeaas-coapd"]; l = s["libcoap"] / n["libcoap"];
          printf "mean server CPU us/request: qeaas-coapd (+ qeaasd) %.1f, libcoap %.1f, ratio %.2f\n", q, l, l / q }' "$res"
