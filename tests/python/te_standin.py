"""A stand-in for TransformerEngine's quantized tensor classes, for machines where TE cannot be
installed (it needs CUDA to build). It reproduces only what the bridge reads and writes: the
constructor keywords and private attributes of TE 2.x's PyTorch classes
(transformer_engine/pytorch/tensor/*.py and storage/*.py), and it checks every buffer against
the shape TE's quantizers allocate (transformer_engine/pytorch/csrc/quantizer.cpp,
``get_scale_shape`` / ``create_tensor``), so a bridge that builds a wrongly shaped buffer fails
here. TE flattens leading dims: for shape (..., K), rows = prod(...).

- Float8Tensor: ``_data`` uint8 (shape), ``_scale_inv`` fp32 (1,), ``_fp8_dtype``,
  ``_transpose`` uint8 (K, *leading) (float8_tensor.py ``_columnwise_shape_for``) or None.
- MXFP8Tensor: ``_rowwise_data`` / ``_columnwise_data`` uint8 (shape; columnwise NOT
  transposed), ``_rowwise_scale_inv`` uint8 (roundup(rows, 128), roundup(K/32, 4)),
  ``_columnwise_scale_inv`` uint8 (roundup(rows/32, 4), roundup(K, 128)), ``_fp8_dtype``,
  ``_with_gemm_swizzled_scales``; rows and K multiples of 32.
- Float8BlockwiseQTensor: ``_rowwise_data`` uint8 (shape), ``_columnwise_data`` uint8
  (K, *leading), fp32 scales in the GEMM_READY shapes: 1-D (ceil(K/128), roundup(rows, 4)) and
  (ceil(rows/128), roundup(K, 4)); 2-D (ceil(rows/128), roundup(ceil(K/128), 4)) and
  (ceil(K/128), roundup(ceil(rows/128), 4)); ``_fp8_dtype``, ``_is_2D_scaled``. TE 2.9-2.11
  also had ``_data_format`` (Float8BlockScaleTensorFormat); its COMPACT all-gather format keeps
  1-D scales unpadded and untransposed, (rows, ceil(K/128)), and columnwise data NOT
  transposed with (ceil(rows/128), K) scales. TE 2.12 dropped it: pass data_format=None.
- NVFP4Tensor: ``_rowwise_data`` uint8 (..., K/2), ``_columnwise_data`` uint8 (K, rows/2)
  (transposed, always 2-D), uint8 E4M3 ``_rowwise_scale_inv`` (roundup(rows, 128),
  roundup(K/16, 4)) and ``_columnwise_scale_inv`` (roundup(K, 128), roundup(rows/16, 4)),
  fp32 ``_amax_rowwise`` / ``_amax_columnwise`` (1,), ``_fp4_dtype``,
  ``_with_gemm_swizzled_scales``; rows and K multiples of 16.

These are plain objects, not torch.Tensor subclasses: nothing here computes.
"""

from __future__ import annotations

import enum
import math
from typing import Any


class DType(enum.Enum):
    """transformer_engine_torch.DType, the members the quantized tensors use."""

    kByte = 0
    kFloat32 = 4
    kFloat8E4M3 = 7
    kFloat8E5M2 = 8
    kFloat4E2M1 = 10


class Float8BlockScaleTensorFormat(enum.Enum):
    GEMM_READY = 0
    COMPACT = 1


