#!/usr/bin/env bash
# Runs every test suite: builds what changed (scripts/build.sh), then the C++ suites (ctest) and
# the Python suites (pytest), then a compile check of the CUDA sources (scripts/cuda-compile-check.sh,
# when nvcc is present). Expects the dependencies of scripts/install-deps.sh.
# BRECCIA_JOBS caps build and test parallelism (default: all cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "${BRECCIA_JOBS:-$(nproc)}"
"$PYTHON" -m pytest -q tests/python
bash scripts/cuda-compile-check.sh
