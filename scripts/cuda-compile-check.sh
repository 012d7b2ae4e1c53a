#!/usr/bin/env bash
# Compile check of the CUDA sources where there is no GPU (CI): the kernels, the GPU tests and
# the GPU benchmark compiled to PTX only (no ptxas, no linking), with CUTLASS's headers when the
# nvidia-cutlass package or .cutlass/ provides them. Skipped, with a note, when nvcc is missing.
# scripts/gpu-check builds and runs everything on a Hopper machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v nvcc >/dev/null; then
  echo "cuda-compile-check: no nvcc on PATH; CUDA sources not compiled"
  exit 0
fi
build=build-cuda-check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBRECCIA_CUDA=ON \
         -DBRECCIA_CUDA_PTX_ONLY=ON -DBRECCIA_PYTHON=OFF -DBRECCIA_DEMO=OFF &&
       objects=$(ninja -C "$build" -t targets all |
                 grep -oE '^CMakeFiles/(breccia_cuda_objects|breccia_cutlass_objects|breccia-cuda-tests|breccia-cuda-bench)\.dir/[^:]+\.cu\.o') &&
       ninja -C "$build" -j "${BRECCIA_JOBS:-$(nproc)}" $objects; } >"$log" 2>&1; then
  echo "cuda-compile-check: failed; the last 60 lines of its output:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
echo "cuda-compile-check: $(echo "$objects" | wc -w) CUDA sources compiled to PTX in $((SECONDS - started)) s"
