#!/usr/bin/env bash
# Builds breccia once, in build/: the C++ library, its tests and demo, and the Python extension,
# and installs the Python package from this checkout in editable mode (so that only changed C++
# is recompiled next time; ctest runs from build/). CPU only unless BRECCIA_CUDA=ON (then nvcc
# and a Hopper target; scripts/gpu-check is the GPU machine's command). Expects the
# dependencies of scripts/install-deps.sh. PYTHON selects the interpreter (default: the project
# environment .venv/bin/python when it exists, else python3); BRECCIA_JOBS caps build
# parallelism (default: all cores). On a terminal the build shows its progress (ninja's).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
default_python=python3
[[ -x .venv/bin/python ]] && default_python=.venv/bin/python
PYTHON="${PYTHON:-$default_python}"
jobs="${BRECCIA_JOBS:-$(nproc)}"

install=(env PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
         CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$PYTHON" -m pip install --no-build-isolation -e .
         -Cbuild-dir=build -Ccmake.define.BRECCIA_TESTS=ON -Ccmake.define.BRECCIA_DEMO=ON
         -Ccmake.define.BRECCIA_CUDA="${BRECCIA_CUDA:-OFF}")
started=$SECONDS
if [[ -t 1 ]]; then
  # -v: pip passes the build's own output (ninja's [n/N] progress lines) through.
  "${install[@]}" -v 2>&1 | { grep -E '^\[[0-9]+/[0-9]+\]|error|warning: unused|Successfully' || true; }
else
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if ! "${install[@]}" -q >"$log" 2>&1; then
    echo "build: building breccia failed; the last 100 lines of its output:" >&2
    tail -n 100 "$log" >&2
    exit 1
  fi
fi
echo "build: breccia built in build/ and installed (editable) in $((SECONDS - started)) s"
