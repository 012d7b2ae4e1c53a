"""TransformerEngine: its quantized tensors (Float8Tensor, MXFP8Tensor, Float8BlockwiseQTensor,
NVFP4Tensor) <-> ScaledTensor, through their documented private attributes (``_data``,
``_scale_inv``, ``_rowwise_*``, ``_columnwise_*``, ``_fp8_dtype``, ``_amax_rowwise``,
``_with_gemm_swizzled_scales``, ``_is_2D_scaled``).

TE pads its GEMM-ready scales (MXFP8/NVFP4: rows to 128, scale columns to 4; blockwise FP8:
transposed and padded to 4) and may swizzle them in 128 x 4 tiles; breccia keeps the compact
form. Padding is removed by views where possible; unswizzling, swizzling and NVFP4's amax <->
global_scale run in C++. Python only views, slices and copies bytes.
"""

from __future__ import annotations

from typing import Any

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor, require_scaled
from breccia.bridges._dlpack import from_dlpack
from breccia.layouts import PerBlockK, PerBlockMN, PerTensor
from breccia.recipes import (
    DelayedScaling,
    Float8BlockScaling,
    Float8CurrentScaling,
    MXFP8BlockScaling,
    NVFP4BlockScaling,
    require_recipe,
)

_KINDS = ("Float8Tensor", "MXFP8Tensor", "Float8BlockwiseQTensor", "NVFP4Tensor")
_TILE_ROWS, _TILE_COLS, _BLOCK = 128, 4, 128


def _torch():
    import torch

    return torch


def _te_classes() -> Any:
    """The module holding TransformerEngine's tensor classes and its DType enum."""
    try:
        import transformer_engine.pytorch as te_pytorch
        import transformer_engine_torch as tex
    except ImportError as error:
        raise ImportError("to_transformer_engine needs TransformerEngine (or pass classes=, a "
                          "module with its tensor classes and DType)") from error

    class _Classes:
        Float8Tensor = te_pytorch.Float8Tensor
        MXFP8Tensor = te_pytorch.MXFP8Tensor
        Float8BlockwiseQTensor = te_pytorch.Float8BlockwiseQTensor
        NVFP4Tensor = te_pytorch.NVFP4Tensor
        DType = tex.DType

    return _Classes


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _kind(te_t: Any) -> str:
    for cls in type(te_t).__mro__:
        if cls.__name__ in _KINDS:
            return cls.__name__
    raise TypeError("te_t must be a TransformerEngine Float8Tensor, MXFP8Tensor, "
                    f"Float8BlockwiseQTensor or NVFP4Tensor, got {type(te_t).__qualname__}")


def _fp8(te_dtype: Any) -> tuple[str, Any]:
    torch = _torch()
    name = getattr(te_dtype, "name", str(te_dtype)).rsplit(".", 1)[-1]
    if name == "kFloat8E4M3":
        return "E4M3", torch.float8_e4m3fn
    if name == "kFloat8E5M2":
        return "E5M2", torch.float8_e5m2
    raise ValueError(f"te_t._fp8_dtype: expected kFloat8E4M3 or kFloat8E5M2, got {te_dtype}")


def _matrix(shape: Any) -> tuple[int, int]:
    """TE's 2-D view of a tensor: all leading dims flattened into rows."""
    rows = 1
    for dim in shape[:-1]:
        rows *= int(dim)
    return rows, int(shape[-1])


def _compact(scale: Any, rows: int, cols: int, swizzled: bool, argument: str) -> Any:
    """Compact (rows, cols) 1-byte scales from TE's padded (and maybe swizzled) ones."""
    padded = (_round_up(rows, _TILE_ROWS), _round_up(cols, _TILE_COLS))
    if tuple(scale.shape) != padded:
        raise ValueError(f"{argument}: expected the padded shape {padded} for {rows} x {cols} "
                         f"scales, got {tuple(scale.shape)}")
    if not swizzled:
        return scale[:rows, :cols]
    compact = _core.unswizzle_scales(_backends.to_core(scale, argument), rows, cols)
    return _backends.from_core(compact, "torch").view(scale.dtype)


def _require(buffer: Any, argument: str) -> Any:
    if buffer is None:
        raise ValueError(f"te_t.{argument} is None: this tensor has no such usage")
    return buffer


