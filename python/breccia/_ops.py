"""The operations, written once over a set of C++ entry points: the dispatching ops
(``breccia.cast`` ...) and the reference kernels (``breccia.kernels.reference``) share this
argument handling and differ only in which C++ functions run."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled, same_backend
from breccia.recipes import DelayedScalingState, ScalingRecipe, require_recipe


class Engine(NamedTuple):
    cast: Any
    dequantize: Any
    matmul: Any
    requantize: Any


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
    engine: Engine, x: Any, recipe: ScalingRecipe, axis: int, state: DelayedScalingState | None
) -> ScaledTensor:
    _backends.require_array_like(x, "x")
    require_recipe(recipe, "recipe")
    native = engine.cast(
        _backends.to_core(x, "x"),
        recipe._native,
        _axis(axis),
        _state_native(state),
        *_backends.device_context(x),
    )
    return ScaledTensor._from_native(native, _backends.backend_of(x), recipe)


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
    parts = _core.cast_for_gemm(
        _backends.to_core(x, "x"),
        recipe._native,
        rowwise,
        columnwise,
        swizzled_scales,
        _state_native(state),
        *_backends.device_context(x),
    )
    backend = _backends.backend_of(x)
    tensors = [
        None if p is None else ScaledTensor._from_native(p, backend, recipe) for p in parts[:2]
    ]
    scales = [None if p is None else _backends.from_core(p, backend) for p in parts[2:]]
    return GemmCast(*tensors, *scales)


def dequantize(engine: Engine, scaled: ScaledTensor, out_dtype: Any) -> Any:
    require_scaled(scaled, "scaled")
    out = engine.dequantize(
        scaled._native,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(scaled.data),
    )
    return _backends.from_core(out, scaled.backend)


def matmul(engine: Engine, a: Any, b: Any, out_dtype: Any) -> Any:
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
        operand._native if isinstance(operand, ScaledTensor) else _backends.to_core(operand, name)
        for name, operand in operands.items()
    ]
    first = a.data if isinstance(a, ScaledTensor) else a
    out = engine.matmul(
        *native, _backends.dtype_name(out_dtype, "out_dtype"), *_backends.device_context(first)
    )
    return _backends.from_core(out, backend)


def requantize(
    engine: Engine,
    scaled: ScaledTensor,
    new_recipe: ScalingRecipe,
    axis: int,
    state: DelayedScalingState | None,
) -> ScaledTensor:
    require_scaled(scaled, "scaled")
    require_recipe(new_recipe, "new_recipe")
    native = engine.requantize(
        scaled._native,
        new_recipe._native,
        _axis(axis),
        _state_native(state),
        *_backends.device_context(scaled.data),
    )
    return ScaledTensor._from_native(native, scaled.backend, new_recipe)


def from_buffer(
    data: Any, scale: Any, recipe: ScalingRecipe, layout: Any, global_scale: Any, zero_point: Any
) -> ScaledTensor:
    return ScaledTensor._from_buffers(data, scale, recipe, layout, global_scale, zero_point)


# The reference kernels run on the CPU only (they refuse device arrays themselves), so they
# take the device context and ignore it.
def _reference_cast(x: Any, recipe: Any, axis: int, state: Any, *_context: Any) -> Any:
    return _core.reference_cast(x, recipe, axis, state)


def _reference_dequantize(native: Any, out_dtype: str, *_context: Any) -> Any:
    return _core.reference_dequantize(native, out_dtype)


def _reference_matmul(a: Any, b: Any, out_dtype: str, *_context: Any) -> Any:
    return _core.reference_matmul(a, b, out_dtype)


def _reference_requantize(native: Any, recipe: Any, axis: int, state: Any, *_context: Any) -> Any:
    return _core.reference_cast(_core.reference_dequantize(native, "float32"), recipe, axis, state)


DISPATCH = Engine(_core.cast, _core.dequantize, _core.matmul, _core.requantize)
REFERENCE = Engine(_reference_cast, _reference_dequantize, _reference_matmul, _reference_requantize)
