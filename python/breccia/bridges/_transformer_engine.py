"""TransformerEngine: its quantized tensors (Float8Tensor, MXFP8Tensor, Float8BlockwiseQTensor,
NVFP4Tensor) <-> ScaledTensor, through their private attributes (``_data``, ``_scale_inv``,
``_transpose``, ``_rowwise_*``, ``_columnwise_*``, ``_fp8_dtype``, ``_amax_rowwise``,
``_amax_columnwise``, ``_with_gemm_swizzled_scales``, ``_is_2D_scaled``, ``_data_format``).

Every shape here is the one TE 2.x allocates (transformer_engine/pytorch/csrc/quantizer.cpp,
``get_scale_shape`` and ``create_tensor`` of each quantizer): TE flattens all leading dims
into rows, pads its GEMM-ready scales (MXFP8/NVFP4: 128 x 4 tiles; blockwise FP8: 4 columns,
1 x 128 scales stored transposed) and may swizzle the tiles. breccia keeps the compact form.
Unswizzled padding is removed by views; padding, swizzles, scale and data transposes (packed
4-bit ones included) and NVFP4's amax <-> global_scale run in C++
(breccia::interop, src/interop/transformer_engine.cpp). Python only views and reshapes.
"""

from __future__ import annotations

import math
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
_MX_BLOCK, _NVFP4_BLOCK, _BLOCK = 32, 16, 128
_USAGES = ("rowwise", "columnwise", "both")


def _torch():
    import torch

    return torch


def _te_classes() -> Any:
    """The module holding TransformerEngine's tensor classes and its DType enum."""
    try:
        import transformer_engine.pytorch as te_pytorch
        import transformer_engine_torch as tex
    except ImportError as error:
        raise ImportError(
            "to_transformer_engine needs TransformerEngine (or pass classes=, a "
            "module with its tensor classes and DType)"
        ) from error

    class _Classes:
        Float8Tensor = te_pytorch.Float8Tensor
        MXFP8Tensor = te_pytorch.MXFP8Tensor
        Float8BlockwiseQTensor = te_pytorch.Float8BlockwiseQTensor
        NVFP4Tensor = te_pytorch.NVFP4Tensor
        DType = tex.DType

    return _Classes


# --- C++ calls (breccia::interop) -------------------------------------------------------------


def _raw(tensor: Any) -> Any:
    """1-byte codes as uint8 (what the C++ conversions take); wider dtypes unchanged."""
    torch = _torch()
    return tensor.view(torch.uint8) if tensor.element_size() == 1 else tensor


def _te_buffer(compact: Any, kind: str, swizzle: bool = False) -> Any:
    """Compact 2-D scales -> TE's padded (maybe swizzled) buffer."""
    out = _core.te_scale_buffer(_backends.to_core(_raw(compact), "scale"), kind, swizzle)
    return _backends.from_core(out, "torch")


def _te_unswizzled(buffer: Any, rows: int, cols: int, kind: str, argument: str) -> Any:
    out = _core.te_compact_scales(_backends.to_core(_raw(buffer), argument), rows, cols, kind, True)
    return _backends.from_core(out, "torch")


def _te_transpose(data: Any, packed_fp4: bool = False) -> Any:
    """(..., K) data as TE's (rows, K) matrix -> its (K, rows) transpose, as uint8 bytes."""
    return _backends.from_core(
        _core.te_transpose(_backends.to_core(_raw(data), "data"), packed_fp4), "torch"
    )


# --- shapes ------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _rows(shape: Any) -> int:
    """TE's flat row count: every leading dim flattened (quantizer.cpp's get_2d_dims)."""
    return math.prod(int(dim) for dim in shape[:-1])


# The buffer shapes TE allocates for compact (R, C) scales; see TeScaleBuffer in
# include/breccia/interop/transformer_engine.hpp.
_BUFFER_SHAPE = {
    "tiles": lambda r, c: (_round_up(r, 128), _round_up(c, 4)),
    "columnwise_tiles": lambda r, c: (_round_up(r, 4), _round_up(c, 128)),
    "pad4": lambda r, c: (r, _round_up(c, 4)),
    "transposed_pad4": lambda r, c: (c, _round_up(r, 4)),
    "compact": lambda r, c: (r, c),
}


