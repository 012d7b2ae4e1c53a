"""Bridges between breccia and the ecosystem's formats: TransformerEngine, torchao,
safetensors, DLPack and DeepSeek-V3 checkpoints.

Not implemented yet: each function raises NotImplementedError until the bridges issue
(issue 4) lands; the signatures are final.
"""

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


def from_torchao(aqt: Any, recipe: Any = None) -> Any:
    """torchao tensor -> ScaledTensor."""
    _pending("from_torchao")


def to_torchao(scaled: Any) -> Any:
    """ScaledTensor -> torchao tensor."""
    _pending("to_torchao")


def save_safetensors(tensors: Any, path: Any, extra_metadata: Any = None) -> None:
    """Write ScaledTensors and plain arrays to a safetensors file."""
    _pending("save_safetensors")


def load_safetensors(path: Any) -> Any:
    """Read a safetensors file into ScaledTensors and plain arrays."""
    _pending("load_safetensors")


def to_dlpack(scaled: Any) -> Any:
    """ScaledTensor -> (data_capsule, scale_capsule), DLPack 1.1."""
    _pending("to_dlpack")


def from_dlpack(scaled: Any, framework: str) -> Any:
    """Move a ScaledTensor's buffers to another framework."""
    _pending("from_dlpack")


def from_deepseek_v3(data: Any, scale: Any, block_k: int = 128, fp8_format: str = "E4M3") -> Any:
    """DeepSeek-V3 FP8 weight + weight_scale_inv -> ScaledTensor."""
    _pending("from_deepseek_v3")


def to_deepseek_v3(scaled: Any) -> Any:
    """ScaledTensor -> (data, scale) in DeepSeek-V3's convention."""
    _pending("to_deepseek_v3")
