#!/usr/bin/env bash
# One command from a fresh clone to a working build: installs the dependencies, builds breccia
# in build/, installs the Python package from this checkout (editable) and runs the demo on
# the embedded weights. Safe to run again. PYTHON selects the interpreter (default python3).
# BRECCIA_JOBS caps build parallelism (default: all cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
build() {
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build build -j "${BRECCIA_JOBS:-$(nproc)}"
}
echo "setup: building in build/"
if ! build >"$log" 2>&1; then
  echo "setup: the build failed; the last 100 lines of its output:" >&2
  tail -n 100 "$log" >&2
  exit 1
fi

echo "setup: installing the Python package (editable) from this checkout"
if ! PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_BUILD_PARALLEL_LEVEL="${BRECCIA_JOBS:-$(nproc)}" "${PYTHON:-python3}" -m pip install -q \
    --no-build-isolation -e . >"$log" 2>&1; then
  echo "setup: building the Python package failed; the last 100 lines of its output:" >&2
  tail -n 100 "$log" >&2
  exit 1
fi

echo "setup: running build/breccia-demo"
build/breccia-demo