def _compact(buffer: Any, rows: int, cols: int, kind: str, swizzled: bool, argument: str) -> Any:
    """Compact (rows, cols) scales from TE's buffer: a view without the padding, or a compact
    copy made in C++ when TE swizzled them."""
    expected = _BUFFER_SHAPE[kind](rows, cols)
    if tuple(buffer.shape) != expected:
        raise ValueError(
            f"{argument}: expected TE's padded shape {expected} for {rows} x {cols} "
            f"scales, got {tuple(buffer.shape)}"
        )
    if swizzled:
        return _te_unswizzled(buffer, rows, cols, kind, argument).view(buffer.dtype)
    if kind == "transposed_pad4":
        return buffer[:, :rows].t()
    return buffer[:rows, :cols]


def _require(buffer: Any, argument: str) -> Any:
    if buffer is None:
        raise ValueError(f"te_t.{argument} is None: this tensor has no such usage")
    return buffer


def _kind(te_t: Any) -> str:
    for cls in type(te_t).__mro__:
        if cls.__name__ in _KINDS:
            return cls.__name__
    raise TypeError(
        "te_t must be a TransformerEngine Float8Tensor, MXFP8Tensor, "
        f"Float8BlockwiseQTensor or NVFP4Tensor, got {type(te_t).__qualname__}"
    )


def _fp8(te_dtype: Any) -> tuple[str, Any]:
    torch = _torch()
    name = getattr(te_dtype, "name", str(te_dtype)).rsplit(".", 1)[-1]
    if name == "kFloat8E4M3":
        return "E4M3", torch.float8_e4m3fn
    if name == "kFloat8E5M2":
        return "E5M2", torch.float8_e5m2
    raise ValueError(f"te_t._fp8_dtype: expected kFloat8E4M3 or kFloat8E5M2, got {te_dtype}")


