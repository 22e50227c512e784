#!/usr/bin/env bash
# The main job: qeaasd fed by the simulated Quantis (a named pipe and a pseudo-terminal), serving
# every face built so far on loopback: the kernel (mixing with zero credit: simulated data is never
# credited), the local socket, the EGD socket, Prometheus metrics, and OpenSSL drawing through the
# QEAAS provider (openssl-provider/). Shows live what it does.
#   scripts/demo.sh            run until Ctrl-C
#   scripts/demo.sh 20         run 20 seconds, then stop (exit status says whether it worked)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "$0: run this as root (it feeds the kernel with real ioctls)" >&2; exit 77; }
  exec sudo -E "$0" "$@"
fi
scripts/setup-debian.sh >/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
SECONDS_TO_RUN=${1:-0}

echo "==> building (release)"
cargo build --release --locked --workspace 2>&1 | tail -1
BIN=target/release
RUN=/run/qeaas-demo
mkdir -p "$RUN"
LOG=$RUN/qeaasd.log

cleanup() { kill "${HTTPSD:-}" "${COAPD:-}" "${DAEMON:-}" "${SIM:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The worker runs as nobody (config/demo.toml): the simulator gives it the nodes as udev would.
"$BIN/qeaas-sim" --fifo "$RUN/qrandom0" --pty "$RUN/ttyTRNG" --rate 4M --mode 0660 --group nogroup 2>"$RUN/sim.log" &
SIM=$!
for _ in $(seq 50); do [ -p "$RUN/qrandom0" ] && [ -L "$RUN/ttyTRNG" ] && break; sleep 0.1; done
"$BIN/qeaasd" -c config/demo.toml run 2>"$LOG" &
DAEMON=$!
for _ in $(seq 100); do [ -S "$RUN/entropy.sock" ] && break; sleep 0.1; done
[ -S "$RUN/entropy.sock" ] || { echo "qeaasd did not start:"; cat "$LOG"; exit 1; }

# OpenSSL (Debian's 3.0) with the provider in the generator role: every RAND_bytes byte is a pool byte.
cat >"$RUN/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
random = random_sect
providers = provider_sect
[provider_sect]
default = default_sect
qeaas = qeaas_sect
[default_sect]
activate = 1
[qeaas_sect]
module = $PWD/$BIN/libqeaas_provider.so
activate = 1
socket = $RUN/entropy.sock
[random_sect]
random = QEAAS
CNF

# The CoAP/DTLS face: qeaas-coapd on loopback, dropping to nobody, with a fresh PSK for this run.
PSK=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
cat >"$RUN/coapd.toml" <<CONF
listen = "127.0.0.1:5684"
socket = "$RUN/entropy.sock"
user = "nobody"
[[psk]]
identity = "demo-device"
key = "$PSK"
CONF
"$BIN/qeaas-coapd" -c "$RUN/coapd.toml" 2>"$RUN/coapd.log" &
COAPD=$!
# The HTTPS face: qeaas-httpsd on 127.0.0.1:8443 as nobody, an ECDSA certificate from its own CA,
# one API token for this run; pollinate (Debian's pollen client) and curl use it.
rm -rf "$RUN/https" && mkdir -p "$RUN/https"
"$BIN/qeaas-httpsd" gen-cert --dir "$RUN/https" --alg ecdsa-p256 --san localhost --san 127.0.0.1 >/dev/null
TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
cat >"$RUN/httpsd.toml" <<CONF
listen = "127.0.0.1:8443"
socket = "$RUN/entropy.sock"
user = "nobody"
[tls]
cert = "$RUN/https/server.crt"
key = "$RUN/https/server.key"
[[client]]
name = "demo"
token_sha256 = "$(printf %s "$TOKEN" | "$BIN/qeaas-httpsd" hash-token)"
quota_bytes = 1048576
rate_per_sec = 10.0
CONF
"$BIN/qeaas-httpsd" -c "$RUN/httpsd.toml" run 2>"$RUN/httpsd.log" &
HTTPSD=$!
api_get() {
  curl -sf --cacert "$RUN/https/ca.crt" -H "Authorization: Bearer $TOKEN" \
    'https://127.0.0.1:8443/api/v1/entropy?bytes=32' | sed -n 's/.*"entropy":"\([0-9a-f]*\)".*/\1/p' | grep .
}

coap_get() {
  rm -f "$RUN/coap.out"
  coap-client-gnutls -B 5 -m get -u demo-device -k "$PSK" -o "$RUN/coap.out" coaps://127.0.0.1:5684/entropy >/dev/null 2>&1 &&
    [ -s "$RUN/coap.out" ] && od -An -tx1 "$RUN/coap.out" | tr -d ' \n'
}

metric() { curl -s 127.0.0.1:9864/metrics | awk -v k="$1" '$1==k {print $2}'; }
echo "==> qeaasd is up: socket $RUN/entropy.sock, EGD $RUN/egd.sock, metrics http://127.0.0.1:9864/metrics"
echo "    processes:"
sleep 0.5
for p in $(pgrep -f "qeaasd -c config/demo.toml run") $(pgrep -f "qeaasd worker --config config/demo.toml") $COAPD $HTTPSD; do
  printf '      pid %-7s uid %-6s CapEff %s  %s\n' "$p" "$(awk '/^Uid:/ {print $3}' /proc/$p/status)" "$(awk '/CapEff/ {print $2}' /proc/$p/status)" "$(tr '\0' ' ' </proc/$p/cmdline | cut -c1-60)"
done
echo
start=$(date +%s)
ok=1
while :; do
  hex=$("$BIN/qeaas" -s "$RUN/entropy.sock" get -n 32 --hex) || ok=0
  printf '%s  socket:  %s\n' "$(date +%T)" "$hex"
  ossl=$(OPENSSL_CONF=$RUN/openssl.cnf openssl rand -hex 32 2>&1) || ok=0
  printf '          openssl: %s  (openssl rand via the QEAAS provider)\n' "$ossl"
  coap=$(coap_get) || { coap="(failed)"; ok=0; }
  printf '          coaps:   %s  (coap-client-gnutls, DTLS 1.2 PSK, via qeaas-coapd)\n' "$coap"
  api=$(api_get) || { api="(failed)"; ok=0; }
  printf '          https:   %s  (curl, JSON API with a bearer token, via qeaas-httpsd)\n' "$api"
  printf '          sources: quantis-sim=%s truerng-sim=%s | ready %s B | kernel: %s adds, %s bytes, credit %s bits | served %s B\n' \
    "$(curl -s 127.0.0.1:9864/metrics | awk '/^qeaas_source_state\{source="quantis-sim"/ && $2==1 {match($1,/state="[a-z]+"/); print substr($1,RSTART+7,RLENGTH-8)}')" \
    "$(curl -s 127.0.0.1:9864/metrics | awk '/^qeaas_source_state\{source="truerng-sim"/ && $2==1 {match($1,/state="[a-z]+"/); print substr($1,RSTART+7,RLENGTH-8)}')" \
    "$(metric qeaas_ready_bytes)" "$(metric 'qeaas_kernel_ioctls_total{ioctl="RNDADDENTROPY"}')" \
    "$(metric qeaas_kernel_added_bytes_total)" "$(metric qeaas_kernel_credit_total)" \
    "$(curl -s 127.0.0.1:9864/metrics | awk '/^qeaas_served_bytes_total/ {s+=$2} END {print s}')"
  if [ "$SECONDS_TO_RUN" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$SECONDS_TO_RUN" ]; then break; fi
  sleep 2
done
echo
echo "==> pollinate (Debian's pollen client, unmodified) seeding from qeaas-httpsd"
if pollinate --testing --strict -s https://127.0.0.1:8443/ -c "--cacert $RUN/https/ca.crt" >/dev/null 2>&1; then
  echo "pollinate: ok (it verified the server's sha512 of its challenge)"
else
  echo "pollinate: FAILED"; ok=0
fi
echo "==> is OpenSSL really drawing from the pool? (scripts/openssl-check.sh)"
QEAAS_BIN=$BIN/qeaas scripts/openssl-check.sh -c "$RUN/openssl.cnf" || ok=0
echo "==> daemon log (last lines):"; tail -n 5 "$LOG" | sed 's/\x1b\[[0-9;]*m//g'
# Worked if entropy was served and the kernel was fed.
[ "$ok" = 1 ] && [ "$(metric 'qeaas_kernel_ioctls_total{ioctl="RNDADDENTROPY"}')" -ge 1 ]
