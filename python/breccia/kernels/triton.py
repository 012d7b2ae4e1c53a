"""Triton kernels (the portable GPU path), import-gated.

Where Triton cannot be imported, or no CUDA GPU of compute capability 8.9 or later (Ada,
Hopper: the FP8 tensor cores) is present, this module sets ``TRITON_AVAILABLE = False`` and
exports nothing else; importing it never fails. Where it is available,
``scaled_matmul_triton(a, b)`` multiplies two FP8 ScaledTensors held in PyTorch CUDA tensors.
Install Triton with ``pip install breccia[triton]`` (PyTorch's CUDA wheels already bring it).
"""

from __future__ import annotations


def _available() -> bool:
    """Triton imports and a CUDA GPU with FP8 tensor cores (sm_89 or later) is present."""
    try:
        import torch
        import triton  # noqa: F401
    except Exception:  # not installed, or an install that fails to import: no Triton path
        return False
    try:
        return torch.cuda.is_available() and any(
            torch.cuda.get_device_capability(device) >= (8, 9)
            for device in range(torch.cuda.device_count())
        )
    except Exception:  # a driver that fails to answer: no Triton path
        return False


TRITON_AVAILABLE: bool = _available()

__all__ = ["TRITON_AVAILABLE"]

if TRITON_AVAILABLE:
    from breccia.kernels._triton_gemm import scaled_matmul_triton

    __all__ += ["scaled_matmul_triton"]