def _blocks_over_rows(data: Any, scale: Any, block: int) -> tuple[Any, Any]:
    """(data, scale) of blocks that run down TE's flattened rows: batched as breccia's
    (..., M / block, C) when M divides into blocks (no block spans two batch entries), else
    the flattened 2-D matrix, which is what TE scaled."""
    if data.dim() > 2 and data.shape[-2] % block == 0:
        return data, scale.reshape(*data.shape[:-2], data.shape[-2] // block, scale.shape[-1])
    return data.reshape(_rows(data.shape), data.shape[-1]), scale


# --- TE -> breccia -----------------------------------------------------------------------------


def from_transformer_engine(
    te_t: Any, recipe: Any = None, *, usage: str = "rowwise"
) -> ScaledTensor:
    """TransformerEngine tensor -> ScaledTensor over the same torch data (scales: views
    without the padding, or a compact copy when TE swizzled them).

    usage (extension): "rowwise" (default) reads the row-wise buffers. "columnwise" reads the
    column-wise ones: MXFP8's (data not transposed) give a ScaledTensor with 32 x 1 blocks, and
    TE's COMPACT blockwise format (TE 2.9-2.11, not transposed) one with 128 x 1 blocks; the
    transposed ones (Float8Tensor's ``_transpose``, blockwise FP8 and NVFP4 columnwise) give
    the row-wise ScaledTensor of the transposed 2-D matrix (K, rows), as TE stores it.
    recipe: overrides the inferred recipe (Float8CurrentScaling, or DelayedScaling when TE's
    quantizer is a Float8Quantizer; MXFP8BlockScaling(scale_rounding="rceil"), TE's rule;
    Float8BlockScaling with block_m 1 or 128; NVFP4BlockScaling).
    """
    kind = _kind(te_t)
    if usage not in ("rowwise", "columnwise"):
        raise ValueError(f"usage must be 'rowwise' or 'columnwise', got {usage!r}")
    if recipe is not None:
        require_recipe(recipe, "recipe")
    data, scale, inferred, layout, global_scale = _FROM[kind](te_t, usage == "columnwise")
    return ScaledTensor._from_buffers(
        data, scale, inferred if recipe is None else recipe, layout, global_scale
    )


def _from_float8(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    # _transpose: (K, *leading), TE's _columnwise_shape_for; one _scale_inv serves both.
    data = _require(
        te_t._transpose if columnwise else te_t._data, "_transpose" if columnwise else "_data"
    )
    quantizer = type(getattr(te_t, "_quantizer", None)).__name__
    recipe = (
        DelayedScaling(fp8_format=fmt)
        if quantizer == "Float8Quantizer"
        else Float8CurrentScaling(fp8_format=fmt)
    )
    return data.view(dtype), te_t._scale_inv.reshape(()), recipe, PerTensor(), None


def _from_mxfp8(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    swizzled = bool(te_t._with_gemm_swizzled_scales)
    recipe = MXFP8BlockScaling(fp8_format=fmt, scale_rounding="rceil")
    name = "_columnwise" if columnwise else "_rowwise"
    # Both usages keep the tensor's own shape (MXFP8Quantizer::create_tensor).
    data = _require(getattr(te_t, name + "_data"), name + "_data").view(dtype)
    rows, cols = _rows(data.shape), data.shape[-1]
    scale_inv = getattr(te_t, name + "_scale_inv")
    if not columnwise:  # (roundup(rows, 128), roundup(K / 32, 4))
        scale = _compact(
            scale_inv, rows, cols // _MX_BLOCK, "tiles", swizzled, "te_t." + name + "_scale_inv"
        )
        return data, scale.reshape(*data.shape[:-1], -1), recipe, PerBlockMN(1, _MX_BLOCK), None
    # (roundup(rows / 32, 4), roundup(K, 128)); swizzled as its transpose.
    scale = _compact(
        scale_inv,
        rows // _MX_BLOCK,
        cols,
        "columnwise_tiles",
        swizzled,
        "te_t._columnwise_scale_inv",
    )
    data, scale = _blocks_over_rows(data, scale, _MX_BLOCK)
    return data, scale, recipe, PerBlockMN(_MX_BLOCK, 1), None


def _from_blockwise(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    fmt, dtype = _fp8(te_t._fp8_dtype)
    two_d = bool(te_t._is_2D_scaled)
    # TE 2.9-2.11 only: all-gather tensors in the COMPACT format; 2.12 dropped _data_format.
    compact_format = getattr(getattr(te_t, "_data_format", None), "name", None) == "COMPACT"
    name = "_columnwise" if columnwise else "_rowwise"
    data = _require(getattr(te_t, name + "_data"), name + "_data").view(dtype)
    scale_inv = getattr(te_t, name + "_scale_inv")
    argument = f"te_t.{name}_scale_inv"
    quantizer = getattr(te_t, "_quantizer", None)
    recipe = Float8BlockScaling(
        fp8_format=fmt,
        block_k=_BLOCK,
        block_m=_BLOCK if two_d else 1,
        power_2_scale=bool(getattr(quantizer, "force_pow_2_scales", True)),
    )
    if compact_format and two_d:
        raise ValueError("te_t: TE's COMPACT format holds 1 x 128 blocks only, got _is_2D_scaled")
    if columnwise and compact_format:  # data not transposed, scales (ceil(rows/128), K)
        scale = _compact(
            scale_inv, -(-_rows(data.shape) // _BLOCK), data.shape[-1], "compact", False, argument
        )
        data, scale = _blocks_over_rows(data, scale, _BLOCK)
        return data, scale, recipe, PerBlockMN(_BLOCK, 1), None
    if columnwise:  # (K, *leading): the rowwise buffers of the transposed 2-D matrix
        data = data.reshape(data.shape[0], -1)
    rows, k_blocks = _rows(data.shape), -(-data.shape[-1] // _BLOCK)
    if two_d:  # (ceil(rows/128), roundup(ceil(K/128), 4))
        scale = _compact(scale_inv, -(-rows // _BLOCK), k_blocks, "pad4", False, argument)
        data, scale = _blocks_over_rows(data, scale, _BLOCK)
        return data, scale, recipe, PerBlockMN(_BLOCK, _BLOCK), None
    # GEMM_READY 1 x 128: stored transposed, (ceil(K/128), roundup(rows, 4)); COMPACT: (rows, ...)
    scale = _compact(
        scale_inv,
        rows,
        k_blocks,
        "compact" if compact_format else "transposed_pad4",
        False,
        argument,
    )
    return data, scale.reshape(*data.shape[:-1], k_blocks), recipe, PerBlockK(_BLOCK), None


def _from_nvfp4(te_t: Any, columnwise: bool) -> tuple[Any, ...]:
    torch = _torch()
    quantizer = getattr(te_t, "_quantizer", None)
    if columnwise and getattr(quantizer, "with_rht", False):
        raise ValueError(
            "te_t: its column-wise NVFP4 data was quantized after a random Hadamard "
            "transform (quantizer.with_rht), so it does not encode this tensor; "
            "read the row-wise usage"
        )
    name = "_columnwise" if columnwise else "_rowwise"
    # Rowwise (..., K/2); columnwise always 2-D (K, rows/2), the transposed matrix.
    data = _require(getattr(te_t, name + "_data"), name + "_data").view(torch.uint8)
    amax_name = "_amax_columnwise" if columnwise else "_amax_rowwise"
    amax = _require(getattr(te_t, amax_name), amax_name)
    rows, cols = _rows(data.shape), 2 * data.shape[-1]
    # (roundup(rows, 128), roundup(K/16, 4)) for both usages (of the transpose for columnwise).
    scale = _compact(
        getattr(te_t, name + "_scale_inv"),
        rows,
        cols // _NVFP4_BLOCK,
        "tiles",
        bool(te_t._with_gemm_swizzled_scales),
        f"te_t.{name}_scale_inv",
    )
    global_scale = _backends.from_core(
        _core.nvfp4_global_scale_from_amax(_backends.to_core(amax, f"te_t.{amax_name}")), "torch"
    )
    recipe = NVFP4BlockScaling(two_d=bool(getattr(quantizer, "with_2d_quantization", False)))
    return (
        data,
        scale.view(torch.float8_e4m3fn).reshape(*data.shape[:-1], -1),
        recipe,
        PerBlockMN(1, _NVFP4_BLOCK),
        global_scale,
    )


_FROM = {
    "Float8Tensor": _from_float8,
    "MXFP8Tensor": _from_mxfp8,
    "Float8BlockwiseQTensor": _from_blockwise,
    "NVFP4Tensor": _from_nvfp4,
}


# --- breccia -> TE -----------------------------------------------------------------------------


def _is_columnwise(scaled: ScaledTensor) -> bool:
    layout = scaled.layout
    return isinstance(layout, PerBlockMN) and layout.block_n == 1 and layout.block_m > 1


def _transposes_exactly(scaled: ScaledTensor) -> bool:
    """Whether TE's column-wise buffers are a transpose of the row-wise ones, byte for byte:
    one scale per tensor, or per 128 x 128 tile (quantize_transpose_square_blockwise.cu writes
    the tile's one scale to both)."""
    return isinstance(scaled.layout, PerTensor) or scaled.layout == PerBlockMN(_BLOCK, _BLOCK)


def _sources(scaled: ScaledTensor, columnwise: Any, usage: Any) -> tuple[Any, Any, str]:
    """The ScaledTensors to build the row-wise and column-wise buffers from, and the usage."""
    row, col = (None, scaled) if _is_columnwise(scaled) else (scaled, None)
    if columnwise is not None:
        require_scaled(columnwise, "columnwise")
        if col is not None:
            raise ValueError(
                "columnwise: scaled is already column-wise; pass the row-wise "
                "ScaledTensor as scaled"
            )
        if columnwise.recipe != scaled.recipe or tuple(columnwise.logical_shape) != tuple(
            scaled.logical_shape
        ):
            raise ValueError(
                f"columnwise: expected a quantization of the same tensor with the "
                f"same recipe, got {columnwise.recipe!r} over "
                f"{tuple(columnwise.logical_shape)} for {scaled.recipe!r} over "
                f"{tuple(scaled.logical_shape)}"
            )
        if not (_is_columnwise(columnwise) or _transposes_exactly(columnwise)):
            raise ValueError(
                f"columnwise: expected a column-wise ScaledTensor (cast(x, recipe, "
                f"axis=-2)), got layout {columnwise.layout!r}"
            )
        col = columnwise
    if usage is None:
        usage = (
            "both"
            if row is not None and col is not None
            else "rowwise"
            if row is not None
            else "columnwise"
        )
    if usage not in _USAGES:
        raise ValueError(f"usage must be 'rowwise', 'columnwise' or 'both', got {usage!r}")
    if usage != "rowwise" and col is None:
        if not _transposes_exactly(row):
            raise ValueError(
                f"usage={usage!r}: TE quantizes its column-wise buffers from the high-precision "
                f"input, and with {row.layout!r} they are not a rearrangement of the row-wise "
                "bytes; pass columnwise=cast(x, recipe, axis=-2) (or that tensor as scaled)"
            )
        col = row
    if usage != "columnwise" and row is None:
        raise ValueError(
            f"usage={usage!r}: scaled is column-wise ({scaled.layout!r}) and TE "
            "quantizes the row-wise buffers from the high-precision input; pass "
            "the row-wise cast(x, recipe) as scaled and this one as columnwise="
        )
    return (row if usage != "columnwise" else None), (col if usage != "rowwise" else None), usage


def _torch_scaled(scaled: Any) -> Any:
    if scaled is None or scaled.backend == _backends.TORCH:
        return scaled
    return from_dlpack(scaled, "torch")


def to_transformer_engine(
    scaled: ScaledTensor,
    *,
    columnwise: ScaledTensor | None = None,
    usage: str | None = None,
    classes: Any = None,
    swizzle_scales: bool = False,
) -> Any:
    """ScaledTensor -> TransformerEngine tensor.

    Data is shared where TE's layout is breccia's (row-wise data; MXFP8's column-wise data);
    transposed column-wise data (Float8Tensor, blockwise FP8, NVFP4) and every scale buffer are
    built in C++ in TE's padded GEMM-ready shapes, swizzled on request (swizzle_scales,
    extension; MXFP8/NVFP4, recorded as ``_with_gemm_swizzled_scales``). A NumPy/JAX/MLX
    ScaledTensor first moves to PyTorch through DLPack. NVFP4's global_scale becomes an
    ``_amax_rowwise`` / ``_amax_columnwise`` that TE's rule maps back to it exactly.

    usage (extension): "rowwise", "columnwise" or "both"; by default what the sources give.
    The column-wise buffers come from a column-wise ScaledTensor, cast(x, recipe, axis=-2),
    passed as scaled or as columnwise= (extension) next to the row-wise one: TE quantizes each
    usage from the high-precision input, so they cannot be made from row-wise bytes, except
    where they are a plain transpose of them (per-tensor FP8, 128 x 128 blockwise FP8).
    classes (extension): a namespace with TE's four tensor classes and its DType enum, default
    transformer_engine's own.

    Per-tensor FP8 -> Float8Tensor; MXFP8BlockScaling -> MXFP8Tensor; Float8BlockScaling
    (1 x 128 or 128 x 128) -> Float8BlockwiseQTensor; NVFP4BlockScaling -> NVFP4Tensor.
    INT4, other block sizes and shapes TE's quantizers refuse: ValueError.
    """
    require_scaled(scaled, "scaled")
    classes = _te_classes() if classes is None else classes
    scaled, columnwise = _torch_scaled(scaled), _torch_scaled(columnwise)
    row, col, _ = _sources(scaled, columnwise, usage)
    recipe = scaled.recipe
    for kinds, build in _TO:
        if isinstance(recipe, kinds):
            return build(row, col, classes, swizzle_scales)
    raise ValueError(f"scaled: TransformerEngine has no tensor for {recipe!r}")


def _te_dtype(classes: Any, fmt: str) -> Any:
    return {
        "E4M3": classes.DType.kFloat8E4M3,
        "E5M2": classes.DType.kFloat8E5M2,
        "E2M1": classes.DType.kFloat4E2M1,
    }[fmt]


def _shape_of(row: Any, col: Any) -> tuple[int, ...]:
    return tuple((row if row is not None else col).logical_shape)


def _transposed_data(scaled: ScaledTensor) -> Any:
    """TE's (K, *leading) transposed FP8 data (_columnwise_shape_for / create_tensor)."""
    shape = tuple(scaled.shape)
    return _te_transpose(scaled.data).reshape(shape[-1], *shape[:-1])


def _require_divisible(shape: tuple[int, ...], block: int, what: str) -> None:
    """TE's quantizers refuse shapes whose flat rows or K do not divide into blocks
    (MXFP8Quantizer / NVFP4Quantizer::get_scale_shape); so does this bridge."""
    if len(shape) < 2 or _rows(shape) % block or shape[-1] % block:
        raise ValueError(
            f"scaled: TE's {what} needs the flattened rows and the last dim to be "
            f"multiples of {block}, got shape {shape}"
        )


def _to_float8(row: Any, col: Any, classes: Any, swizzle: bool) -> Any:
    source = row if row is not None else col
    if source.layout != PerTensor():
        raise ValueError(
            f"scaled: TE's Float8Tensor has one scale per tensor, got {source.layout!r}"
        )
    torch = _torch()
    if (
        row is not None
        and col is not None
        and not torch.equal(row.scale.reshape(1), col.scale.reshape(1))
    ):
        raise ValueError(
            "columnwise: TE's Float8Tensor has one _scale_inv for both usages, "
            "got two different scales"
        )
    return classes.Float8Tensor(
        shape=_shape_of(row, col),
        dtype=torch.float32,
        data=None if row is None else row.data.view(torch.uint8),
        fp8_scale_inv=source.scale.reshape(1).clone(),
        fp8_dtype=_te_dtype(classes, source.recipe.fp8_format),
        data_transpose=None if col is None else _transposed_data(col),
    )


def _to_mxfp8(row: Any, col: Any, classes: Any, swizzle: bool) -> Any:
    torch = _torch()
    shape = _shape_of(row, col)
    _require_divisible(shape, _MX_BLOCK, "MXFP8Tensor")
    rows, cols = _rows(shape), shape[-1]
    buffers = {
        "rowwise_data": None,
        "rowwise_scale_inv": None,
        "columnwise_data": None,
        "columnwise_scale_inv": None,
    }
    if row is not None:
        if row.layout != PerBlockMN(1, _MX_BLOCK):
            raise ValueError(
                f"scaled: TE's MXFP8 uses 1 x 32 and 32 x 1 blocks, got {row.layout!r}"
            )
        buffers["rowwise_data"] = row.data.view(torch.uint8)
        buffers["rowwise_scale_inv"] = _te_buffer(row.scale.reshape(rows, -1), "tiles", swizzle)
    if col is not None:
        if col.layout != PerBlockMN(_MX_BLOCK, 1):
            raise ValueError(
                f"columnwise: TE's column-wise MXFP8 uses 32 x 1 blocks, got {col.layout!r}"
            )
        buffers["columnwise_data"] = col.data.view(torch.uint8)  # not transposed
        buffers["columnwise_scale_inv"] = _te_buffer(
            col.scale.reshape(rows // _MX_BLOCK, cols), "columnwise_tiles", swizzle
        )
    return classes.MXFP8Tensor(
        shape=shape,
        dtype=torch.float32,
        **buffers,
        fp8_dtype=_te_dtype(classes, (row if row is not None else col).recipe.fp8_format),
        with_gemm_swizzled_scales=swizzle,
    )


def _to_blockwise(row: Any, col: Any, classes: Any, swizzle: bool) -> Any:
    torch = _torch()
    source = row if row is not None else col
    recipe = source.recipe
    shape = _shape_of(row, col)
    two_d = recipe.block_m == _BLOCK
    if recipe.block_k != _BLOCK or recipe.block_m not in (1, _BLOCK):
        raise ValueError(
            f"scaled: TE's Float8BlockwiseQTensor holds 1 x 128 or 128 x 128 blocks, got {recipe!r}"
        )
    if swizzle:
        raise ValueError(
            "swizzle_scales: TE's blockwise FP8 scales are GEMM-ready without a 128 x 4 swizzle"
        )
    if (two_d or col is not None) and len(shape) > 2 and shape[-2] % _BLOCK:
        raise ValueError(
            f"scaled: TE's 128 x 128 tiles and 128 x 1 column-wise blocks run over "
            f"the flattened rows, which breccia's per-matrix blocks match only "
            f"when dim -2 is a multiple of 128, got shape {shape}"
        )
    buffers = {
        "rowwise_data": None,
        "rowwise_scale_inv": None,
        "columnwise_data": None,
        "columnwise_scale_inv": None,
    }
    if row is not None:
        buffers["rowwise_data"] = row.data.view(torch.uint8)
        # 1 x 128: (M, K/128) stored transposed; 128 x 128: padded to 4 columns.
        buffers["rowwise_scale_inv"] = _te_buffer(
            row.scale.reshape(-1, row.scale.shape[-1]), "pad4" if two_d else "transposed_pad4"
        )
    if col is not None:
        if not two_d and col.layout != PerBlockMN(_BLOCK, 1):
            raise ValueError(
                f"columnwise: TE's column-wise 1 x 128 blocks are breccia's "
                f"PerBlockMN(128, 1) (cast with axis=-2), got {col.layout!r}"
            )
        buffers["columnwise_data"] = _transposed_data(col)
        # 1 x 128 of the transpose: (ceil(rows/128), roundup(K, 4)), which is breccia's
        # (rows/128, K) padded; 128 x 128: the tile scales transposed, (ceil(K/128), ...).
        buffers["columnwise_scale_inv"] = _te_buffer(
            col.scale.reshape(-1, col.scale.shape[-1]), "transposed_pad4" if two_d else "pad4"
        )
    return classes.Float8BlockwiseQTensor(
        shape=shape,
        dtype=torch.float32,
        **buffers,
        fp8_dtype=_te_dtype(classes, recipe.fp8_format),
        is_2D_scaled=two_d,
    )


def _amax(scaled: ScaledTensor) -> Any:
    return _backends.from_core(
        _core.nvfp4_amax_for_global_scale(
            _backends.to_core(scaled.global_scale, "scaled.global_scale")
        ),
        "torch",
    )


def _to_nvfp4(row: Any, col: Any, classes: Any, swizzle: bool) -> Any:
    torch = _torch()
    shape = _shape_of(row, col)
    _require_divisible(shape, _NVFP4_BLOCK, "NVFP4Tensor")
    rows, cols = _rows(shape), shape[-1]
    buffers = {
        "rowwise_data": None,
        "rowwise_scale_inv": None,
        "columnwise_data": None,
        "columnwise_scale_inv": None,
        "amax_rowwise": None,
        "amax_columnwise": None,
    }
    if row is not None:
        if row.layout != PerBlockMN(1, _NVFP4_BLOCK):
            raise ValueError(
                f"scaled: TE's NVFP4 uses 1 x 16 blocks (16 x 1 column-wise), got {row.layout!r}"
            )
        buffers["rowwise_data"] = row.data.view(torch.uint8)
        buffers["rowwise_scale_inv"] = _te_buffer(row.scale.reshape(rows, -1), "tiles", swizzle)
        buffers["amax_rowwise"] = _amax(row)
    if col is not None:
        if col.layout != PerBlockMN(_NVFP4_BLOCK, 1):
            raise ValueError(
                f"columnwise: TE's column-wise NVFP4 is breccia's "
                f"PerBlockMN(16, 1) (cast with axis=-2), got {col.layout!r}"
            )
        # Data and scales of the transposed matrix: (K, rows/2) codes, (K, rows/16) scales.
        buffers["columnwise_data"] = _te_transpose(col.data, packed_fp4=True)
        transposed_scale = _te_transpose(col.scale.reshape(rows // _NVFP4_BLOCK, cols))
        buffers["columnwise_scale_inv"] = _te_buffer(transposed_scale, "tiles", swizzle)
        buffers["amax_columnwise"] = _amax(col)
    return classes.NVFP4Tensor(
        shape=shape,
        dtype=torch.float32,
        **buffers,
        fp4_dtype=_te_dtype(classes, "E2M1"),
        with_gemm_swizzled_scales=swizzle,
    )


_TO = (
    ((Float8CurrentScaling, DelayedScaling), _to_float8),
    (MXFP8BlockScaling, _to_mxfp8),
    (Float8BlockScaling, _to_blockwise),
    (NVFP4BlockScaling, _to_nvfp4),
)


__all__ = ["from_transformer_engine", "to_transformer_engine"]
