#!/usr/bin/env bash
# Builds breccia in build/ if needed and runs every test suite. Expects the dependencies of
# scripts/install-deps.sh. BRECCIA_JOBS caps build and test parallelism (default: all cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
jobs="${BRECCIA_JOBS:-$(nproc)}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
build() {
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build build -j "$jobs"
}
if ! build >"$log" 2>&1; then
  echo "test: the build failed; the last 100 lines of its output:" >&2
  tail -n 100 "$log" >&2
  exit 1
fi

# C++ suites (GoogleTest, one ctest entry per test).
ctest --test-dir build --output-on-failure -j "$jobs"

# ---- Python suites ----------------------------------------------------------------------
# Run once tests/python exists. The package is (re)installed from this checkout first, in
# editable mode, so pytest tests this tree's code and only changed C++ is recompiled.
if [[ -d tests/python ]]; then
  if ! PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
      CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$PYTHON" -m pip install -q --no-build-isolation -e . \
      >"$log" 2>&1; then
    echo "test: building the Python package failed; the last 100 lines of its output:" >&2
    tail -n 100 "$log" >&2
    exit 1
  fi
  "$PYTHON" -m pytest -q tests/python
fi
