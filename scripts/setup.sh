#!/usr/bin/env bash
# One command from a fresh clone to a working breccia: the apt packages, a project virtual
# environment (.venv/, or BRECCIA_VENV) holding the pinned Python packages, one build of breccia
# installed into that environment in editable mode (scripts/build.sh), then the main job: the
# `breccia` command converting the embedded checkpoint.
# Nothing is installed into the system's Python. Run it again after a change: only what changed
# is rebuilt, in seconds. PYTHON picks the interpreter the environment is made from (3.10+).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${BRECCIA_VENV:-.venv}"
started=$SECONDS

bash scripts/install-deps.sh apt
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating the project environment $venv (from ${PYTHON:-python3})"
  "${PYTHON:-python3}" -m venv "$venv"
fi
python="$PWD/$venv/bin/python"
[[ "$venv" = /* ]] && python="$venv/bin/python"
PYTHON="$python" bash scripts/install-deps.sh pip
echo "setup: building breccia (build/) and installing it into $venv, editable"
PYTHON="$python" bash scripts/build.sh

# The main job: the breccia command on the embedded checkpoint (data/'s MiniLM weights as a small
# sharded model directory), converted to NVFP4 and to FP8 blocks and verified against its source.
demo="build/demo"
breccia="$(dirname "$python")/breccia"
echo "setup: the breccia command on the embedded MiniLM checkpoint ($demo/minilm)"
rm -rf "$demo" && "$python" scripts/demo-checkpoint.py "$demo/minilm"
"$breccia" inspect "$demo/minilm"
for format in nvfp4 fp8-block; do
  echo
  echo "\$ breccia convert $demo/minilm $demo/minilm-$format --to $format"
  "$breccia" convert "$demo/minilm" "$demo/minilm-$format" --to "$format"
  "$breccia" verify "$demo/minilm-$format" --against "$demo/minilm" --min-sqnr 15
done
version="$("$python" -c 'import breccia; print(breccia.__version__)')"
echo
echo "setup: done in $((SECONDS - started)) s. breccia $version is installed (editable) in $venv,"
echo "  with its test stack and the breccia command; C++ library and tests in build/. Use it with:"
echo "    source $venv/bin/activate"
echo "  then 'breccia --help' or 'python -c \"import breccia\"'; run every test with"
echo "  'bash scripts/test.sh'."
