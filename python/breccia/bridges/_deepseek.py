"""DeepSeek-V3 FP8: checkpoint weights (``weight`` F8_E4M3 [out, in] with ``weight_scale_inv``
F32 [ceil(out/128), ceil(in/128)], ``w = q * scale_inv`` per 128 x 128 tile), activations
(1 x 128 tiles, scale [M, K/128]) and DeepSeek's own block quantizer. The scale is a decode
multiplier, as breccia's, so the bridge only wraps the same buffers; the quantizer runs in C++
(breccia::interop::deepseek_v3_quantize)."""

from __future__ import annotations

from typing import Any

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled
from breccia.layouts import PerBlockK, PerBlockMN
from breccia.recipes import Float8BlockScaling

_FP8_FORMATS = ("E4M3", "E5M2")


def _positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")
    return value


def _layout(block_m: int, block_k: int) -> Any:
    # Matches what breccia.cast gives for the same recipe, so the two compare equal.
    return PerBlockK(block_k) if block_m == 1 else PerBlockMN(block_m, block_k)


def from_deepseek_v3(
    data: Any,
    scale: Any,
    block_k: int = 128,
    fp8_format: str = "E4M3",
    *,
    block_m: int | None = None,
    power_2_scale: bool = False,
) -> ScaledTensor:
    """DeepSeek-V3 FP8 tensor + its fp32 ``scale_inv`` -> ScaledTensor, without copying.

    data: [..., M, K] float8_e4m3fn (or its uint8 bytes). scale: fp32, either
    [..., ceil(M/block_k), ceil(K/block_k)] (a weight: block_k x block_k tiles) or
    [..., M, ceil(K/block_k)] (an activation: 1 x block_k tiles); which one is read from its
    shape, or given by block_m (extension). The result has recipe
    Float8BlockScaling(fp8_format, block_k, block_m, power_2_scale): power_2_scale (extension)
    says whether to record the scales as powers of two (DeepSeek-V3.1 "ue8m0"); it does not
    change the bytes.
    """
    block_k = _positive_int(block_k, "block_k")
    if fp8_format not in _FP8_FORMATS:
        raise ValueError(f"fp8_format must be 'E4M3' or 'E5M2', got {fp8_format!r}")
    _backends.require_array_like(data, "data")
    _backends.require_array_like(scale, "scale")
    if len(data.shape) < 2 or len(scale.shape) != len(data.shape):
        raise ValueError(
            f"data and scale must both be at least 2-D and of one rank (DeepSeek-V3 "
            f"blocks the last two axes), got data {tuple(data.shape)} and scale "
            f"{tuple(scale.shape)}"
        )
    rows = int(data.shape[-2])
    if block_m is None:
        weight_rows = -(-rows // block_k)
        if int(scale.shape[-2]) == weight_rows:
            block_m = block_k
        elif int(scale.shape[-2]) == rows:
            block_m = 1
        else:
            raise ValueError(
                f"scale: expected {weight_rows} rows (a weight, {block_k} x {block_k} tiles) or "
                f"{rows} rows (an activation, 1 x {block_k} tiles) for data of shape "
                f"{tuple(data.shape)}, got scale of shape {tuple(scale.shape)}"
            )
    block_m = _positive_int(block_m, "block_m")
    recipe = Float8BlockScaling(
        fp8_format=fp8_format, block_k=block_k, block_m=block_m, power_2_scale=bool(power_2_scale)
    )
    return ScaledTensor._from_buffers(data, scale, recipe, _layout(block_m, block_k))


def to_deepseek_v3(scaled: ScaledTensor) -> tuple[Any, Any]:
    """ScaledTensor -> (data, scale_inv) in DeepSeek-V3's convention: the very buffers, since
    both are decode-scaled FP8 with fp32 block scales.

    Accepts Float8BlockScaling with its rowwise layout (1 x block_k or block_m x block_k
    tiles). Other recipes are refused (their scales mean something else); convert them first
    with ``breccia.requantize(scaled, Float8BlockScaling(block_m=128, power_2_scale=False))``.
    Data comes back typed (float8_e4m3fn / float8_e5m2) in NumPy and PyTorch.
    """
    require_scaled(scaled, "scaled")
    recipe = scaled.recipe
    if not isinstance(recipe, Float8BlockScaling):
        raise ValueError(
            f"scaled: DeepSeek-V3 holds Float8BlockScaling tensors, got {recipe!r}; requantize "
            "it first, e.g. breccia.requantize(scaled, Float8BlockScaling(block_m=128, "
            "power_2_scale=False))"
        )
    if scaled.layout != _layout(recipe.block_m, recipe.block_k):
        raise ValueError(
            f"scaled: DeepSeek-V3 blocks along the last axis ("
            f"{_layout(recipe.block_m, recipe.block_k)!r}), got the columnwise "
            f"layout {scaled.layout!r}"
        )
    fp8_dtype = "float8_e4m3fn" if recipe.fp8_format == "E4M3" else "float8_e5m2"
    return _typed(scaled.data, fp8_dtype), scaled.scale


def quantize_deepseek_v3(
    x: Any,
    *,
    block_m: int = 1,
    block_k: int = 128,
    fp8_format: str = "E4M3",
    scale_fmt: str | None = None,
) -> ScaledTensor:
    """DeepSeek-V3's block quantizer (extension): per block_m x block_k tile
    ``s = max(amax, 1e-4) / fmax``, ``q = fp8(x / s)``; scale_fmt="ue8m0" rounds each s up to a
    power of two first (DeepSeek-V3.1). block_m 1 quantizes activations (1 x 128), 128
    weights (128 x 128). The result is in x's framework, with recipe
    Float8BlockScaling(fp8_format, block_k, block_m, power_2_scale=(scale_fmt == "ue8m0")).
    """
    if scale_fmt not in (None, "ue8m0"):
        raise ValueError(f"scale_fmt must be None or 'ue8m0', got {scale_fmt!r}")
    _backends.require_array_like(x, "x")
    native = _core.deepseek_v3_quantize(
        _backends.to_core(x, "x"), block_m, block_k, fp8_format, scale_fmt == "ue8m0"
    )
    recipe = Float8BlockScaling(
        fp8_format=fp8_format, block_k=block_k, block_m=block_m, power_2_scale=scale_fmt == "ue8m0"
    )
    return ScaledTensor._from_native(native, _backends.backend_of(x), recipe)


def _typed(array: Any, dtype_name: str) -> Any:
    """The same bytes viewed as ``dtype_name`` where the framework can view them (NumPy,
    PyTorch); JAX and MLX arrays are returned as they are."""
    backend = _backends.backend_of(array)
    if backend == _backends.TORCH:
        import torch

        dtype = getattr(torch, dtype_name)
        return array if array.dtype == dtype else array.view(dtype)
    if backend == _backends.NUMPY:
        import ml_dtypes
        import numpy as np

        dtype = np.dtype(getattr(ml_dtypes, dtype_name))
        return array if array.dtype == dtype else array.view(dtype)
    return array


__all__ = ["from_deepseek_v3", "quantize_deepseek_v3", "to_deepseek_v3"]
