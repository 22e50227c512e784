#!/usr/bin/env bash
# The pollen protocol under load: qeaas-httpsd (in front of qeaasd and a simulated Quantis)
# against Debian's pollen (reading /dev/urandom), side by side in one run, with wrk.
#
#   scripts/bench-https.sh                     # 10 s per row, 32 connections
#   BENCH_SECS=30 BENCH_CONNS=64 scripts/bench-https.sh
#
# Every request is the same pollinate-style POST (challenge=<128 hex>); every answer carries 64
# fresh bytes (pollen's default -bytes 64). Both servers are measured twice: plain HTTP and
# HTTPS (TLS 1.3, ECDSA P-256 certificate, X25519: wrk uses Debian's OpenSSL 3.0). The servers
# (pollen; qeaas-sim + qeaasd + qeaas-httpsd) share CPU 1, wrk runs on CPU 0, one at a time.
# Installs wrk and pollen with apt when missing (root). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${BENCH_SECS:-10}"
CONNS="${BENCH_CONNS:-32}"
SIM_RATE="${BENCH_SIM_RATE:-32M}"
SERVER_CPU="${BENCH_SERVER_CPU:-1}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-0}"

[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (pollen needs a private mount namespace)" >&2; exit 77; }
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v pollen >/dev/null || need+=(pollen)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> apt-get install ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

echo "==> cargo build --release" >&2
cargo build --release --locked -q -p qeaas --bins -p qeaas-https
T=target/release

W=$(mktemp -d /tmp/qeaas-bench-https.XXXXXX)
chmod 755 "$W"
PIDS=()
# Each PID is the program itself (taskset and unshare exec it, pollen.sh execs pollen); its
# direct children (qeaasd's worker, pollen's syslog sink) are stopped by parent pid.
cleanup() {
  for p in "${PIDS[@]}"; do
    pkill -TERM -P "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# qeaas: simulator, daemon, two frontends (TLS and plain loopback HTTP).
taskset -c "$SERVER_CPU" $T/qeaas-sim --fifo "$W/qrandom0" --rate "$SIM_RATE" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ -p "$W/qrandom0" ] && break; sleep 0.1; done
MPORT=$(free_port)
cat >"$W/qeaasd.toml" <<EOF
[kernel]
enable = false
[socket]
path = "$W/entropy.sock"
mode = 0o666
[metrics]
listen = "127.0.0.1:$MPORT"
[[source]]
name = "qsim"
kind = "quantis"
path = "$W/qrandom0"
EOF
QEAAS_LOG=warn taskset -c "$SERVER_CPU" $T/qeaasd -c "$W/qeaasd.toml" run --allow-root-worker 2>"$W/qeaasd.log" & PIDS+=($!)
$T/qeaas-httpsd gen-cert --dir "$W/certs" --alg ecdsa-p256 --san 127.0.0.1
Q_TLS=$(free_port); Q_PLAIN=$(free_port)
for mode in tls plain; do
  port=$Q_TLS; tls="[tls]
cert = \"$W/certs/server.crt\"
key = \"$W/certs/server.key\""
  [ $mode = plain ] && { port=$Q_PLAIN; tls=""; }
  # wrk's connections all come from 127.0.0.1: no per-address pollen limit for a throughput run
  # (pollen has none either).
  printf 'listen = "127.0.0.1:%s"\nsocket = "%s"\nuser = "nobody"\n[pollen]\nper_address_rate_per_sec = 0.0\n%s\n' "$port" "$W/entropy.sock" "$tls" >"$W/front-$mode.toml"
  QEAAS_LOG=warn taskset -c "$SERVER_CPU" $T/qeaas-httpsd -c "$W/front-$mode.toml" run 2>"$W/front-$mode.log" & PIDS+=($!)
done

# pollen logs to syslog and exits without one: give it a private /run with a discarding
# /run/log socket (Go's log/syslog tries /dev/log, /var/run/syslog, /var/run/log).
P_HTTP=$(free_port); P_HTTPS=$(free_port)
cat >"$W/pollen.sh" <<'EOF'
mount -t tmpfs tmpfs /run
python3 -c '
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("/run/log")
while True: s.recv(65536)
' &
for _ in $(seq 50); do [ -S /run/log ] && break; sleep 0.1; done
exec pollen "$@"
EOF
taskset -c "$SERVER_CPU" unshare -m sh "$W/pollen.sh" -device /dev/urandom -http-port "$P_HTTP" -https-port "$P_HTTPS" \
  -cert "$W/certs/server.crt" -key "$W/certs/server.key" >"$W/pollen.log" 2>&1 & PIDS+=($!)

CHALLENGE=$(head -c 64 /dev/urandom | sha512sum | awk '{print $1}')
EXPECT=$(printf %s "$CHALLENGE" | sha512sum | awk '{print $1}')
cat >"$W/post.lua" <<EOF
wrk.method = "POST"
wrk.body = "challenge=$CHALLENGE"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF

declare -A URL=(
  [pollen_http]="http://127.0.0.1:$P_HTTP/"  [qeaas_http]="http://127.0.0.1:$Q_PLAIN/"
  [pollen_https]="https://127.0.0.1:$P_HTTPS/" [qeaas_https]="https://127.0.0.1:$Q_TLS/"
)
# Every server must answer the exchange correctly before it is measured.
for k in pollen_http qeaas_http pollen_https qeaas_https; do
  ok=""
  for _ in $(seq 100); do
    got=$(curl -s --cacert "$W/certs/ca.crt" --data "challenge=$CHALLENGE" "${URL[$k]}" | head -n1 || true)
    [ "$got" = "$EXPECT" ] && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "$k did not answer the pollen exchange correctly" >&2; cat "$W"/*.log >&2; exit 1; }
done

# wrk prints latencies like 1.23ms, 456.00us, 1.02s: in ms.
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else if (v ~ /s$/) printf "%.2f", v*1000; else print "n/a" }'; }

served_before=$(curl -s "127.0.0.1:$MPORT/metrics" | awk '/^qeaas_served_bytes_total/ {s+=$2} END {print s+0}')
printf '\n%-8s %-7s %12s %10s %10s %8s\n' "server" "proto" "requests/s" "p50 ms" "p99 ms" "errors"
for proto in http https; do
  for srv in pollen qeaas; do
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$W/post.lua" "${URL[${srv}_$proto]}")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {for(i=4;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i} END {print n+0}' <<<"$out")
    printf '%-8s %-7s %12s %10s %10s %8s\n' "$srv" "$proto" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$errs"
  done
done
served_after=$(curl -s "127.0.0.1:$MPORT/metrics" | awk '/^qeaas_served_bytes_total/ {s+=$2} END {print s+0}')
echo
echo "wrk -t1 -c$CONNS -d${SECS}s on CPU $CLIENT_CPU; servers on CPU $SERVER_CPU; qeaas-sim at $SIM_RATE B/s"
echo "qeaasd served $((served_after - served_before)) pool bytes to the frontend during the run (64 per answer)"
