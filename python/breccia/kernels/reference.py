"""The reference kernels: breccia's scalar C++ oracle, called directly (no dispatch to faster
kernels). Faster kernels must match these byte for byte; use them to check results.

Same signatures and framework handling as the package-level operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from breccia import _ops
from breccia._scaled_tensor import ScaledTensor
from breccia.recipes import DelayedScalingState, ScalingRecipe


def cast(
    x: Any,
    recipe: ScalingRecipe,
    axis: int = -1,
    *,
    state: DelayedScalingState | None = None,
    tensor_amax: float | None = None,
) -> ScaledTensor:
    """Reference quantize of x under recipe (see ``breccia.cast``)."""
    return _ops.cast(_ops.REFERENCE, x, recipe, axis, state, tensor_amax)


def dequantize(scaled: ScaledTensor, out_dtype: Any = np.float32) -> Any:
    """Reference dequantize (see ``breccia.dequantize``)."""
    return _ops.dequantize(_ops.REFERENCE, scaled, out_dtype)


def requantize(
    scaled: ScaledTensor,
    recipe: ScalingRecipe,
    axis: int = -1,
    *,
    state: DelayedScalingState | None = None,
) -> ScaledTensor:
    """Reference ``cast(dequantize(scaled), recipe)``, always recomputed."""
    return _ops.requantize(_ops.REFERENCE, scaled, recipe, axis, state)


def matmul(a: Any, b: Any, out_dtype: Any = np.float32) -> Any:
    """Reference scaled matmul: operands dequantized by the reference kernels, then an fp32
    GEMM (see ``breccia.matmul``)."""
    return _ops.matmul(_ops.REFERENCE, a, b, out_dtype)


def linear(x: Any, w: Any, bias: Any = None, out_dtype: Any = np.float32) -> Any:
    """Reference linear layer: ``x @ dequantize(w).T + bias`` with the reference dequantize
    and an fp32 GEMM (see ``breccia.linear``)."""
    return _ops.linear(_ops.REFERENCE, x, w, bias, out_dtype)


__all__ = ["cast", "dequantize", "linear", "matmul", "requantize"]
