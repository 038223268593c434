#!/usr/bin/env bash
# Runs every fuzz target in tests/fuzz/ under libFuzzer (coverage-guided, AddressSanitizer) for
# SECONDS each, then prints per target the inputs run and the crashes found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET-FILTER]     default 60 s each, all targets
#   scripts/fuzz.sh 120 control                   only the targets whose name contains "control"
#
# The targets are bolero `check!()` tests: plain `cargo test --test fuzz` runs them on stable
# with random inputs (the short pass CI makes). For libFuzzer this script builds the same test
# binary the way `cargo bolero test --engine libfuzzer` does, but only that binary: the
# sanitizer flags need a nightly toolchain (`rustup toolchain install nightly`), or stable with
# RUSTC_BOOTSTRAP=1 when no nightly is installed.
#
# Corpora grow in target/fuzz/corpus/TARGET (kept between runs, so later runs start further
# on); a crashing input is written to target/fuzz/crashes/TARGET/crash-*, and the run of that
# target stops there. Reproduce one with the path printed, then turn it into a `regression_*`
# test with the input as literal bytes. Exit status: 0 if no target crashed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
filter=${2:-}
case $secs in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac

triple=$(rustc -vV | sed -n 's/^host: //p')
if rustup run nightly rustc -V >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi

# The flags cargo-bolero passes for its libfuzzer engine, and AddressSanitizer. --target keeps
# them off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing --cfg fuzzing_libfuzzer -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-sanitizer-coverage-stack-depth -Zsanitizer=address -Cdebug-assertions"
export BOLERO_FUZZER=libfuzzer
build=(--release --test fuzz --target "$triple" --target-dir target/fuzz/build)

echo "fuzz.sh: building the fuzz targets with libFuzzer and AddressSanitizer" >&2
exe=$("${cargo[@]}" test "${build[@]}" --no-run --message-format=json-render-diagnostics |
  grep -F '"kind":["test"],"crate_types":["bin"],"name":"fuzz"' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "fuzz.sh: build produced no test binary" >&2; exit 1; }

# The targets are the tests named fuzz_*.
mapfile -t targets < <(ASAN_OPTIONS=detect_leaks=0 "$exe" --list --format terse 2>/dev/null |
  sed -n 's/^\(.*fuzz_[a-z0-9_]*\): test$/\1/p' | grep -F -- "$filter" || true)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz target matches '$filter'" >&2; exit 2; }

logs=target/fuzz/logs
mkdir -p "$logs"
stamp=$logs/started; touch "$stamp"
printf '%-48s %12s %8s %8s  %s\n' target inputs seconds crashes "crash files" >"$logs/summary"
status=0
for t in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$t crashes=target/fuzz/crashes/$t
  mkdir -p "$corpus" "$crashes"
  before=$(find "$crashes" -type f | wc -l)
  echo "fuzz.sh: $t for ${secs}s" >&2
  start=$(date +%s)
  # -timeout: one input running over 10 s counts as a crash (a hang).
  BOLERO_TEST_NAME=$t BOLERO_LIBTEST_HARNESS=1 ASAN_OPTIONS=detect_leaks=0 \
    BOLERO_LIBFUZZER_ARGS="$corpus -artifact_prefix=$crashes/ -max_total_time=$secs -timeout=10 -print_final_stats=1" \
    "$exe" "$t" --exact --nocapture --quiet --test-threads 1 >"$logs/$t.log" 2>&1 || true
  took=$(($(date +%s) - start))
  # libFuzzer's final stats: "stat::number_of_executed_units: N".
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$logs/$t.log" | tail -1)
  new=$(find "$crashes" -type f -newer "$stamp" | sort)
  found=$(($(find "$crashes" -type f | wc -l) - before))
  [ "$found" -eq 0 ] || status=1
  printf '%-48s %12s %8s %8s  %s\n' "$t" "${runs:-?}" "$took" "$found" "$(echo $new)" >>"$logs/summary"
done
echo "== fuzz.sh: ${secs}s per target under libFuzzer; inputs = test inputs libFuzzer executed (its stat::number_of_executed_units); logs in $logs"
cat "$logs/summary"
exit $status