def from_transformer_engine(te_t: Any, recipe: Any = None, *,
                            usage: str = "rowwise") -> ScaledTensor:
    """TransformerEngine tensor -> ScaledTensor over the same torch buffers (scales: views
    without the padding, or a compact copy when TE swizzled them).

    usage (extension): "rowwise" (default) reads the row-wise buffers. "columnwise" reads the
    column-wise ones: for MXFP8 (data not transposed) a ScaledTensor with 32 x 1 blocks; for
    Float8Tensor's ``_transpose``, blockwise FP8 and NVFP4 (transposed data) the ScaledTensor
    of the transposed matrix, as TE stores it. recipe: overrides the inferred recipe
    (Float8CurrentScaling, or DelayedScaling when TE's quantizer is a Float8Quantizer;
    MXFP8BlockScaling(scale_rounding="rceil"), TE's rule; Float8BlockScaling with block_m 1 or
    128; NVFP4BlockScaling).
    """
    kind = _kind(te_t)
    if usage not in ("rowwise", "columnwise"):
        raise ValueError(f"usage must be 'rowwise' or 'columnwise', got {usage!r}")
    if recipe is not None:
        require_recipe(recipe, "recipe")
    data, scale, inferred, layout, global_scale = _FROM[kind](te_t, usage == "columnwise")
    return ScaledTensor._from_buffers(data, scale, inferred if recipe is None else recipe, layout,
                                      global_scale)


