#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer via cargo-fuzz) of every target in fuzz/Cargo.toml.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default 600 s (10 minutes) each, all targets
#   scripts/fuzz.sh --merge [TARGET...]                 minimise what runs found into fuzz/corpus/
#
# Seeds come from fuzz/corpus/<target>/ (kept in the repo); new inputs of a run go to
# target/fuzz-runs/<target>/ so a run never dirties the checkout. A crash, a panic, a timeout or
# a leak fails the script and leaves the input in fuzz/artifacts/<target>/.
# Needs a nightly toolchain for libFuzzer's -Z flags; on a stable-only machine it uses stable
# with RUSTC_BOOTSTRAP=1, which allows the same flags.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

merge=0
if [ "${1:-}" = "--merge" ]; then merge=1; shift; secs=0
else
  secs=${1:-600}; shift || true
  case "$secs" in ''|*[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...] | --merge [TARGET...]" >&2; exit 64;; esac
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz (once)"
  cargo install --locked -q cargo-fuzz@0.13.1
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | tail -n +2)
# One build for all targets; -O: optimised with debug assertions, as libFuzzer's docs advise.
"${fuzz[@]}" build -O --fuzz-dir fuzz
failed=()
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$t; mkdir -p "$seeds" "fuzz/artifacts/$t"
  if [ "$merge" = 1 ]; then
    echo "==> merge $t into $seeds"
    "${fuzz[@]}" cmin -O --fuzz-dir fuzz "$t" "$seeds" -- "target/fuzz-runs/$t"
    continue
  fi
  runs=target/fuzz-runs/$t; mkdir -p "$runs"
  echo "==> fuzz $t for ${secs}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or an unbounded allocation.
  if ! "${fuzz[@]}" run -O --fuzz-dir fuzz "$t" "$runs" "$seeds" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" 2>"target/fuzz-runs/$t.log"; then
    tail -n 30 "target/fuzz-runs/$t.log" >&2
    failed+=("$t")
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)' "target/fuzz-runs/$t.log" || true
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2; exit 1; fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
