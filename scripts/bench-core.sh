#!/bin/sh
# Throughput of the qeaas-core pipeline against rngtest and plain BLAKE2s, on one core.
#
#   scripts/bench-core.sh            # 64 MiB, 5 runs, pinned to CPU 1
#   QEAAS_BENCH_MIB=256 QEAAS_BENCH_RUNS=7 BENCH_CPU=0 scripts/bench-core.sh
#
# Installs rng-tools5 (for /usr/bin/rngtest) when it is missing and we are root on Debian.
set -eu

cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/rngtest ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench-core: installing rng-tools5 for rngtest" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y rng-tools5 >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y rng-tools5 >&2; }
    else
        echo "bench-core: /usr/bin/rngtest missing; install rng-tools5 (the rngtest rows will be n/a)" >&2
    fi
fi

# Build first, unpinned, so that only the measurement runs on the pinned core.
cargo bench -p qeaas-core --bench pipeline --no-run

cpu="${BENCH_CPU:-1}"
if command -v taskset >/dev/null 2>&1 && taskset -c "$cpu" true 2>/dev/null; then
    exec taskset -c "$cpu" cargo bench -p qeaas-core --bench pipeline "$@"
else
    echo "bench-core: taskset -c $cpu unavailable; running unpinned" >&2
    exec cargo bench -p qeaas-core --bench pipeline "$@"
fi