def _up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _div(value: int, block: int) -> int:
    return -(-value // block)


def _check(buffer: Any, expected: tuple[int, ...], name: str) -> None:
    if buffer is not None and tuple(buffer.shape) != tuple(expected):
        raise ValueError(f"{name}: TE allocates {tuple(expected)}, got {tuple(buffer.shape)}")


class _QuantizedTensor:
    def __init__(self, shape: Any, dtype: Any) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self._rows = math.prod(self.shape[:-1])
        self._k = self.shape[-1]


class Float8Tensor(_QuantizedTensor):
    def __init__(
        self,
        *,
        shape: Any,
        dtype: Any,
        data: Any,
        fp8_scale_inv: Any,
        fp8_dtype: DType,
        data_transpose: Any = None,
        quantizer: Any = None,
    ) -> None:
        super().__init__(shape, dtype)
        _check(data, self.shape, "data")
        _check(fp8_scale_inv, (1,), "fp8_scale_inv")
        _check(data_transpose, (self._k, *self.shape[:-1]), "data_transpose")
        self._data = data
        self._scale_inv = fp8_scale_inv
        self._fp8_dtype = fp8_dtype
        self._transpose = data_transpose
        self._transpose_invalid = data_transpose is None
        self._quantizer = quantizer


class MXFP8Tensor(_QuantizedTensor):
    def __init__(
        self,
        *,
        shape: Any,
        dtype: Any,
        rowwise_data: Any,
        rowwise_scale_inv: Any,
        columnwise_data: Any,
        columnwise_scale_inv: Any,
        fp8_dtype: DType,
        quantizer: Any = None,
        with_gemm_swizzled_scales: bool = False,
    ) -> None:
        super().__init__(shape, dtype)
        if self._rows % 32 or self._k % 32:
            raise ValueError(f"MXFP8 requires tensor dims that are divisible by 32, got {shape}")
        _check(rowwise_data, self.shape, "rowwise_data")
        _check(columnwise_data, self.shape, "columnwise_data")
        _check(
            rowwise_scale_inv, (_up(self._rows, 128), _up(self._k // 32, 4)), "rowwise_scale_inv"
        )
        _check(
            columnwise_scale_inv,
            (_up(self._rows // 32, 4), _up(self._k, 128)),
            "columnwise_scale_inv",
        )
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._fp8_dtype = fp8_dtype
        self._quantizer = quantizer
        self._with_gemm_swizzled_scales = with_gemm_swizzled_scales


class Float8BlockwiseQTensor(_QuantizedTensor):
    def __init__(
        self,
        *,
        shape: Any,
        dtype: Any,
        rowwise_data: Any,
        rowwise_scale_inv: Any,
        columnwise_data: Any,
        columnwise_scale_inv: Any,
        fp8_dtype: DType,
        quantizer: Any = None,
        is_2D_scaled: bool = False,
        data_format: Float8BlockScaleTensorFormat | None = None,
    ) -> None:
        super().__init__(shape, dtype)
        m, k = self._rows, self._k
        compact = data_format == Float8BlockScaleTensorFormat.COMPACT
        if compact and is_2D_scaled:
            raise ValueError("2D scaling is always GEMM_READY")
        _check(rowwise_data, self.shape, "rowwise_data")
        _check(columnwise_data, self.shape if compact else (k, *self.shape[:-1]), "columnwise_data")
        if is_2D_scaled:
            row_scale = (_div(m, 128), _up(_div(k, 128), 4))
            col_scale = (_div(k, 128), _up(_div(m, 128), 4))
        elif compact:
            row_scale, col_scale = (m, _div(k, 128)), (_div(m, 128), k)
        else:
            row_scale, col_scale = (_div(k, 128), _up(m, 4)), (_div(m, 128), _up(k, 4))
        _check(rowwise_scale_inv, row_scale, "rowwise_scale_inv")
        _check(columnwise_scale_inv, col_scale, "columnwise_scale_inv")
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._fp8_dtype = fp8_dtype
        self._quantizer = quantizer
        self._is_2D_scaled = is_2D_scaled
        if data_format is not None:  # the attribute exists in TE 2.9-2.11 only
            self._data_format = data_format


class NVFP4Tensor(_QuantizedTensor):
    def __init__(
        self,
        *,
        shape: Any,
        dtype: Any,
        rowwise_data: Any,
        rowwise_scale_inv: Any,
        columnwise_data: Any,
        columnwise_scale_inv: Any,
        amax_rowwise: Any,
        amax_columnwise: Any,
        fp4_dtype: DType,
        quantizer: Any = None,
        with_gemm_swizzled_scales: bool = False,
    ) -> None:
        super().__init__(shape, dtype)
        m, k = self._rows, self._k
        if m % 16 or k % 16:
            raise ValueError(f"NVFP4 requires tensor dims that are divisible by 16, got {shape}")
        _check(rowwise_data, (*self.shape[:-1], k // 2), "rowwise_data")
        _check(columnwise_data, (k, m // 2), "columnwise_data")
        _check(rowwise_scale_inv, (_up(m, 128), _up(k // 16, 4)), "rowwise_scale_inv")
        _check(columnwise_scale_inv, (_up(k, 128), _up(m // 16, 4)), "columnwise_scale_inv")
        _check(amax_rowwise, (1,), "amax_rowwise")
        _check(amax_columnwise, (1,), "amax_columnwise")
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._amax_rowwise = amax_rowwise
        self._amax_columnwise = amax_columnwise
        self._fp4_dtype = fp4_dtype
        self._quantizer = quantizer
        self._with_gemm_swizzled_scales = with_gemm_swizzled_scales
