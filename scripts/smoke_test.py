"""What an installed breccia must do on a machine with nothing but its wheel and dependencies:
import from site-packages (not a checkout), cast and dequantize every recipe, multiply (the
BLAS), and save and load a checkpoint. Exits non-zero with the failing check's message."""

from __future__ import annotations

import os
import tempfile

import numpy as np

import breccia
from breccia.bridges import load_safetensors, save_safetensors

assert "site-packages" in breccia.__file__, f"breccia imported from {breccia.__file__}"
x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
for recipe in (
    breccia.Float8CurrentScaling(),
    breccia.Float8BlockScaling(),
    breccia.MXFP8BlockScaling(),
    breccia.MXFP4BlockScaling(),
    breccia.NVFP4BlockScaling(),
    breccia.INT4Scaling(),
):
    scaled = breccia.cast(x, recipe)
    error = float(np.abs(breccia.dequantize(scaled) - x).max())
    assert error < 1.5, f"{recipe!r}: max error {error}"
w = breccia.cast(x, breccia.Float8BlockScaling())
out = breccia.linear(x[:4], w, np.ones(64, np.float32))
want = x[:4] @ breccia.dequantize(w).T + 1
assert np.allclose(out, want, rtol=1e-4, atol=1e-3), "linear"
with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "w.safetensors")
    save_safetensors({"w": x}, path)
    assert np.array_equal(load_safetensors(path)["w"], x), "safetensors round trip"
print(f"smoke test: breccia {breccia.__version__} from {os.path.dirname(breccia.__file__)}: ok")
