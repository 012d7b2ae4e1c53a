#!/usr/bin/env bash
# Builds breccia in build/ (C++ library, tests, demo) and installs the Python package from this
# checkout in editable mode, so that only changed C++ is recompiled next time. Expects the
# dependencies of scripts/install-deps.sh. PYTHON selects the interpreter (default python3);
# BRECCIA_JOBS caps build parallelism (default: all cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
jobs="${BRECCIA_JOBS:-$(nproc)}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Runs a step with its output kept in a log, shown (last 100 lines) only when it fails.
step() {
  local what="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "build: $what failed; the last 100 lines of its output:" >&2
    tail -n 100 "$log" >&2
    exit 1
  fi
}

configure_and_build() {
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build build -j "$jobs"
}
step "the C++ build" configure_and_build
step "building the Python package" env PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
  CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$PYTHON" -m pip install -q --no-build-isolation -e .
