"""Bridges between breccia and the ecosystem's formats: safetensors files (breccia's own
layout and the DeepSeek-V3, compressed-tensors and ModelOpt checkpoint conventions), DLPack,
DeepSeek-V3 tensors, torchao and TransformerEngine. See docs/bridges.md."""

from breccia.bridges._deepseek import from_deepseek_v3, quantize_deepseek_v3, to_deepseek_v3
from breccia.bridges._dlpack import DLPackBuffer, dlpack_buffers, from_dlpack, to_dlpack
from breccia.bridges._safetensors import load_safetensors, save_safetensors
from breccia.bridges._torchao import from_torchao, to_torchao
from breccia.bridges._transformer_engine import from_transformer_engine, to_transformer_engine

__all__ = [
    # extensions
    "DLPackBuffer",
    "dlpack_buffers",
    "from_deepseek_v3",
    "from_dlpack",
    "from_torchao",
    "from_transformer_engine",
    "load_safetensors",
    "quantize_deepseek_v3",
    "save_safetensors",
    "to_deepseek_v3",
    "to_dlpack",
    "to_torchao",
    "to_transformer_engine",
]
