"""Kernel modules: ``reference`` (the C++ oracle, always present), ``cuda`` (import-gated) and
``triton`` (import-gated, imported on request: ``from breccia.kernels import triton``)."""

from breccia.kernels import cuda, reference

__all__ = ["cuda", "reference"]
