#!/usr/bin/env bash
# A separate Python environment with llm-compressor, for bench_convert.py's --llmcompressor
# baseline: its pins (transformers, accelerate, datasets, ...) do not fit breccia's test
# environment. torch stays at the test environment's CPU build.
#   bash bench/io/llmcompressor-env.sh [DIR]    (default build/llmcompressor-venv)
#   python bench/io/bench_convert.py --llmcompressor build/llmcompressor-venv/bin/python
set -euo pipefail
venv="${1:-build/llmcompressor-venv}"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet torch==2.13.0
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
"$venv/bin/python" -m pip install --quiet -c "$constraints" llmcompressor==0.14.0.1
echo "llm-compressor environment ready: $venv/bin/python"
