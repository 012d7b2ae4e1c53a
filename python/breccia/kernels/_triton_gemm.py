"""The FP8 scaled matmul in Triton (imported by breccia.kernels.triton only where Triton and an
FP8-capable GPU are present).

One kernel covers per-tensor and K-blocked scales: the K loop steps by 128, the scale block
along K, so each step's fp32 partial product takes its rows' and columns' decode scales once
(DeepSeek's promotion every 128 of K). A per-tensor operand reads its one scale through zero
strides; when both are per tensor the scales are applied once, after the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from breccia import _backends
from breccia._scaled_tensor import ScaledTensor, require_scaled
from breccia.layouts import PerBlockK, PerBlockMN, PerTensor

BLOCK_K = 128  # the K step, and the only scale block along K the kernel takes

_FP8_DTYPES = {"E4M3": torch.float8_e4m3fn, "E5M2": torch.float8_e5m2}  # by spec element
_OUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _configs() -> list[triton.Config]:
    shapes = [  # (BLOCK_M, BLOCK_N, warps, stages): small-M tiles for decoding, wide ones else
        (16, 64, 4, 4),
        (32, 128, 4, 4),
        (64, 128, 4, 4),
        (64, 256, 8, 3),
        (128, 128, 8, 3),
        (128, 256, 8, 3),
    ]
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for m, n, w, s in shapes
    ]


@triton.autotune(configs=_configs(), key=["M", "N", "K", "PER_TENSOR"])
@triton.jit
def _scaled_mm_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    scale_a_ptr,
    scale_b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    stride_sam,
    stride_sak,
    stride_sbk,
    stride_sbn,
    A_ROWS_PER_SCALE: tl.constexpr,
    B_COLS_PER_SCALE: tl.constexpr,
    PER_TENSOR: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # Tiles in groups of GROUP_M rows, so that neighbouring programs share B's columns in L2.
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    group_tiles = GROUP_M * tiles_n
    first_m = (pid // group_tiles) * GROUP_M
    group_m = min(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_tiles) % group_m
    pid_n = (pid % group_tiles) // group_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < N
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn
    row_scales = scale_a_ptr + (rows // A_ROWS_PER_SCALE) * stride_sam
    col_scales = scale_b_ptr + (cols // B_COLS_PER_SCALE) * stride_sbn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for step in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - step * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & (ks[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(ks[:, None] < k_left) & col_ok[None, :], other=0.0)
        if PER_TENSOR:
            acc = tl.dot(a, b, acc)
        else:
            scale_a = tl.load(row_scales + step * stride_sak, mask=row_ok, other=0.0)
            scale_b = tl.load(col_scales + step * stride_sbk, mask=col_ok, other=0.0)
            acc += tl.dot(a, b) * scale_a[:, None] * scale_b[None, :]
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    if PER_TENSOR:
        acc = acc * tl.load(scale_a_ptr) * tl.load(scale_b_ptr)

    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


@dataclass(frozen=True)
class _Operand:
    data: torch.Tensor  # FP8 codes as a float8 tensor
    scale: torch.Tensor  # fp32 decode scales, indexed (outer block, K block)
    scale_strides: tuple[int, int]  # (outer, K); zeros for a per-tensor scale
    outer_per_scale: int  # rows of a (columns of b) per scale entry
    per_tensor: bool


_SUPPORTED = (
    "FP8 per tensor (Float8CurrentScaling, DelayedScaling) or blocked along K by 128 "
    "(Float8BlockScaling: a 1x128 or 128x128, b 128x128 or cast with axis=-2)"
)


def _operand(scaled: ScaledTensor, argument: str, k_axis: int) -> _Operand:
    """Reads an FP8 operand; k_axis is 1 for a (M, K) and 0 for b (K, N)."""
    require_scaled(scaled, argument)
    recipe, layout = scaled.recipe, scaled.layout
    spec = recipe.spec  # FP8 elements with fp32 scales: the per-tensor and block FP8 recipes
    if spec["family"] != "fp8" or spec["scale"] != "fp32":
        raise NotImplementedError(
            f"scaled_matmul_triton: {argument} must be {_SUPPORTED}; got "
            f"{type(recipe).__name__} (breccia.matmul multiplies every recipe)"
        )
    data = scaled.data
    if _backends.backend_of(data) != _backends.TORCH or data.device.type != "cuda":
        raise ValueError(
            f"scaled_matmul_triton: {argument} must hold PyTorch CUDA tensors, got "
            f"{_backends.backend_of(data)} data on {getattr(data, 'device', 'cpu')}"
        )
    if data.ndim != 2:
        raise ValueError(
            f"scaled_matmul_triton: {argument} must be 2-D, got shape {tuple(data.shape)}"
        )
    fp8 = _FP8_DTYPES[spec["element"]]
    data = data.view(fp8) if data.dtype == torch.uint8 else data
    scale = scaled.scale
    if isinstance(layout, PerTensor):
        return _Operand(data, scale.reshape(-1)[:1], (0, 0), 1, True)
    if isinstance(layout, PerBlockK) and k_axis == 1:
        blocks = (1, layout.block_size)
    elif isinstance(layout, PerBlockMN):
        blocks = (layout.block_m, layout.block_n)
    else:
        blocks = (0, 0)
    if blocks[k_axis] != BLOCK_K or blocks[1 - k_axis] < 1:
        raise NotImplementedError(
            f"scaled_matmul_triton: {argument} must be {_SUPPORTED}; got {layout!r} on a "
            f"{'(M, K)' if k_axis == 1 else '(K, N)'} operand"
        )
    strides = scale.stride()
    return _Operand(data, scale, (strides[1 - k_axis], strides[k_axis]), blocks[1 - k_axis], False)


def scaled_matmul_triton(a: ScaledTensor, b: ScaledTensor, out_dtype: Any = "float32") -> Any:
    """``dequantize(a) @ dequantize(b)`` on the FP8 tensor cores, accumulated in fp32.

    a: an (M, K) ScaledTensor, b: (K, N) (cast with ``axis=-2``, or the ``.T`` view of an
    (N, K) weight), both FP8 in PyTorch CUDA tensors on one device: per tensor, or blocked
    along K by 128 (DeepSeek's a 1x128 and b 128x128), in any pairing. Each 128 of K is
    multiplied on the tensor cores, then scaled and added in fp32. out_dtype: float32,
    bfloat16 or float16. Runs on PyTorch's current stream; the output comes from its allocator.
    Other recipes or layouts raise NotImplementedError, non-CUDA or mismatched operands
    ValueError.
    """
    lhs = _operand(a, "a", k_axis=1)
    rhs = _operand(b, "b", k_axis=0)
    (m, k), (k_b, n) = lhs.data.shape, rhs.data.shape
    if k != k_b:
        raise ValueError(
            f"scaled_matmul_triton: a is ({m}, {k}) and b is ({k_b}, {n}); "
            "a's columns must equal b's rows"
        )
    if lhs.data.device != rhs.data.device:
        raise ValueError(
            f"scaled_matmul_triton: a is on {lhs.data.device} and b on {rhs.data.device}; "
            "move them to one device"
        )
    device = lhs.data.device
    if torch.cuda.get_device_capability(device) < (8, 9):
        raise NotImplementedError(
            f"scaled_matmul_triton needs FP8 tensor cores (sm_89 or later); {device} is "
            f"sm_{''.join(map(str, torch.cuda.get_device_capability(device)))}"
        )
    name = _backends.dtype_name(out_dtype, "out_dtype")
    if name not in _OUT_DTYPES:
        raise ValueError(
            f"scaled_matmul_triton: out_dtype must be float32, bfloat16 or float16, got {name}"
        )
    out = torch.empty((m, n), dtype=_OUT_DTYPES[name], device=device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        return out.zero_()

    def grid(meta: dict[str, int]) -> tuple[int]:
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    with torch.cuda.device(device):
        _scaled_mm_kernel[grid](
            lhs.data,
            rhs.data,
            out,
            lhs.scale,
            rhs.scale,
            m,
            n,
            k,
            *lhs.data.stride(),
            *rhs.data.stride(),
            *out.stride(),
            *lhs.scale_strides,
            rhs.scale_strides[1],
            rhs.scale_strides[0],
            A_ROWS_PER_SCALE=lhs.outer_per_scale,
            B_COLS_PER_SCALE=rhs.outer_per_scale,
            PER_TENSOR=lhs.per_tensor and rhs.per_tensor,
            BLOCK_K=BLOCK_K,
        )
    return out
