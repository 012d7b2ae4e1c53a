#!/usr/bin/env bash
# The C++ test suite under AddressSanitizer + UndefinedBehaviorSanitizer, then a short run of
# every libFuzzer target (scripts/fuzz.sh). Both use one clang build in build-sanitize/, CPU
# only, at -O1: the library and tests instrumented with ASan, UBSan (any report fails the run)
# and libFuzzer's coverage hooks, the fuzz targets linked against libFuzzer.
# FUZZ_SECONDS: seconds per fuzz target (default 30); BRECCIA_JOBS caps build parallelism.
# Needs clang and libclang-rt-dev (scripts/install-deps.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs="${BRECCIA_JOBS:-$(nproc)}"

mkdir -p build-sanitize
log=build-sanitize/build.log
if [[ ! -f build-sanitize/CMakeCache.txt ]]; then
  flags="-O1 -gline-tables-only -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link"
  flags+=" -fno-sanitize-recover=all"
  if ! CC=clang CXX=clang++ cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=None \
      -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DBRECCIA_CUDA=OFF -DBRECCIA_DEMO=OFF -DBRECCIA_FUZZ=ON >"$log" 2>&1; then
    echo "sanitize: configuring build-sanitize failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
fi
start=$SECONDS
if ! cmake --build build-sanitize -j "$jobs" >"$log" 2>&1; then
  echo "sanitize: the build failed; the last 60 lines of $log:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
echo "sanitize: built build-sanitize ($((SECONDS - start)) s)"

# halt_on_error: the first report fails the test; detect_leaks: leaks are reports too.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp"
start=$SECONDS
# Left out: the CPU kernels' random-value sweep, which runs the same code on the same shapes as
# the special-value sweep (kept), for CI's time.
ctest --test-dir build-sanitize --output-on-failure -j "$jobs" \
  -E 'CpuKernels.MatchesReferenceOnShapeGrid' >build-sanitize/ctest.log 2>&1 || {
  grep -E "Failed|ERROR|runtime error" -A 30 build-sanitize/ctest.log | head -200 >&2
  tail -n 20 build-sanitize/ctest.log >&2
  exit 1
}
echo "sanitize: the C++ suite passed under ASan + UBSan ($((SECONDS - start)) s)"
bash scripts/fuzz.sh
