"""Placeholder until the bridges issue (#4) lands this bridge; the signatures are final."""

from __future__ import annotations

from typing import Any, NoReturn


def _pending(name: str) -> NoReturn:
    raise NotImplementedError(
        f"breccia.bridges.{name} is not implemented yet (the bridges issue, #4, provides it)"
    )


def from_torchao(aqt: Any, recipe: Any = None) -> Any:
    """torchao tensor -> ScaledTensor."""
    _pending("from_torchao")


def to_torchao(scaled: Any) -> Any:
    """ScaledTensor -> torchao tensor."""
    _pending("to_torchao")
