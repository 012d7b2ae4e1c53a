"""A stand-in for TransformerEngine's quantized tensor classes, for machines where TE cannot be
installed (it needs CUDA to build). It reproduces only what the bridge reads and writes: the
constructor keywords and the private attributes of TE 2.x's PyTorch classes
(transformer_engine/pytorch/tensor/*.py and csrc/quantizer.cpp), with the same buffer shapes:

- Float8Tensor: ``_data`` uint8 (shape), ``_scale_inv`` fp32 (1,), ``_fp8_dtype``,
  ``_transpose`` uint8 (last dim first) or None.
- MXFP8Tensor: ``_rowwise_data`` / ``_columnwise_data`` uint8 (shape; columnwise NOT
  transposed), ``_rowwise_scale_inv`` uint8 (roundup(M, 128), roundup(K/32, 4)),
  ``_columnwise_scale_inv`` uint8 (roundup(M/32, 4), roundup(K, 128)), ``_fp8_dtype``,
  ``_with_gemm_swizzled_scales``.
- Float8BlockwiseQTensor: ``_rowwise_data`` uint8 (shape), ``_columnwise_data`` uint8
  transposed, fp32 ``_rowwise_scale_inv`` / ``_columnwise_scale_inv`` in the GEMM_READY shapes
  (1-D: (ceil(K/128), roundup(M, 4)) and (ceil(M/128), roundup(K, 4)); 2-D:
  (ceil(M/128), roundup(ceil(K/128), 4)) and (ceil(K/128), roundup(ceil(M/128), 4))),
  ``_fp8_dtype``, ``_is_2D_scaled``, ``_data_format``.
- NVFP4Tensor: ``_rowwise_data`` uint8 (M, K/2), ``_columnwise_data`` uint8 (K, M/2)
  (transposed), uint8 E4M3 ``_rowwise_scale_inv`` (roundup(M, 128), roundup(K/16, 4)) and
  ``_columnwise_scale_inv`` (roundup(K, 128), roundup(M/16, 4)), fp32 ``_amax_rowwise`` /
  ``_amax_columnwise`` (1,), ``_fp4_dtype``, ``_with_gemm_swizzled_scales``.

These are plain objects, not torch.Tensor subclasses: nothing here computes.
"""

from __future__ import annotations

import enum
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


class _QuantizedTensor:
    def __init__(self, shape: Any, dtype: Any) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype


class Float8Tensor(_QuantizedTensor):
    def __init__(self, *, shape: Any, dtype: Any, data: Any, fp8_scale_inv: Any, fp8_dtype: DType,
                 data_transpose: Any = None, quantizer: Any = None) -> None:
        super().__init__(shape, dtype)
        self._data = data
        self._scale_inv = fp8_scale_inv
        self._fp8_dtype = fp8_dtype
        self._transpose = data_transpose
        self._transpose_invalid = data_transpose is None
        self._quantizer = quantizer


class MXFP8Tensor(_QuantizedTensor):
    def __init__(self, *, shape: Any, dtype: Any, rowwise_data: Any, rowwise_scale_inv: Any,
                 columnwise_data: Any, columnwise_scale_inv: Any, fp8_dtype: DType,
                 quantizer: Any = None, with_gemm_swizzled_scales: bool = False) -> None:
        super().__init__(shape, dtype)
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._fp8_dtype = fp8_dtype
        self._quantizer = quantizer
        self._with_gemm_swizzled_scales = with_gemm_swizzled_scales


class Float8BlockwiseQTensor(_QuantizedTensor):
    def __init__(self, *, shape: Any, dtype: Any, rowwise_data: Any, rowwise_scale_inv: Any,
                 columnwise_data: Any, columnwise_scale_inv: Any, fp8_dtype: DType,
                 quantizer: Any = None, is_2D_scaled: bool = False,
                 data_format: Float8BlockScaleTensorFormat = Float8BlockScaleTensorFormat.GEMM_READY
                 ) -> None:
        super().__init__(shape, dtype)
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._fp8_dtype = fp8_dtype
        self._quantizer = quantizer
        self._is_2D_scaled = is_2D_scaled
        self._data_format = data_format


class NVFP4Tensor(_QuantizedTensor):
    def __init__(self, *, shape: Any, dtype: Any, rowwise_data: Any, rowwise_scale_inv: Any,
                 columnwise_data: Any, columnwise_scale_inv: Any, amax_rowwise: Any,
                 amax_columnwise: Any, fp4_dtype: DType, quantizer: Any = None,
                 with_gemm_swizzled_scales: bool = False) -> None:
        super().__init__(shape, dtype)
        self._rowwise_data = rowwise_data
        self._rowwise_scale_inv = rowwise_scale_inv
        self._columnwise_data = columnwise_data
        self._columnwise_scale_inv = columnwise_scale_inv
        self._amax_rowwise = amax_rowwise
        self._amax_columnwise = amax_columnwise
        self._fp4_dtype = fp4_dtype
        self._quantizer = quantizer
        self._with_gemm_swizzled_scales = with_gemm_swizzled_scales
