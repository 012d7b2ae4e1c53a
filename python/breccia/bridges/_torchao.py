"""torchao: its quantized tensor subclasses <-> ScaledTensor, over the same torch buffers.

Float8Tensor (per tensor, per row, blockwise), MXTensor (FP8, FP6 and FP4 elements),
NVFP4Tensor and Int4Tensor (symmetric) all store decode scales, so the bridge maps buffers and
metadata only: views, never values. Swizzled (GEMM-ready) scales are converted by breccia's C++
swizzle_scales / unswizzle_scales. See docs/bridges.md for what is rejected and why.
"""

from __future__ import annotations

from typing import Any

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled
from breccia.bridges._dlpack import from_dlpack
from breccia.layouts import PerBlockK, PerBlockMN, PerChannel, PerTensor
from breccia.recipes import (
    DelayedScaling,
    Float8BlockScaling,
    Float8CurrentScaling,
    INT4Scaling,
    MXFP4BlockScaling,
    MXFP6BlockScaling,
    MXFP8BlockScaling,
    NVFP4BlockScaling,
    require_recipe,
)

# torchao's names for the FP6 element formats (plain strings in torchao 0.18), by breccia's.
_TORCHAO_FP6 = {"E2M3": "fp6_e2m3", "E3M2": "fp6_e3m2"}

_INT4_SCALE_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _torch():
    import torch

    return torch


def _torchao_classes() -> dict[str, type]:
    try:
        from torchao.prototype.mx_formats.mx_tensor import MXTensor
        from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
        from torchao.quantization import Float8Tensor, Int4Tensor
    except ImportError as error:
        raise ImportError(
            "the torchao bridge needs torchao (tested with 0.18.0): "
            "pip install --no-deps torchao==0.18.0"
        ) from error
    return {
        "Float8Tensor": Float8Tensor,
        "MXTensor": MXTensor,
        "NVFP4Tensor": NVFP4Tensor,
        "Int4Tensor": Int4Tensor,
    }


def _fp8_format(dtype: Any, argument: str) -> str:
    torch = _torch()
    if dtype == torch.float8_e4m3fn:
        return "E4M3"
    if dtype == torch.float8_e5m2:
        return "E5M2"
    raise ValueError(f"{argument}: expected float8_e4m3fn or float8_e5m2 elements, got {dtype}")


def _is_transposed(qdata: Any) -> bool:
    # torchao marks column-major (dim1) data by its strides, as its dequantize does.
    return qdata.dim() >= 2 and qdata.stride(-2) < qdata.stride(-1)


def _refuse_transposed(qdata: Any, kind: str) -> None:
    if _is_transposed(qdata):
        raise ValueError(
            f"aqt: {kind} with column-major (transposed) qdata is not supported; "
            "pass .t() of it (the row-major tensor it transposes) instead"
        )


