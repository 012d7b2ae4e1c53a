"""Placeholder until the bridges issue (#4) lands this bridge; the signatures are final."""

from __future__ import annotations

from typing import Any, NoReturn


def _pending(name: str) -> NoReturn:
    raise NotImplementedError(
        f"breccia.bridges.{name} is not implemented yet (the bridges issue, #4, provides it)"
    )


def from_deepseek_v3(data: Any, scale: Any, block_k: int = 128, fp8_format: str = "E4M3") -> Any:
    """DeepSeek-V3 FP8 weight + weight_scale_inv -> ScaledTensor."""
    _pending("from_deepseek_v3")


def to_deepseek_v3(scaled: Any) -> Any:
    """ScaledTensor -> (data, scale) in DeepSeek-V3's convention."""
    _pending("to_deepseek_v3")
