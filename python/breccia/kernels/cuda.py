"""CUDA kernels (Hopper), import-gated.

Where breccia was built without CUDA, or no GPU is present, this module sets
``CUDA_AVAILABLE = False`` and exports nothing else.
"""

from breccia import _core

CUDA_AVAILABLE: bool = bool(_core.CUDA_BUILT)

__all__ = ["CUDA_AVAILABLE"]