def _unswizzled(scale: Any, rows: int, cols: int, leading: tuple[int, ...]) -> Any:
    """Compact (*leading, rows, cols) scales from torchao's swizzled ones (flat or padded 2-D)."""
    torch = _torch()
    count = 1
    for dim in leading:
        count *= dim
    # torchao swizzles the (prod(leading) * rows, cols) matrix as one.
    padded_rows = -(-(count * rows) // 128) * 128
    padded_cols = -(-cols // 4) * 4
    raw = scale.view(torch.uint8).reshape(padded_rows, padded_cols)
    compact = _core.unswizzle_scales(_backends.to_core(raw, "aqt.scale"), count * rows, cols)
    return _backends.from_core(compact, "torch").view(scale.dtype).reshape(*leading, rows, cols)


def from_torchao(aqt: Any, recipe: Any = None) -> ScaledTensor:
    """torchao tensor -> ScaledTensor over the same torch buffers (zero-copy, except swizzled
    scales, which are unswizzled into a new compact tensor).

    - ``Float8Tensor``: per-tensor scale -> Float8CurrentScaling + PerTensor; per-row ->
      Float8CurrentScaling + PerChannel; block_size [bm, bk] -> Float8BlockScaling(block_m=bm,
      block_k=bk, power_2_scale=False) + PerBlockK / PerBlockMN.
    - ``MXTensor`` -> MXFP8BlockScaling (FP8 elements), MXFP6BlockScaling ("fp6_e2m3" /
      "fp6_e3m2", one code per uint8) or MXFP4BlockScaling (float4_e2m1fn_x2, packed uint8),
      scale_rounding "floor" (torchao's default; pass recipe= for "rceil").
    - ``NVFP4Tensor`` -> NVFP4BlockScaling; per_tensor_scale becomes global_scale (1.0 when
      torchao has none).
    - ``Int4Tensor`` with an all-zero zero_point (symmetric) -> INT4Scaling(signed=True),
      its (K/group, N) scale read through a transposed view. A non-zero zero_point is a float
      offset (x = q * s + z) that breccia's integer zero points cannot hold: refused.

    recipe: overrides the inferred recipe (it must fit the same buffers and layout).
    """
    classes = _torchao_classes()
    kind = next((name for name, cls in classes.items() if isinstance(aqt, cls)), None)
    if kind is None:
        raise TypeError(
            "aqt must be a torchao Float8Tensor, MXTensor, NVFP4Tensor or Int4Tensor, "
            f"got {type(aqt).__module__}.{type(aqt).__qualname__}"
        )
    if recipe is not None:
        require_recipe(recipe, "recipe")
    data, scale, inferred, layout, global_scale = _FROM[kind](aqt)
    return ScaledTensor._from_buffers(
        data, scale, inferred if recipe is None else recipe, layout, global_scale
    )


def _from_float8(aqt: Any) -> tuple[Any, ...]:
    qdata, scale = aqt.qdata, aqt.scale
    fmt = _fp8_format(qdata.dtype, "aqt.qdata")
    shape = list(qdata.shape)
    block = list(aqt.block_size) if aqt.block_size else shape
    if len(block) != len(shape) or scale.dim() != len(shape):
        raise ValueError(
            f"aqt: expected block_size and scale of rank {len(shape)}, got "
            f"block_size {aqt.block_size} and scale shape {tuple(scale.shape)}"
        )
    if block == shape or scale.numel() == 1:
        return qdata, scale.reshape(()), Float8CurrentScaling(fp8_format=fmt), PerTensor(), None
    if any(size != 1 for size in block[:-2]):
        raise ValueError(f"aqt: breccia blocks the last two axes only, got block_size {block}")
    block_m, block_k = block[-2:]
    if block_m == 1 and block_k == shape[-1]:
        return qdata, scale, Float8CurrentScaling(fp8_format=fmt), PerChannel(), None
    recipe = Float8BlockScaling(
        fp8_format=fmt, block_k=block_k, block_m=block_m, power_2_scale=False
    )
    layout = PerBlockK(block_k) if block_m == 1 else PerBlockMN(block_m, block_k)
    return qdata, scale, recipe, layout, None


def _mx_recipe(elem_dtype: Any, block_size: int) -> Any:
    torch = _torch()
    if elem_dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        fmt = _fp8_format(elem_dtype, "aqt.elem_dtype")
        return MXFP8BlockScaling(fp8_format=fmt, block_size=block_size)
    if elem_dtype == torch.float4_e2m1fn_x2:
        return MXFP4BlockScaling(block_size=block_size)
    for fmt, name in _TORCHAO_FP6.items():
        if elem_dtype == name:
            return MXFP6BlockScaling(fp6_format=fmt, block_size=block_size)
    raise ValueError(
        f"aqt.elem_dtype: expected float8_e4m3fn, float8_e5m2, fp6_e2m3, fp6_e3m2 or "
        f"float4_e2m1fn_x2, got {elem_dtype!r}"
    )


def _from_mx(aqt: Any) -> tuple[Any, ...]:
    torch = _torch()
    _refuse_transposed(aqt.qdata, "MXTensor")
    recipe = _mx_recipe(aqt.elem_dtype, aqt.block_size)
    qdata = aqt.qdata
    if qdata.dtype == torch.float4_e2m1fn_x2:
        qdata = qdata.view(torch.uint8)
    elements = qdata.shape[-1] * (2 if recipe.spec["packed"] else 1)
    scale = aqt.scale
    if aqt.is_swizzled_scales:
        scale = _unswizzled(
            scale, qdata.shape[-2], elements // aqt.block_size, tuple(qdata.shape[:-2])
        )
    return qdata, scale, recipe, PerBlockMN(1, aqt.block_size), None


def _from_nvfp4(aqt: Any) -> tuple[Any, ...]:
    torch = _torch()
    _refuse_transposed(aqt.qdata, "NVFP4Tensor")
    qdata = aqt.qdata.view(torch.uint8)
    scale = aqt.scale
    if aqt.is_swizzled_scales:
        scale = _unswizzled(
            scale, qdata.shape[-2], 2 * qdata.shape[-1] // aqt.block_size, tuple(qdata.shape[:-2])
        )
    if aqt.per_tensor_scale is None:
        global_scale = torch.ones((), dtype=torch.float32)
    elif aqt.per_tensor_scale.dim() == 0:
        global_scale = aqt.per_tensor_scale
    else:
        raise ValueError(
            "aqt: per-expert per_tensor_scale (shape "
            f"{tuple(aqt.per_tensor_scale.shape)}) has no breccia equivalent; "
            "breccia's NVFP4 global_scale is one fp32 per tensor"
        )
    return qdata, scale, NVFP4BlockScaling(), PerBlockMN(1, aqt.block_size), global_scale


def _from_int4(aqt: Any) -> tuple[Any, ...]:
    torch = _torch()
    block = list(aqt.block_size)
    if any(size != 1 for size in block[:-1]):
        raise ValueError(
            f"aqt: expected groups along the last axis (block_size [1, ..., g]), got {block}"
        )
    if bool(torch.any(aqt.zero_point != 0)):
        raise ValueError(
            "aqt: Int4Tensor's zero_point is a float offset added after scaling "
            "(x = q * scale + zero_point); breccia's INT4 zero points are integers subtracted "
            "before it, so only symmetric tensors (zero_point all 0) convert exactly"
        )
    scale_dtype = _INT4_SCALE_DTYPES.get(str(aqt.scale.dtype).rsplit(".", 1)[-1])
    if scale_dtype is None:
        raise ValueError(f"aqt.scale: expected float16, bfloat16 or float32, got {aqt.scale.dtype}")
    recipe = INT4Scaling(group_size=block[-1], signed=True, scale_dtype=scale_dtype)
    # Int4Tensor keeps scales as (..., K/group, N); breccia's are (..., N, K/group).
    scale = aqt.scale.transpose(-2, -1)
    return aqt.qdata.view(torch.uint8), scale, recipe, PerBlockK(block[-1]), None


_FROM = {
    "Float8Tensor": _from_float8,
    "MXTensor": _from_mx,
    "NVFP4Tensor": _from_nvfp4,
    "Int4Tensor": _from_int4,
}


def to_torchao(scaled: ScaledTensor, *, swizzle_scales: bool = False) -> Any:
    """ScaledTensor -> the matching torchao tensor, sharing the buffers (a NumPy/JAX/MLX
    ScaledTensor first moves to PyTorch through DLPack, zero-copy from NumPy).

    Float8CurrentScaling / DelayedScaling (PerTensor, PerChannel) and Float8BlockScaling ->
    Float8Tensor; the MX recipes (rowwise) -> MXTensor (FP8 data typed, FP6 and FP4 codes as
    uint8, with torchao's element dtypes); NVFP4BlockScaling (rowwise) ->
    NVFP4Tensor with per_tensor_scale = global_scale; INT4Scaling(signed=True, rowwise
    groups) -> Int4Tensor with a zero zero_point. swizzle_scales (extension): give MXTensor /
    NVFP4Tensor GEMM-ready swizzled scales (a new tensor). The torchao tensor's dtype
    (dequantize's default output) is float32. Anything else raises ValueError saying why.
    """
    require_scaled(scaled, "scaled")
    classes = _torchao_classes()
    if scaled.backend != _backends.TORCH:
        scaled = from_dlpack(scaled, "torch")
    recipe = scaled.recipe
    if isinstance(recipe, (Float8CurrentScaling, DelayedScaling, Float8BlockScaling)):
        return _to_float8(scaled, classes["Float8Tensor"])
    if recipe.spec["family"] == "mx":
        return _to_mx(scaled, classes["MXTensor"], swizzle_scales)
    if isinstance(recipe, NVFP4BlockScaling):
        return _to_nvfp4(scaled, classes["NVFP4Tensor"], swizzle_scales)
    return _to_int4(scaled, classes["Int4Tensor"])


def _typed_fp8(scaled: ScaledTensor) -> Any:
    torch = _torch()
    dtype = torch.float8_e4m3fn if scaled.recipe.fp8_format == "E4M3" else torch.float8_e5m2
    return scaled.data if scaled.data.dtype == dtype else scaled.data.view(dtype)


def _to_float8(scaled: ScaledTensor, cls: type) -> Any:
    torch = _torch()
    data = _typed_fp8(scaled)
    shape = list(data.shape)
    layout = scaled.layout
    if isinstance(layout, PerTensor):
        block, scale = shape, scaled.scale.reshape([1] * len(shape))
    elif isinstance(layout, PerChannel):
        block = [1] * (len(shape) - 1) + [shape[-1]]
        scale = scaled.scale.reshape(*shape[:-1], 1)
    else:
        rows, cols = (
            (1, layout.block_size)
            if isinstance(layout, PerBlockK)
            else (layout.block_m, layout.block_n)
        )
        if len(shape) < 2 or shape[-2] % rows or shape[-1] % cols:
            raise ValueError(
                f"scaled: torchao's Float8Tensor needs whole {rows} x {cols} blocks, "
                f"got shape {tuple(shape)}"
            )
        block, scale = [1] * (len(shape) - 2) + [rows, cols], scaled.scale
    return cls(data, scale, block_size=block, dtype=torch.float32)


def _rowwise(scaled: ScaledTensor, block: int) -> None:
    if scaled.layout != PerBlockMN(1, block):
        raise ValueError(
            f"scaled: torchao holds rowwise blocks (PerBlockMN(1, {block})), got "
            f"{scaled.layout!r}; cast with axis=-1, or transpose the data first"
        )


def _maybe_swizzled(scale: Any, swizzle: bool) -> Any:
    if not swizzle:
        return scale
    torch = _torch()
    rows = 1
    for dim in scale.shape[:-1]:
        rows *= dim
    raw = scale.view(torch.uint8).reshape(rows, scale.shape[-1])
    swizzled = _core.swizzle_scales(_backends.to_core(raw, "scaled.scale"))
    return _backends.from_core(swizzled, "torch").view(scale.dtype)


def _to_mx(scaled: ScaledTensor, cls: type, swizzle: bool) -> Any:
    torch = _torch()
    recipe = scaled.recipe
    _rowwise(scaled, recipe.block_size)
    element = recipe.spec["element"]
    if element in ("E4M3", "E5M2"):
        data = _typed_fp8(scaled)
        elem_dtype = data.dtype
    else:  # torchao keeps FP4 pairs and FP6 codes as uint8, named by elem_dtype
        data = scaled.data.view(torch.uint8)
        elem_dtype = torch.float4_e2m1fn_x2 if element == "E2M1" else _TORCHAO_FP6[element]
    scale = _maybe_swizzled(scaled.scale.view(torch.float8_e8m0fnu), swizzle)
    return cls(data, scale, elem_dtype, recipe.block_size, torch.float32, None, None, swizzle)


def _to_nvfp4(scaled: ScaledTensor, cls: type, swizzle: bool) -> Any:
    torch = _torch()
    _rowwise(scaled, scaled.recipe.block_size)
    scale = _maybe_swizzled(scaled.scale.view(torch.float8_e4m3fn), swizzle)
    return cls(
        scaled.data,
        scale,
        scaled.recipe.block_size,
        torch.float32,
        per_tensor_scale=scaled.global_scale.reshape(()),
        is_swizzled_scales=swizzle,
    )


def _to_int4(scaled: ScaledTensor, cls: type) -> Any:
    torch = _torch()
    recipe = scaled.recipe
    if not recipe.signed:
        raise ValueError(
            "scaled: torchao's Int4Tensor adds a float zero_point after scaling; "
            "breccia's asymmetric INT4 (integer zero points) does not map onto it "
            "exactly. Only INT4Scaling(signed=True) converts"
        )
    if not isinstance(scaled.layout, PerBlockK) or len(scaled.shape) < 2:
        raise ValueError(
            f"scaled: Int4Tensor needs groups along the last axis of a >= 2-D tensor "
            f"(PerBlockK), got {scaled.layout!r} over shape {scaled.shape}"
        )
    scale = scaled.scale.transpose(-2, -1)
    logical = list(scaled.logical_shape)
    return cls(
        scaled.data.view(torch.int8),
        scale,
        torch.zeros_like(scale),
        [1] * (len(logical) - 1) + [recipe.group_size],
        torch.Size(logical),
    )


__all__ = ["from_torchao", "to_torchao"]
