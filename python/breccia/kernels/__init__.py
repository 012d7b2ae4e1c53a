"""Kernel modules: ``reference`` (the C++ oracle, always present) and ``cuda`` (import-gated)."""

from breccia.kernels import cuda, reference

__all__ = ["cuda", "reference"]
