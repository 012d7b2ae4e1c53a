"""The operations' argument handling, written once: the package-level ops (``breccia.cast``
...) and the reference kernels (``breccia.kernels.reference``) call the same C++ ops and
differ only in the kernel preference they pass ("automatic" or "reference"), so both get the
same checks. Each op finds its arrays' framework once."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled, same_backend
from breccia.recipes import DelayedScalingState, ScalingRecipe, require_recipe

# Which kernels run: the fastest for the data's device, or the scalar reference kernels.
Kernels = Literal["automatic", "reference"]
AUTOMATIC: Kernels = "automatic"
REFERENCE: Kernels = "reference"


def _state_native(state: DelayedScalingState | None) -> Any:
    if state is None:
        return None
    if not isinstance(state, DelayedScalingState):
        raise TypeError(f"state must be a DelayedScalingState or None, got {type(state).__name__}")
    return state._native


def _axis(axis: Any) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int (-1 or -2), got {axis!r}")
    return int(axis)


def cast(
    kernels: Kernels, x: Any, recipe: ScalingRecipe, axis: int, state: DelayedScalingState | None
) -> ScaledTensor:
    _backends.require_array_like(x, "x")
    require_recipe(recipe, "recipe")
    backend = _backends.backend_of(x)
    native = _core.cast(
        _backends.to_core(x, "x", backend),
        recipe._native,
        _axis(axis),
        _state_native(state),
        *_backends.device_context(x, backend),
        kernels=kernels,
    )
    return ScaledTensor._from_native(native, backend, recipe)


class GemmCast(NamedTuple):
    """What ``breccia.cast_for_gemm`` returns; absent parts are None."""

    rowwise: ScaledTensor | None
    columnwise: ScaledTensor | None
    rowwise_swizzled_scale: Any
    columnwise_swizzled_scale: Any


def cast_for_gemm(
    x: Any,
    recipe: ScalingRecipe,
    rowwise: bool,
    columnwise: bool,
    swizzled_scales: bool,
    state: DelayedScalingState | None,
) -> GemmCast:
    _backends.require_array_like(x, "x")
    require_recipe(recipe, "recipe")
    for name, flag in (
        ("rowwise", rowwise),
        ("columnwise", columnwise),
        ("swizzled_scales", swizzled_scales),
    ):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    backend = _backends.backend_of(x)
    parts = _core.cast_for_gemm(
        _backends.to_core(x, "x", backend),
        recipe._native,
        rowwise,
        columnwise,
        swizzled_scales,
        _state_native(state),
        *_backends.device_context(x, backend),
    )
    tensors = [
        None if p is None else ScaledTensor._from_native(p, backend, recipe) for p in parts[:2]
    ]
    scales = [None if p is None else _backends.from_core(p, backend) for p in parts[2:]]
    return GemmCast(*tensors, *scales)


def dequantize(kernels: Kernels, scaled: ScaledTensor, out_dtype: Any) -> Any:
    require_scaled(scaled, "scaled")
    out = _core.dequantize(
        scaled._native,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(scaled.data, scaled.backend),
        kernels=kernels,
    )
    return _backends.from_core(out, scaled.backend)


def matmul(kernels: Kernels, a: Any, b: Any, out_dtype: Any) -> Any:
    operands = {"a": a, "b": b}
    for name, operand in operands.items():
        if not isinstance(operand, ScaledTensor):
            _backends.require_array_like(operand, name)
    backend = same_backend(
        {
            name: operand.data if isinstance(operand, ScaledTensor) else operand
            for name, operand in operands.items()
        }
    )
    native = [
        operand._native
        if isinstance(operand, ScaledTensor)
        else _backends.to_core(operand, name, backend)
        for name, operand in operands.items()
    ]
    first = a.data if isinstance(a, ScaledTensor) else a
    out = _core.matmul(
        *native,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(first, backend),
        kernels=kernels,
    )
    return _backends.from_core(out, backend)


def requantize(
    kernels: Kernels,
    scaled: ScaledTensor,
    new_recipe: ScalingRecipe,
    axis: int,
    state: DelayedScalingState | None,
) -> ScaledTensor:
    require_scaled(scaled, "scaled")
    require_recipe(new_recipe, "new_recipe")
    native = _core.requantize(
        scaled._native,
        new_recipe._native,
        _axis(axis),
        _state_native(state),
        *_backends.device_context(scaled.data, scaled.backend),
        kernels=kernels,
    )
    return ScaledTensor._from_native(native, scaled.backend, new_recipe)


def from_buffer(
    data: Any, scale: Any, recipe: ScalingRecipe, layout: Any, global_scale: Any, zero_point: Any
) -> ScaledTensor:
    return ScaledTensor._from_buffers(data, scale, recipe, layout, global_scale, zero_point)
