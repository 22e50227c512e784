#!/usr/bin/env bash
# RAND_bytes throughput and latency for 16, 32 and 64-byte requests through the QEAAS provider in
# each role, side by side with OpenSSL's default (CTR-DRBG seeded from the OS) in the same run.
#
#   [ROUNDS=3] scripts/bench-openssl.sh [SECONDS_PER_SIZE] [SIM_RATE]     (defaults: 2, 64M)
#
# Builds the provider and qeaasd (release), starts qeaas-sim at SIM_RATE bytes/s on a FIFO and a
# qeaasd reading it (kernel feeding off), compiles openssl-provider/bench/rand_bench.c against
# Debian's libcrypto 3.0 and, when target/openssl-3.5 exists (openssl-provider/scripts/
# build-openssl.sh), against OpenSSL 3.5 too, which adds the `random_provider` role.
# Runs are sequential, single-threaded, interleaved over ROUNDS rounds; the table shows medians;
# "vs default" is calls/s over the default's for the same OpenSSL and size.
set -euo pipefail
secs=${1:-2}
rate=${2:-64M}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --release --bins -p qeaas -q
cargo build --release -p qeaas-openssl-provider -q
target=$(cargo metadata --format-version=1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rel=$target/release
module=$rel/libqeaas_provider.so

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$rel/qeaas-sim" --fifo "$work/qrandom0" --rate "$rate" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -p "$work/qrandom0" ] && break; sleep 0.1; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/qeaasd.toml" <<CONF
[socket]
path = "$work/entropy.sock"
mode = 0o666

[metrics]
listen = "127.0.0.1:$port"

[kernel]
enable = false

[[source]]
name = "qsim"
kind = "quantis"
path = "$work/qrandom0"
CONF
QEAAS_LOG=warn "$rel/qeaasd" -c "$work/qeaasd.toml" run --allow-root-worker 2>"$work/qeaasd.log" &
pids+=($!)
for _ in $(seq 200); do "$rel/qeaas" --socket "$work/entropy.sock" my-stats >/dev/null 2>&1 && break; sleep 0.1; done
"$rel/qeaas" --socket "$work/entropy.sock" my-stats >/dev/null || { cat "$work/qeaasd.log"; exit 1; }
# Let the daemon pass its start-up tests and fill its ready queue.
sleep 3

conf() { # conf NAME RANDOM_LINE
    local f=$work/$1.cnf
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        # random before providers (OpenSSL 3.5 random_provider; see the provider's examples)
        [ -n "$2" ] && echo "random = random_sect"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        echo "default = default_sect"
        [ -n "$2" ] && echo "qeaas = qeaas_sect"
        echo "[default_sect]"
        echo "activate = 1"
        if [ -n "$2" ]; then
            echo "[qeaas_sect]"
            echo "module = $module"
            echo "activate = 1"
            echo "socket = $work/entropy.sock"
            echo "[random_sect]"
            echo "$2"
        fi
    } >"$f"
    echo "$f"
}

results=$work/results.txt
runs=()
add() { runs+=("$1|$2|$3"); } # add LABEL BENCH CONF

cc -O2 -o "$work/bench30" openssl-provider/bench/rand_bench.c -lcrypto
v30=$(openssl version | awk '{print $2}')
add "$v30:default" "$work/bench30" "$(conf default "")"
add "$v30:seed" "$work/bench30" "$(conf seed "seed = QEAAS")"
add "$v30:random" "$work/bench30" "$(conf random "random = QEAAS")"

o35=$target/openssl-3.5
if [ -f "$o35/lib/libcrypto.a" ]; then
    cc -O2 -I"$o35/include" -o "$work/bench35" openssl-provider/bench/rand_bench.c "$o35/lib/libcrypto.a" -ldl -pthread
    v35=$("$o35/bin/openssl" version | awk '{print $2}')
    add "$v35:default" "$work/bench35" "$(conf default "")"
    add "$v35:seed" "$work/bench35" "$(conf seed "seed = QEAAS")"
    add "$v35:random" "$work/bench35" "$(conf random "random = QEAAS")"
    add "$v35:random_provider" "$work/bench35" "$(conf rp "random_provider = qeaas")"
fi

# Rounds interleave the configurations so that drift (other load on shared cores) hits them
# alike; the table shows the median round. After a run that drained the daemon, give it time to
# refill its queue before the next one.
for round in $(seq "$rounds"); do
    for r in "${runs[@]}"; do
        IFS='|' read -r label bench cnf <<<"$r"
        OPENSSL_CONF=$cnf "$bench" "$label" "$secs" 16 32 64 >>"$results"
        case $label in *:random*) sleep 2 ;; esac
    done
done

served=$("$rel/qeaas" --socket "$work/entropy.sock" my-stats)
echo "RAND_bytes, one thread, ${secs} s per size, median of $rounds interleaved rounds; qeaas-sim at $rate B/s; $(nproc) CPUs; qeaasd served $served bytes"
python3 - "$results" <<'PY'
import sys
from statistics import median
runs = {}
order = []
for l in open(sys.argv[1]):
    if not l.strip():
        continue
    label, size, cps, mbs, p50, p99 = l.split()
    key = (label, size)
    if key not in runs:
        order.append(key)
    runs.setdefault(key, []).append((float(cps), float(mbs), float(p50), float(p99)))
med = {k: [median(c) for c in zip(*v)] for k, v in runs.items()}
print("| OpenSSL | role | bytes | calls/s | MB/s | p50 ns | p99 ns | vs default |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for label, size in order:
    ver, role = label.split(":")
    cps, mbs, p50, p99 = med[(label, size)]
    ratio = cps / med[(f"{ver}:default", size)][0]
    print(f"| {ver} | {role} | {size} | {cps:,.0f} | {mbs:.1f} | {p50:.0f} | {p99:.0f} | {ratio:.2f} |")
PY
