#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (built in build-sanitize/ by scripts/sanitize.sh), each for
# FUZZ_SECONDS seconds (default 30), starting from the seed corpus in fuzz/corpus/<target>/
# (copied: the run's discoveries stay in build-sanitize/fuzz-corpus/). Fails on the first crash,
# sanitizer report, leak, uncaught exception or input slower than FUZZ_TIMEOUT seconds (default
# 5: on a busy shared machine a whole process can stall for a second, so the 1 s the inputs are
# held to is read from libFuzzer's slowest-unit figure, which is printed); the input that did it
# is kept in build-sanitize/fuzz-artifacts/. Prints the executions and slowest input per target.
# Long runs: FUZZ_SECONDS=3600 FUZZ_JOBS=8 bash scripts/fuzz.sh [target ...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${FUZZ_SECONDS:-30}"
timeout="${FUZZ_TIMEOUT:-5}"
jobs="${FUZZ_JOBS:-1}"
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(safetensors_reader checkpoint_loader recipe_layout_json dlpack_import)
fi
declare -A max_len=([safetensors_reader]=65536 [checkpoint_loader]=65536
                    [recipe_layout_json]=4096 [dlpack_import]=1024)

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p build-sanitize/fuzz-artifacts
for target in "${targets[@]}"; do
  binary="build-sanitize/fuzz/fuzz-$target"
  if [[ ! -x "$binary" ]]; then
    echo "fuzz: $binary is missing; run scripts/sanitize.sh first" >&2
    exit 1
  fi
  corpus="build-sanitize/fuzz-corpus/$target"
  mkdir -p "$corpus"
  cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log="build-sanitize/fuzz-$target.log"
  fork=()
  # Fork mode ignores timeouts and out-of-memory inputs unless told otherwise; they are findings.
  if ((jobs > 1)); then fork=(-fork="$jobs" -ignore_timeouts=0 -ignore_ooms=0); fi
  if ! "$binary" "${fork[@]}" -max_total_time="$seconds" -timeout="$timeout" -max_len="${max_len[$target]}" \
      -print_final_stats=1 -artifact_prefix=build-sanitize/fuzz-artifacts/"$target"- \
      "$corpus" >"$log" 2>&1; then
    echo "fuzz: $target failed; the end of its log ($log):" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
  # Fork mode's log has the running totals but no final stats (its jobs' logs are gone), so
  # either may be missing: a missing figure prints as "?" rather than failing the run.
  runs="$(grep -oE '(stat::number_of_executed_units: *|#)[0-9]+' "$log" | grep -oE '[0-9]+$' |
    sort -n | tail -1 || true)"
  slowest="$(grep -oE 'slowest_unit_time_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' |
    sort -n | tail -1 || true)"
  if [[ -n "$slowest" ]]; then
    slowest="slowest input $slowest s (whole seconds)"
  else
    slowest="no input reached the ${timeout} s timeout"
  fi
  echo "fuzz: $target: ${runs:-?} executions in ${seconds} s, no findings; $slowest"
done
