"""The operations' argument handling, written once: the package-level ops (``breccia.cast``
...) and the reference kernels (``breccia.kernels.reference``) call the same C++ ops and
differ only in the kernel preference they pass ("automatic" or "reference"), so both get the
same checks. Each op finds its arrays' framework once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled, same_backend
from breccia.layouts import layout_from_native
from breccia.recipes import (
    DelayedScalingState,
    ScalingRecipe,
    recipe_from_native,
    require_recipe,
)

# Which kernels run: the fastest for the data's device, or the scalar reference kernels.
Kernels = Literal["automatic", "reference"]
AUTOMATIC: Kernels = "automatic"
REFERENCE: Kernels = "reference"


_Op = TypeVar("_Op", bound=Callable[..., Any])


def _named(operation: str) -> Callable[[_Op], _Op]:
    """Heads the message of an error the op raises with the op's name ("cast: x: ..."), so it
    names the call that failed rather than an argument of some inner function."""

    def decorate(function: _Op) -> _Op:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (TypeError, ValueError, NotImplementedError) as error:
                message = error.args[0] if len(error.args) == 1 else None
                if isinstance(message, str) and not message.startswith(f"{operation}:"):
                    error.args = (f"{operation}: {message}",)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


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


@_named("cast")
def cast(
    kernels: Kernels,
    x: Any,
    recipe: ScalingRecipe,
    axis: int,
    state: DelayedScalingState | None,
    tensor_amax: float | None = None,
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
        tensor_amax=None if tensor_amax is None else float(tensor_amax),
    )
    return ScaledTensor._from_native(native, backend, recipe)


class GemmCast(NamedTuple):
    """What ``breccia.cast_for_gemm`` returns; absent parts are None."""

    rowwise: ScaledTensor | None
    columnwise: ScaledTensor | None
    rowwise_swizzled_scale: Any
    columnwise_swizzled_scale: Any


@_named("cast_for_gemm")
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


@_named("dequantize")
def dequantize(kernels: Kernels, scaled: ScaledTensor, out_dtype: Any) -> Any:
    require_scaled(scaled, "scaled")
    out = _core.dequantize(
        scaled._native,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(scaled.data, scaled.backend),
        kernels=kernels,
    )
    return _backends.from_core(out, scaled.backend)


def _gemm_operands(operands: dict[str, Any]) -> tuple[str, list[Any], Any]:
    """The operands' one framework, their core forms, and the first one's array."""
    for name, operand in operands.items():
        if not isinstance(operand, ScaledTensor):
            _backends.require_array_like(operand, name)
    arrays = {
        name: operand.data if isinstance(operand, ScaledTensor) else operand
        for name, operand in operands.items()
    }
    backend = same_backend(arrays)
    native = [
        operand._native
        if isinstance(operand, ScaledTensor)
        else _backends.to_core(operand, name, backend)
        for name, operand in operands.items()
    ]
    return backend, native, next(iter(arrays.values()))


@_named("matmul")
def matmul(kernels: Kernels, a: Any, b: Any, out_dtype: Any) -> Any:
    backend, native, first = _gemm_operands({"a": a, "b": b})
    out = _core.matmul(
        *native,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(first, backend),
        kernels=kernels,
    )
    return _backends.from_core(out, backend)


@_named("linear")
def linear(kernels: Kernels, x: Any, w: Any, bias: Any, out_dtype: Any) -> Any:
    operands = {"x": x, "w": w} if bias is None else {"x": x, "w": w, "bias": bias}
    backend, native, first = _gemm_operands(operands)
    out = _core.linear(
        native[0],
        native[1],
        native[2] if bias is not None else None,
        _backends.dtype_name(out_dtype, "out_dtype"),
        *_backends.device_context(first, backend),
        kernels=kernels,
    )
    return _backends.from_core(out, backend)


@_named("transpose")
def transpose(scaled: ScaledTensor) -> ScaledTensor:
    """``scaled`` with its last two dims swapped. The core checks and builds the result (and
    repacks packed 4-bit codes); the arrays the caller gets are the framework's own views of
    the same memory where the framework has views."""
    require_scaled(scaled, "x")
    backend = scaled.backend
    native = _core.transpose(scaled._native, *_backends.device_context(scaled.data, backend))

    def swapped(array: Any) -> Any:
        if array is None or len(array.shape) != scaled.ndim:
            return array
        return _backends.swap_last_two(array, backend)

    packed = scaled.recipe.spec["packed"]
    return ScaledTensor._over(
        native,
        (
            _backends.from_core(native.data, backend) if packed else swapped(scaled.data),
            swapped(scaled.scale),
            scaled.recipe,
            layout_from_native(native.layout),
            scaled.global_scale,
            swapped(scaled.zero_point),
        ),
    )


@_named("requantize")
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


@_named("reencode_fp4_as_fp8")
def reencode_fp4_as_fp8(x: ScaledTensor, tile: int) -> ScaledTensor:
    require_scaled(x, "x")
    native = _core.reencode_fp4_as_fp8(x._native, tile)
    return ScaledTensor._from_native(native, x.backend, recipe_from_native(native.recipe))


@_named("from_buffer")
def from_buffer(
    data: Any, scale: Any, recipe: ScalingRecipe, layout: Any, global_scale: Any, zero_point: Any
) -> ScaledTensor:
    return ScaledTensor._from_buffers(data, scale, recipe, layout, global_scale, zero_point)
