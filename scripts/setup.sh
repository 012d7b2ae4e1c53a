#!/usr/bin/env bash
# One command from a fresh clone to a working build: installs the dependencies, builds breccia
# and its Python package (scripts/build.sh), then runs the demo on the embedded weights.
# Safe to run again. PYTHON selects the interpreter (default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
echo "setup: building breccia and installing its Python package"
bash scripts/build.sh
echo "setup: running build/breccia-demo"
build/breccia-demo
