"""Placeholder until the bridges issue (#4) lands this bridge; the signatures are final."""

from __future__ import annotations

from typing import Any, NoReturn


def _pending(name: str) -> NoReturn:
    raise NotImplementedError(
        f"breccia.bridges.{name} is not implemented yet (the bridges issue, #4, provides it)"
    )


def from_transformer_engine(te_t: Any, recipe: Any = None) -> Any:
    """TransformerEngine tensor -> ScaledTensor."""
    _pending("from_transformer_engine")


def to_transformer_engine(scaled: Any) -> Any:
    """ScaledTensor -> TransformerEngine tensor."""
    _pending("to_transformer_engine")
