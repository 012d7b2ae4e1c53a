#!/usr/bin/env bash
# Runs every test suite: builds what changed (scripts/build.sh), then the C++ suites (ctest) and
# the Python suites (pytest), a compile check of the CUDA sources (scripts/cuda-compile-check.sh,
# when nvcc is present), examples/cpp built against an installed libbreccia
# (scripts/cpp-package-check.sh), the manylinux wheel installed into a fresh environment
# (scripts/wheel-check.sh), then the C++ suite under ASan + UBSan and a short run of every
# fuzz target (scripts/sanitize.sh). Expects what scripts/setup.sh installs; Python is the
# project environment's (.venv/) when there is one, else python3 (PYTHON overrides).
# BRECCIA_JOBS caps build and test parallelism (default: all cores); BRECCIA_SKIP_SANITIZERS=1
# skips the sanitizer build and the fuzzers, for quick local runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
default_python=python3
[[ -x .venv/bin/python ]] && default_python=.venv/bin/python
PYTHON="${PYTHON:-$default_python}"
export PYTHON
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "${BRECCIA_JOBS:-$(nproc)}"
"$PYTHON" -m pytest -q tests/python
bash scripts/cuda-compile-check.sh
bash scripts/cpp-package-check.sh
bash scripts/wheel-check.sh
if [[ "${BRECCIA_SKIP_SANITIZERS:-0}" != 1 ]]; then
  bash scripts/sanitize.sh
fi
