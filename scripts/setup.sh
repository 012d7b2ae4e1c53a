#!/usr/bin/env bash
# One command from a fresh clone to a working breccia: the apt packages, a project virtual
# environment (.venv/, or BRECCIA_VENV) holding the pinned Python packages, one build of breccia
# installed into that environment in editable mode (scripts/build.sh), then the main job.
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

echo "setup: the demo on the embedded MiniLM weights (build/breccia-demo)"
build/breccia-demo
version="$("$python" -c 'import breccia; print(breccia.__version__)')"
echo
echo "setup: done in $((SECONDS - started)) s. breccia $version is installed (editable) in $venv,"
echo "  with its test stack; C++ library, tests and demo in build/. Use it with:"
echo "    source $venv/bin/activate"
echo "  then 'python -c \"import breccia\"'; run every test with 'bash scripts/test.sh'."
