#!/bin/bash
# Speed of `qeaas assess` against NIST's `ea_non_iid` (SP800-90B_EntropyAssessment) on the same
# 1,000,000 samples, side by side in one run, each pinned to the same core.
#
#   scripts/bench-assess.sh PATH/TO/SP800-90B_EntropyAssessment [ROUNDS] [FILE BITS]
#
# Without FILE, the data set is the simulator's 8-bit output from tests/assess.rs (`sim8`) and,
# as a second row, its 1-bit one (`sim1`). Both tools get identical files and compute the same
# estimates (tests/assess.rs checks they agree). Each run is timed by CPU time (user + system, all
# threads: what the work costs, whatever else the machine is doing) and wall clock; the figures
# are medians of ROUNDS (default 3), the ratio that of the CPU medians. Building NIST's tool needs
# the Debian packages listed in scripts/assess-reference.sh.
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

# "CPU wall" seconds of one run of "$@" (CPU = user + system of the process and its threads).
elapsed() {
    local TIMEFORMAT='%U %S %R' t
    t=$( { time "${pin[@]}" "$@" >/dev/null 2>&1; } 2>&1 | tail -1)
    echo "$t" | awk '{printf "%.3f %.3f\n", $1 + $2, $3}'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), pinned: ${pin[*]:-no}"
echo "ea_non_iid: $("$ref/cpp/ea_non_iid" --version | head -1) ($(git -C "$ref" rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%-10s %5s %18s %18s %12s\n' data bits "qeaas CPU/wall s" "ea_non_iid CPU/wall" "ratio (CPU)"
for s in "${sets[@]}"; do
    read -r f bits <<<"$s"
    ours=() theirs=()
    for _ in $(seq "$rounds"); do
        ours+=("$(elapsed "$qeaas" assess --bits "$bits" --json "$work/$f")")
        theirs+=("$(cd "$work" && elapsed "$ref/cpp/ea_non_iid" -i -a -q "$f" "$bits")")
    done
    oc=$(printf '%s\n' "${ours[@]}" | awk '{print $1}' | median)
    ow=$(printf '%s\n' "${ours[@]}" | awk '{print $2}' | median)
    tc=$(printf '%s\n' "${theirs[@]}" | awk '{print $1}' | median)
    tw=$(printf '%s\n' "${theirs[@]}" | awk '{print $2}' | median)
    printf '%-10s %5s %8.2f / %7.2f %8.2f / %7.2f %11.1fx\n' "${f%.bin}" "$bits" "$oc" "$ow" "$tc" "$tw" \
        "$(echo "$tc / $oc" | bc -l)"
done
