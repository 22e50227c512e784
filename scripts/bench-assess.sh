#!/bin/bash
# Speed of `qeaas assess` against NIST's `ea_non_iid` (SP800-90B_EntropyAssessment) on the same
# 1,000,000 samples, side by side in one run, each pinned to the same core.
#
#   scripts/bench-assess.sh PATH/TO/SP800-90B_EntropyAssessment [ROUNDS] [FILE BITS]
#
# Without FILE, the data set is the simulator's 8-bit output from tests/assess.rs (`sim8`) and,
# as a second row, its 1-bit one (`sim1`). Both tools get identical files and compute the same
# estimates (tests/assess.rs checks they agree); times are wall clock per run, median of ROUNDS
# (default 3), with the ratio of the medians. Building NIST's tool needs the Debian packages
# listed in scripts/assess-reference.sh.
set -euo pipefail

ref="${1:?usage: $0 PATH/TO/SP800-90B_EntropyAssessment [ROUNDS] [FILE BITS]}"
ref="$(cd "$ref" && pwd)"
rounds="${2:-3}"
cd "$(dirname "$0")/.."

[ -x "$ref/cpp/ea_non_iid" ] || make -C "$ref/cpp" non_iid
cargo build --release --locked --bin qeaas
qeaas="$PWD/target/release/qeaas"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ $# -ge 4 ]; then
    cp "$3" "$work/data.bin"
    sets=("data.bin $4")
else
    QEAAS_ASSESS_OUT="$work" cargo test --release --locked --test assess -- --ignored --exact \
        write_datasets >/dev/null
    sets=("sim8.bin 8" "sim1.bin 1")
fi

cpu="${BENCH_CPU:-1}"
pin=()
if command -v taskset >/dev/null && taskset -c "$cpu" true 2>/dev/null; then
    pin=(taskset -c "$cpu")
fi

# Seconds (wall clock) of one run of "$@".
elapsed() {
    local t0 t1
    t0=$(date +%s.%N)
    "${pin[@]}" "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), pinned: ${pin[*]:-no}"
echo "ea_non_iid: $("$ref/cpp/ea_non_iid" --version | head -1) ($(git -C "$ref" rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%-10s %5s %14s %14s %8s\n' data bits "qeaas s" "ea_non_iid s" ratio
for s in "${sets[@]}"; do
    read -r f bits <<<"$s"
    ours=() theirs=()
    for _ in $(seq "$rounds"); do
        ours+=("$(elapsed "$qeaas" assess --bits "$bits" --json "$work/$f")")
        theirs+=("$(cd "$work" && elapsed "$ref/cpp/ea_non_iid" -i -a -q "$f" "$bits")")
    done
    o=$(printf '%s\n' "${ours[@]}" | median)
    t=$(printf '%s\n' "${theirs[@]}" | median)
    printf '%-10s %5s %14.2f %14.2f %7.1fx\n' "${f%.bin}" "$bits" "$o" "$t" "$(echo "$t / $o" | bc -l)"
done
