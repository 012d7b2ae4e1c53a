"""breccia: low-precision scaled tensors (FP8, the OCP MX family, NVFP4, INT4) for NumPy,
PyTorch, MLX and JAX.

One data class (``ScaledTensor``), five operations (``cast``, ``dequantize``, ``matmul``,
``requantize``, ``from_buffer``) and the extensions ``linear`` and ``cast_for_gemm``, eight
recipes and four layouts (``breccia.layouts``). Every
number is computed by breccia's C++ core; this package converts arrays, without copying where
the framework allows, and results come back in the input's framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from breccia import _core, _ops
from breccia._scaled_tensor import ScaledTensor
from breccia.layouts import Layout, PerBlockK, PerBlockMN, PerChannel, PerTensor, layout_from_json
from breccia.recipes import (
    DelayedScaling,
    DelayedScalingState,
    Float8BlockScaling,
    Float8CurrentScaling,
    INT4Scaling,
    MXFP4BlockScaling,
    MXFP6BlockScaling,
    MXFP8BlockScaling,
    NVFP4BlockScaling,
    ScalingRecipe,
    recipe_from_json,
)

__version__: str = _core.__version__


def cast(
    x: Any,
    recipe: ScalingRecipe,
    axis: int = -1,
    *,
    state: DelayedScalingState | None = None,
    tensor_amax: float | None = None,
) -> ScaledTensor:
    """Quantize a high-precision tensor under ``recipe``.

    x: a float32/float16/bfloat16/float64 NumPy, PyTorch (CPU), MLX or JAX (CPU) array; the
    result's data and scale are arrays of the same framework. recipe: one of the recipes.
    Block-scaled recipes (Float8BlockScaling, the MX recipes, NVFP4BlockScaling, INT4Scaling)
    need x.ndim >= 2 and the blocked dimension divisible by the block size.

    axis (extension): -1 (default) puts the blocks along the last dimension; -2 along the
    second-to-last (the K dimension of a right-hand matmul operand); the layout says which.
    state (extension): a DelayedScalingState for DelayedScaling; quantizes with its current
    scale and updates its amax history. Without it DelayedScaling uses this tensor's amax.
    tensor_amax (extension, NVFP4BlockScaling): the amax (not negative) the global scale is
    computed from instead of x's own. Projections a serving stack fuses into one GEMM (q/k/v,
    gate/up) must share one global scale: cast each with the largest amax of the group.

    Raises TypeError for a non-array or non-float x, ValueError for a shape the recipe cannot
    block, NotImplementedError for a GPU array when breccia was built without CUDA kernels.

    >>> st = breccia.cast(np.ones((4, 64), np.float32), breccia.MXFP8BlockScaling())
    """
    return _ops.cast(_ops.AUTOMATIC, x, recipe, axis, state, tensor_amax)


def cast_for_gemm(
    x: Any,
    recipe: ScalingRecipe,
    *,
    rowwise: bool = True,
    columnwise: bool = True,
    swizzled_scales: bool = False,
    state: DelayedScalingState | None = None,
) -> _ops.GemmCast:
    """Quantize x for GEMMs in one go, as TransformerEngine's quantizers do (extension).

    Returns ``GemmCast(rowwise, columnwise, rowwise_swizzled_scale, columnwise_swizzled_scale)``:
    ``rowwise`` is ``cast(x, recipe, axis=-1)`` (the form a GEMM's left operand takes),
    ``columnwise`` is ``cast(x, recipe, axis=-2)`` (the form of the operand's transpose in the
    backward pass); a part not asked for is None. On CUDA both come from one read of x.

    swizzled_scales (the MX recipes and NVFP4BlockScaling only): also return the scales as
    cuBLASLt's and TransformerEngine's block-scaled GEMMs read them: each scale matrix padded to
    whole 128 x 4 tiles and swizzled (uint8, ``(..., roundup(M, 128), roundup(K / block, 4))``;
    the columnwise one is the transposed scale matrix's, ``(..., roundup(K, 128),
    roundup(M / block, 4))``). The compact scales stay in the ScaledTensors.

    Per-tensor recipes and 128 x 128 blocks give the same tensor under both axes, returned once
    as both parts; NVFP4 ``two_d`` shares its codes and global_scale. state: as in ``cast``
    (advanced once). Raises ValueError when neither part is asked for, when swizzled scales
    are asked of another recipe, or when the recipe cannot block x along an axis.
    """
    return _ops.cast_for_gemm(x, recipe, rowwise, columnwise, swizzled_scales, state)


def dequantize(scaled: ScaledTensor, out_dtype: Any = np.float32) -> Any:
    """Recover a high-precision tensor from a ScaledTensor: decode(data) * scale in fp32.

    The result is an array of the ScaledTensor's framework with its logical shape (packed
    4-bit data unpacked). out_dtype (extension): float32 (default), float16, bfloat16 or
    float64, given as a NumPy, ml_dtypes, PyTorch or MLX dtype or its name; the fp32 product
    is rounded to it (nearest even).
    """
    return _ops.dequantize(_ops.AUTOMATIC, scaled, out_dtype)


def matmul(a: Any, b: Any, out_dtype: Any = np.float32) -> Any:
    """Scaled matmul: (..., M, K) @ (..., K, N) -> (..., M, N), batch dims broadcast as NumPy.

    Each operand is a ScaledTensor or a plain float array; both must belong to one framework
    (mixing raises ValueError). Operands are dequantized to fp32, multiplied in fp32, and the
    result is rounded to out_dtype (float32 by default).
    """
    return _ops.matmul(_ops.AUTOMATIC, a, b, out_dtype)


def linear(x: Any, w: Any, bias: Any = None, out_dtype: Any = np.float32) -> Any:
    """A linear layer (extension): ``x @ dequantize(w).T + bias`` for a weight w of shape
    (N, K), blocked along K, as every checkpoint stores it (``cast(W, recipe)`` of an
    ``nn.Linear`` weight). x: (..., K), a ScaledTensor or a plain float array; bias: (N,) or
    None. Both operands are dequantized to fp32 and multiplied in fp32, the bias is added in
    fp32, and the sum is rounded once to out_dtype. No transposed copy of w is made on any
    kernel: the CPU GEMM reads w as stored, and on CUDA an FP8 weight feeds the FP8 GEMMs as a
    transposed view (other formats are dequantized to bf16 as stored).

    ``matmul(x, w)`` is ``x @ w``; for an (N, K) weight this is the call to use.
    """
    return _ops.linear(_ops.AUTOMATIC, x, w, bias, out_dtype)


def requantize(
    scaled: ScaledTensor,
    new_recipe: ScalingRecipe,
    axis: int = -1,
    *,
    state: DelayedScalingState | None = None,
) -> ScaledTensor:
    """Convert a ScaledTensor to another recipe: ``cast(dequantize(scaled), new_recipe)``.

    Requantizing to the tensor's own recipe (and blocking axis) returns the same bytes. axis
    and state (extensions) are as in ``cast``.
    """
    return _ops.requantize(_ops.AUTOMATIC, scaled, new_recipe, axis, state)


def reencode_fp4_as_fp8(x: ScaledTensor, tile: int = 128) -> ScaledTensor:
    """A 2-D MXFP4 tensor as FP8 E4M3 blocks with every value kept (extension): DeepSeek-V4's
    re-encode of its FP4 experts for Hopper's FP8 GEMMs.

    Returns ``Float8BlockScaling(block_m=tile, block_k=tile, power_2_scale=True)`` with
    ``PerBlockMN(tile, tile)``: each tile's scale is its largest E8M0 block scale over 2^6, each
    element its E2M1 value times its block's scale over the tile's (at most 384), so
    ``dequantize`` of the result equals ``dequantize(x)`` bit for bit. Raises ValueError naming
    the element when a block's scale lies more than 2^14 below its tile's largest (the element
    would underflow E4M3) or is NaN. CPU data; tile is a positive multiple of 32.
    """
    return _ops.reencode_fp4_as_fp8(x, tile)


def from_buffer(
    data: Any,
    scale: Any,
    recipe: ScalingRecipe,
    layout: Layout,
    global_scale: Any = None,
    zero_point: Any = None,
) -> ScaledTensor:
    """Wrap existing quantized buffers (a checkpoint's, a vendor library's) as a ScaledTensor.

    No reduction, no quantization and no copy: the ScaledTensor holds the very arrays given,
    after the same validation as the constructor (dtype and scale shape for recipe and
    layout). global_scale (NVFP4) and zero_point (unsigned INT4) are extensions, required by
    those recipes.
    """
    return _ops.from_buffer(data, scale, recipe, layout, global_scale, zero_point)


def num_threads() -> int:
    """Threads the CPU kernels use (extension): BRECCIA_NUM_THREADS if set, else all cores."""
    return int(_core.num_threads())


def set_num_threads(threads: int) -> None:
    """Set the threads the CPU kernels use, for the whole process (extension); threads >= 1.

    The kernels run on OpenMP's thread pool and release the GIL, so other Python threads run
    meanwhile. PyTorch's ``torch.set_num_threads`` is separate: set both when you share cores.
    """
    _core.set_num_threads(threads)


# Submodules reachable as breccia.kernels.reference, breccia.bridges.load_safetensors, ...
from breccia import bridges, kernels  # noqa: E402

__all__ = [
    "DelayedScaling",
    "DelayedScalingState",
    "Float8BlockScaling",
    "Float8CurrentScaling",
    "INT4Scaling",
    "Layout",
    "MXFP4BlockScaling",
    "MXFP6BlockScaling",
    "MXFP8BlockScaling",
    "NVFP4BlockScaling",
    "PerBlockK",
    "PerBlockMN",
    "PerChannel",
    "PerTensor",
    "ScaledTensor",
    "ScalingRecipe",
    "__version__",
    "bridges",
    "cast",
    "cast_for_gemm",
    "dequantize",
    "from_buffer",
    "kernels",
    "layout_from_json",
    "linear",
    "matmul",
    "num_threads",
    "recipe_from_json",
    "reencode_fp4_as_fp8",
    "requantize",
    "set_num_threads",
]
