"""Placeholder until the bridges issue (#4) lands this bridge; the signatures are final."""

from __future__ import annotations

from typing import Any, NoReturn


def _pending(name: str) -> NoReturn:
    raise NotImplementedError(
        f"breccia.bridges.{name} is not implemented yet (the bridges issue, #4, provides it)"
    )


def to_dlpack(scaled: Any) -> Any:
    """ScaledTensor -> (data_capsule, scale_capsule), DLPack 1.1."""
    _pending("to_dlpack")


def from_dlpack(scaled: Any, framework: str) -> Any:
    """Move a ScaledTensor's buffers to another framework."""
    _pending("from_dlpack")
