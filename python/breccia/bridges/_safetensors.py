"""safetensors files: breccia's layout and the checkpoint conventions (placeholder)."""

from __future__ import annotations

from typing import Any, NoReturn


def _pending(name: str) -> NoReturn:
    raise NotImplementedError(
        f"breccia.bridges.{name} is not implemented yet (the bridges issue, #4, provides it)"
    )


def save_safetensors(tensors: Any, path: Any, extra_metadata: Any = None) -> None:
    """Write ScaledTensors and plain arrays to a safetensors file."""
    _pending("save_safetensors")


def load_safetensors(path: Any) -> Any:
    """Read a safetensors file into ScaledTensors and plain arrays."""
    _pending("load_safetensors")