def _from_float8(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    data = _require(te_t._transpose if columnwise else te_t._data,
                    "_transpose" if columnwise else "_data")
    quantizer = type(getattr(te_t, "_quantizer", None)).__name__
    recipe = DelayedScaling(fp8_format=fmt) if quantizer == "Float8Quantizer" else \
        Float8CurrentScaling(fp8_format=fmt)
    return data.view(dtype), te_t._scale_inv.reshape(()), recipe, PerTensor(), None


def _from_mxfp8(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    swizzled = bool(te_t._with_gemm_swizzled_scales)
    recipe = MXFP8BlockScaling(fp8_format=fmt, scale_rounding="rceil")
    if not columnwise:
        data = _require(te_t._rowwise_data, "_rowwise_data")
        rows, cols = _matrix(data.shape)
        scale = _compact(te_t._rowwise_scale_inv, rows, cols // 32, swizzled, "te_t._rowwise_scale_inv")
        return (data.view(dtype), scale.view(*data.shape[:-1], cols // 32), recipe,
                PerBlockMN(1, 32), None)
    if swizzled:
        raise NotImplementedError("te_t: swizzled column-wise MXFP8 scales are not supported; "
                                  "read the row-wise usage, or unswizzled scales")
    data = _require(te_t._columnwise_data, "_columnwise_data")
    rows, cols = _matrix(data.shape)
    scale_inv = te_t._columnwise_scale_inv
    padded = (_round_up(rows // 32, _TILE_COLS), _round_up(cols, _TILE_ROWS))
    if tuple(scale_inv.shape) != padded:
        raise ValueError(f"te_t._columnwise_scale_inv: expected the padded shape {padded}, got "
                         f"{tuple(scale_inv.shape)}")
    if data.dim() != 2:
        raise ValueError(f"te_t: column-wise MXFP8 is read for 2-D tensors, got {tuple(data.shape)}")
    return data.view(dtype), scale_inv[:rows // 32, :cols], recipe, PerBlockMN(32, 1), None


def _from_blockwise(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    two_d = bool(te_t._is_2D_scaled)
    compact_format = getattr(te_t._data_format, "name", "GEMM_READY") == "COMPACT"
    name = "_columnwise" if columnwise else "_rowwise"
    data = _require(getattr(te_t, name + "_data"), name + "_data")
    scale_inv = getattr(te_t, name + "_scale_inv")
    if columnwise and compact_format:
        raise NotImplementedError("te_t: COMPACT column-wise blockwise data (not transposed, "
                                  "all-gather usage) is not supported; read the row-wise usage")
    rows, cols = _matrix(data.shape)  # of the matrix as stored (transposed when columnwise)
    k_blocks = -(-cols // _BLOCK)
    if two_d:
        expected = (-(-rows // _BLOCK), _round_up(k_blocks, _TILE_COLS))
        scale = scale_inv[:, :k_blocks]
    elif compact_format:
        expected = (rows, k_blocks)
        scale = scale_inv
    else:  # GEMM_READY 1-D scales are stored transposed: (K blocks, padded M)
        expected = (k_blocks, _round_up(rows, _TILE_COLS))
        scale = scale_inv[:, :rows].t()
    if tuple(scale_inv.shape) != expected:
        raise ValueError(f"te_t.{name}_scale_inv: expected shape {expected}, got "
                         f"{tuple(scale_inv.shape)}")
    if data.dim() != 2:
        raise ValueError(f"te_t: blockwise FP8 is read for 2-D tensors, got {tuple(data.shape)}")
    quantizer = getattr(te_t, "_quantizer", None)
    recipe = Float8BlockScaling(fp8_format=fmt, block_k=_BLOCK, block_m=_BLOCK if two_d else 1,
                                power_2_scale=bool(getattr(quantizer, "force_pow_2_scales", True)))
    layout = PerBlockMN(_BLOCK, _BLOCK) if two_d else PerBlockK(_BLOCK)
    return data.view(dtype), scale, recipe, layout, None


def _from_nvfp4(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    torch = _torch()
    name = "_columnwise" if columnwise else "_rowwise"
    data = _require(getattr(te_t, name + "_data"), name + "_data").view(torch.uint8)
    amax = _require(getattr(te_t, "_amax_columnwise" if columnwise else "_amax_rowwise"),
                    "_amax_columnwise" if columnwise else "_amax_rowwise")
    rows, packed_cols = _matrix(data.shape)
    scale = _compact(getattr(te_t, name + "_scale_inv"), rows, 2 * packed_cols // 16,
                     bool(te_t._with_gemm_swizzled_scales), f"te_t.{name}_scale_inv")
    global_scale = _backends.from_core(
        _core.nvfp4_global_scale_from_amax(_backends.to_core(amax, "te_t amax")), "torch")
    quantizer = getattr(te_t, "_quantizer", None)
    recipe = NVFP4BlockScaling(two_d=bool(getattr(quantizer, "with_2d_quantization", False)))
    return (data, scale.view(torch.float8_e4m3fn).view(*data.shape[:-1], scale.shape[-1]), recipe,
            PerBlockMN(1, 16), global_scale)


_FROM = {
    "Float8Tensor": _from_float8,
    "MXFP8Tensor": _from_mxfp8,
    "Float8BlockwiseQTensor": _from_blockwise,
    "NVFP4Tensor": _from_nvfp4,
}


def to_transformer_engine(scaled: ScaledTensor, *, classes: Any = None,
                          swizzle_scales: bool = False) -> Any:
    """ScaledTensor -> TransformerEngine tensor with row-wise usage (column-wise buffers None).

    Data is shared (a NumPy/JAX/MLX ScaledTensor first moves to PyTorch through DLPack);
    scales are copied into TE's padded GEMM-ready shapes, swizzled in C++ when
    swizzle_scales (extension; MXFP8/NVFP4). NVFP4's global_scale becomes an ``_amax_rowwise``
    that TE's rule maps back to it exactly. classes (extension): a namespace with TE's four
    tensor classes and its DType enum, default transformer_engine's own.

    Per-tensor FP8 -> Float8Tensor; MXFP8BlockScaling (rowwise) -> MXFP8Tensor;
    Float8BlockScaling (1 x 128 or 128 x 128, rowwise) -> Float8BlockwiseQTensor;
    NVFP4BlockScaling (rowwise) -> NVFP4Tensor. INT4 and other block sizes: ValueError.
    """
    require_scaled(scaled, "scaled")
    classes = _te_classes() if classes is None else classes
    if scaled.backend != _backends.TORCH:
        scaled = from_dlpack(scaled, "torch")
    recipe = scaled.recipe
    torch = _torch()
    shape = tuple(scaled.logical_shape)
    if isinstance(recipe, (Float8CurrentScaling, DelayedScaling)):
        if not isinstance(scaled.layout, PerTensor):
            raise ValueError(f"scaled: TE's Float8Tensor has one scale per tensor, got {scaled.layout!r}")
        return classes.Float8Tensor(
            shape=shape, dtype=torch.float32, data=scaled.data.view(torch.uint8),
            fp8_scale_inv=scaled.scale.reshape(1), fp8_dtype=_te_dtype(classes, recipe.fp8_format),
            data_transpose=None)
    if isinstance(recipe, MXFP8BlockScaling):
        if scaled.layout != PerBlockMN(1, 32):
            raise ValueError(f"scaled: only row-wise MXFP8 (PerBlockMN(1, 32)) converts, got "
                             f"{scaled.layout!r}")
        scale = _gemm_ready(scaled.scale.view(torch.uint8), swizzle_scales)
        return classes.MXFP8Tensor(
            shape=shape, dtype=torch.float32, rowwise_data=scaled.data.view(torch.uint8),
            rowwise_scale_inv=scale, columnwise_data=None, columnwise_scale_inv=None,
            fp8_dtype=_te_dtype(classes, recipe.fp8_format), with_gemm_swizzled_scales=swizzle_scales)
    if isinstance(recipe, Float8BlockScaling):
        return _to_blockwise(scaled, classes)
    if isinstance(recipe, NVFP4BlockScaling):
        if scaled.layout != PerBlockMN(1, 16):
            raise ValueError(f"scaled: only row-wise NVFP4 (PerBlockMN(1, 16)) converts, got "
                             f"{scaled.layout!r}")
        scale = _gemm_ready(scaled.scale.view(torch.uint8), swizzle_scales)
        amax = _backends.from_core(_core.nvfp4_amax_for_global_scale(
            _backends.to_core(scaled.global_scale, "scaled.global_scale")), "torch")
        return classes.NVFP4Tensor(
            shape=shape, dtype=torch.float32, rowwise_data=scaled.data, rowwise_scale_inv=scale,
            columnwise_data=None, columnwise_scale_inv=None, amax_rowwise=amax,
            amax_columnwise=None, fp4_dtype=_te_dtype(classes, "E2M1"),
            with_gemm_swizzled_scales=swizzle_scales)
    raise ValueError(f"scaled: TransformerEngine has no tensor for {recipe!r}")


def _te_dtype(classes: Any, fmt: str) -> Any:
    return {"E4M3": classes.DType.kFloat8E4M3, "E5M2": classes.DType.kFloat8E5M2,
            "E2M1": classes.DType.kFloat4E2M1}[fmt]


def _gemm_ready(scale: Any, swizzle: bool) -> Any:
    """(..., R, C) 1-byte scales -> TE's padded (and maybe swizzled) 2-D matrix."""
    matrix = scale.reshape(-1, scale.shape[-1])
    if swizzle:
        return _backends.from_core(_core.swizzle_scales(_backends.to_core(matrix, "scale")), "torch")
    return _padded(matrix, _round_up(matrix.shape[0], _TILE_ROWS),
                   _round_up(matrix.shape[1], _TILE_COLS))


def _padded(matrix: Any, rows: int, cols: int) -> Any:
    torch = _torch()
    out = torch.zeros((rows, cols), dtype=matrix.dtype)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out


def _to_blockwise(scaled: ScaledTensor, classes: Any) -> Any:
    torch = _torch()
    recipe = scaled.recipe
    rowwise_1d = scaled.layout == PerBlockK(_BLOCK) and recipe.block_m == 1
    rowwise_2d = scaled.layout == PerBlockMN(_BLOCK, _BLOCK)
    if recipe.block_k != _BLOCK or not (rowwise_1d or rowwise_2d) or len(scaled.shape) != 2:
        raise ValueError(f"scaled: TE's Float8BlockwiseQTensor holds 2-D row-wise 1 x 128 or "
                         f"128 x 128 blocks, got {recipe!r} with {scaled.layout!r} over "
                         f"{scaled.shape}")
    rows = scaled.shape[0]
    if rowwise_2d:
        scale = _padded(scaled.scale, scaled.scale.shape[0], _round_up(scaled.scale.shape[1], 4))
    else:  # GEMM_READY 1-D scales are stored transposed
        scale = _padded(scaled.scale.t(), scaled.scale.shape[1], _round_up(rows, 4))
    return classes.Float8BlockwiseQTensor(
        shape=tuple(scaled.shape), dtype=torch.float32, rowwise_data=scaled.data.view(torch.uint8),
        rowwise_scale_inv=scale, columnwise_data=None, columnwise_scale_inv=None,
        fp8_dtype=_te_dtype(classes, recipe.fp8_format), is_2D_scaled=rowwise_2d)


__all__ = ["from_transformer_engine", "to_transformer_engine"]
