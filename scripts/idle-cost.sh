#!/usr/bin/env bash
# Idle cost of qeaasd beside Debian's rngd (rng-tools5), on identical simulated sources, over the
# same wall-clock window: CPU seconds (utime + stime from /proc) and peak RSS (VmHWM).
#   scripts/idle-cost.sh [window-seconds]      (default 180)
# "Idle": nobody reads the local socket; both daemons feed the kernel as they see fit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || exec sudo -E "$0" "$@"
WINDOW=${1:-180}
command -v rngd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rng-tools5 >/dev/null; }
cargo build --release --locked --bins 2>&1 | tail -1
DIR=/run/qeaas-idle
rm -rf "$DIR"; mkdir -p "$DIR"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

# Two identical simulated sources (same rate), one per daemon.
target/release/qeaas-sim --fifo "$DIR/q-qeaasd" --rate 4M --seed 1 2>/dev/null & pids+=($!)
target/release/qeaas-sim --fifo "$DIR/q-rngd" --rate 4M --seed 1 2>/dev/null & pids+=($!)
for _ in $(seq 50); do [ -p "$DIR/q-qeaasd" ] && [ -p "$DIR/q-rngd" ] && break; sleep 0.1; done

PORT=19864
cat > "$DIR/qeaasd.toml" <<CFG
[kernel]
interval_secs = 60
feed_uncredited = true
[socket]
path = "$DIR/entropy.sock"
[metrics]
listen = "127.0.0.1:$PORT"
[[source]]
name = "q"
kind = "quantis"
path = "$DIR/q-qeaasd"
CFG
target/release/qeaasd -c "$DIR/qeaasd.toml" run 2>"$DIR/qeaasd.log" & QPID=$!; pids+=($QPID)
rngd -f -r "$DIR/q-rngd" -o /dev/random -p "$DIR/rngd.pid" 2>"$DIR/rngd.log" & RPID=$!; pids+=($RPID)
sleep 10   # warm-up: start-up tests, first fills
QWORKER=$(cat /proc/$QPID/task/$QPID/children | awk '{print $1}')
TCK=$(getconf CLK_TCK)
cpu() { awk -v t="$TCK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
read_q() { curl -s "127.0.0.1:$PORT/metrics" | awk '$1=="qeaas_source_read_bytes_total{source=\"q\"}" {print $2}'; }

q0=$(echo "$(cpu $QPID) + $(cpu $QWORKER)" | bc); r0=$(cpu $RPID); qb0=$(read_q)
echo "measuring for $WINDOW s ..."
sleep "$WINDOW"
q1=$(echo "$(cpu $QPID) + $(cpu $QWORKER)" | bc); r1=$(cpu $RPID); qb1=$(read_q)
qcpu=$(echo "$q1 - $q0" | bc); rcpu=$(echo "$r1 - $r0" | bc)
qrss=$(( $(hwm $QPID) + $(hwm $QWORKER) )); rrss=$(hwm $RPID)
echo
printf '%-28s %14s %12s %16s\n' "daemon (window ${WINDOW} s)" "CPU seconds" "CPU %" "peak RSS (KiB)"
printf '%-28s %14s %12s %16s\n' "qeaasd (supervisor+worker)" "$qcpu" "$(echo "scale=3; 100*$qcpu/$WINDOW" | bc)" "$qrss"
printf '%-28s %14s %12s %16s\n' "rngd ($(rngd --version | head -1))" "$rcpu" "$(echo "scale=3; 100*$rcpu/$WINDOW" | bc)" "$rrss"
echo "qeaasd read $(( ${qb1%.*} - ${qb0%.*} )) source bytes in the window (idle health probe)"
echo "kernel feeds by qeaasd: $(curl -s 127.0.0.1:$PORT/metrics | awk '$1=="qeaas_kernel_ioctls_total{ioctl=\"RNDADDENTROPY\"}" {print $2}')"
