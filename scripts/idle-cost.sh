#!/usr/bin/env bash
# Idle cost of qeaasd beside Debian's rngd (rng-tools5), on identical simulated sources, over the
# same wall-clock window: CPU seconds (utime + stime from /proc/PID/stat, plus the nanosecond
# schedstat sum over live threads as a finer cross-check) and peak RSS (VmHWM).
#   scripts/idle-cost.sh [window-seconds]      (default 180; QEAAS_IDLE_PORT sets the metrics port)
# "Idle": nobody reads the local socket; both daemons feed the kernel as they see fit.
# A measurement script, not a test: CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || exec sudo -E "$0" "$@"
WINDOW=${1:-180}
WARMUP=10
PORT=${QEAAS_IDLE_PORT:-19864}
DIR=/run/qeaas-idle
case $WINDOW in '' | *[!0-9]*) echo "usage: $0 [window-seconds]" >&2; exit 64 ;; esac

command -v rngd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rng-tools5 >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }

# One measurement at a time: a second one would share the directory, the port and the two cores.
exec 9>/run/qeaas-idle.lock
flock -n 9 || { echo "another idle-cost run holds /run/qeaas-idle.lock" >&2; exit 75; }

if ! out=$(cargo build --release --locked --bins 2>&1); then echo "$out" >&2; exit 1; fi
echo "$out" | tail -1

rm -rf "$DIR"; mkdir -p "$DIR"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two identical simulated sources (same seed, same rate), one per daemon.
target/release/qeaas-sim --fifo "$DIR/q-qeaasd" --rate 4M --seed 1 2>/dev/null 9>&- & pids+=($!)
target/release/qeaas-sim --fifo "$DIR/q-rngd" --rate 4M --seed 1 2>/dev/null 9>&- & pids+=($!)
for _ in $(seq 50); do [ -p "$DIR/q-qeaasd" ] && [ -p "$DIR/q-rngd" ] && break; sleep 0.1; done

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
target/release/qeaasd -c "$DIR/qeaasd.toml" run --allow-root-worker 2>"$DIR/qeaasd.log" 9>&- & QPID=$!; pids+=($QPID)
# The FIFO only: no RDRAND (this CPU may have it), no TPM.
rngd -f -r "$DIR/q-rngd" -o /dev/random --no-drng=1 --no-tpm=1 -p "$DIR/rngd.pid" 2>"$DIR/rngd.log" 9>&- & RPID=$!; pids+=($RPID)
sleep "$WARMUP"   # warm-up: start-up tests, first fills

alive() { kill -0 "$1" 2>/dev/null || { echo "$2 died during warm-up; its log:" >&2; cat "$3" >&2; exit 1; }; }
alive $QPID qeaasd "$DIR/qeaasd.log"
alive $RPID rngd "$DIR/rngd.log"
QWORKER=$(awk '{print $1}' /proc/$QPID/task/$QPID/children)
[ -n "$QWORKER" ] || { echo "qeaasd has no worker" >&2; cat "$DIR/qeaasd.log" >&2; exit 1; }
pids+=("$QWORKER")

TCK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }                 # whole process, dead threads too
ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }  # live threads only
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
rchar() { awk '/^rchar/ { print $2 }' "/proc/$1/io"; }
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v k="$1" '$1 == k { printf "%d", $2 }'; }
READ='qeaas_source_read_bytes_total{source="q"}'
FEEDS='qeaas_kernel_ioctls_total{ioctl="RNDADDENTROPY"}'
snap() { echo "$(ticks $QPID) $(ticks $QWORKER) $(ticks $RPID) $(ns $QPID) $(ns $QWORKER) $(ns $RPID)" \
    "$(rchar $QWORKER) $(rchar $RPID) $(metric "$READ") $(metric "$FEEDS")"; }

read -r qs0 qw0 r0 qsn0 qwn0 rn0 qio0 rio0 qb0 qf0 <<<"$(snap)"
echo "warmed up ${WARMUP} s; measuring for $WINDOW s ..."
sleep "$WINDOW"
read -r qs1 qw1 r1 qsn1 qwn1 rn1 qio1 rio1 qb1 qf1 <<<"$(snap)"
rwchan=$(cat /proc/$RPID/wchan 2>/dev/null || echo "?")

row() { # name version ticks ns rss
    awk -v n="$1" -v v="$2" -v t="$3" -v ns="$4" -v rss="$5" -v tck="$TCK" -v w="$WINDOW" 'BEGIN {
        printf "%-20s %-14s %10.2f %10.3f %9.4f %10d\n", n, v, t / tck, ns / 1e6, 100 * ns / 1e9 / w, rss }'
}
QV=$(target/release/qeaasd --version | awk '{ print $2 }')
RV="5 ($(dpkg-query -W -f '${Version}' rng-tools5 2>/dev/null || echo '?'))"
qsr=$(hwm $QPID); qwr=$(hwm $QWORKER); rr=$(hwm $RPID)
echo
printf '%-20s %-14s %10s %10s %9s %10s\n' "daemon" "version" "CPU s" "CPU ms(ns)" "CPU %" "peak RSS KiB"
row "qeaasd supervisor" "$QV" $((qs1 - qs0)) $((qsn1 - qsn0)) "$qsr"
row "qeaasd worker" "$QV" $((qw1 - qw0)) $((qwn1 - qwn0)) "$qwr"
row "qeaasd total" "$QV" $((qs1 - qs0 + qw1 - qw0)) $((qsn1 - qsn0 + qwn1 - qwn0)) $((qsr + qwr))
row "rngd" "$RV" $((r1 - r0)) $((rn1 - rn0)) "$rr"
awk -v q=$((qsn1 - qsn0 + qwn1 - qwn0)) -v r=$((rn1 - rn0)) 'BEGIN {
    if (r > 0) printf "CPU ratio qeaasd/rngd (schedstat): %.2f\n", q / r
    else print "CPU ratio qeaasd/rngd: undefined (rngd used no CPU in the window)" }'
echo "window ${WINDOW} s. CPU s: utime+stime at ${TCK} Hz ticks (dead threads included); CPU ms(ns) and CPU % (of one core): schedstat sum over live threads"
echo "bytes read in the window: qeaasd $((qb1 - qb0)) from its source (metric; worker rchar $((qio1 - qio0))), rngd $((rio1 - rio0)) (rchar)"
echo "bytes read since start (rchar): qeaasd worker $qio1, rngd $rio1"
echo "kernel feeds in the window: qeaasd $((qf1 - qf0)) RNDADDENTROPY; rngd wait channel at the end: $rwchan"
