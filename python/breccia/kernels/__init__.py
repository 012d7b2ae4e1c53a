"""Kernel modules: ``reference`` (the C++ oracle, always present) and ``cuda`` (import-gated)."""
