"""CUDA kernels (Hopper), import-gated.

Where breccia was built without CUDA, or no GPU is present, this module sets
``CUDA_AVAILABLE = False`` and exports nothing else. Where it is available,
``scaled_matmul_cuda(a, b)`` multiplies two CUDA ScaledTensors on the tensor cores;
``breccia.cast``, ``dequantize`` and ``matmul`` already run on the GPU for CUDA tensors.
"""

from breccia import _core


def _gpu_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


CUDA_AVAILABLE: bool = bool(_core.CUDA_BUILT) and _gpu_present()

__all__ = ["CUDA_AVAILABLE"]

if CUDA_AVAILABLE:
    from typing import Any as _Any

    from breccia import _backends
    from breccia._scaled_tensor import ScaledTensor as _ScaledTensor
    from breccia._scaled_tensor import require_scaled as _require_scaled

    def scaled_matmul_cuda(a: _ScaledTensor, b: _ScaledTensor, out_dtype: _Any = "float32") -> _Any:
        """``dequantize(a) @ dequantize(b)`` on Hopper's tensor cores, accumulated in fp32.

        a: a CUDA ScaledTensor (M, K); b: (K, N), cast with ``axis=-2`` or a transposed view of
        an (N, K) weight. Per-tensor FP8 (E4M3 x E4M3 or E4M3 x E5M2) and DeepSeek-style blocks
        (a 1x128, b 128x128) run as FP8 GEMMs with the scales applied in the kernel; every other
        pair (MXFP8, NVFP4, INT4, ...) is dequantized on the GPU to bf16 with its block scales,
        its per-tensor factor going to the GEMM's alpha, and multiplied by a bf16 GEMM (exact
        values for MXFP8, NVFP4 and per-tensor FP8). out_dtype: float32, float16 or bfloat16 (a
        dtype or its name). Shapes no kernel takes raise NotImplementedError naming the reason.
        The output is a torch tensor from PyTorch's allocator on its current stream.
        """
        _require_scaled(a, "a")
        _require_scaled(b, "b")
        out = _core.scaled_matmul_cuda(
            a._native,
            b._native,
            _backends.dtype_name(out_dtype, "out_dtype"),
            *_backends.device_context(a.data),
        )
        return _backends.from_core(out, _backends.TORCH)

    __all__ += ["scaled_matmul_cuda"]
