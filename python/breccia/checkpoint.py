"""Whole checkpoints (extension): a model directory (sharded ``*.safetensors``,
``model.safetensors.index.json``, ``config.json``, tokenizer files) or one safetensors file.

``convert`` turns every weight matrix into another format and convention, ``inspect`` lists what a
checkpoint holds and what is wrong with it, ``compare`` measures one checkpoint against another.
The work happens in breccia's C++ engine (``breccia/io/model.hpp``); the ``breccia`` command line
is a front end to these functions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor
from breccia.recipes import recipe_from_native

#: The formats ``convert`` writes.
FORMATS: tuple[str, ...] = tuple(_core.convert_formats())
#: Tensor-name patterns (regular expressions, searched) that stay high precision by default.
DEFAULT_IGNORE: tuple[str, ...] = tuple(_core.default_ignore_patterns())

Progress = Callable[[int, int, int, int, str], None]


def default_convention(format: str) -> str:
    """The convention ``convert`` writes ``format`` in unless told otherwise."""
    return str(_core.default_convention(format))


@dataclass(frozen=True)
class ConvertedTensor:
    name: str
    action: str  # quantized, requantized, dequantized, kept, dropped
    detail: str
    shard: str
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class ConvertReport:
    tensors: list[ConvertedTensor]
    shards: list[str]
    resumed_shards: list[str]
    copied_files: list[str]
    convention: str
    bytes_read: int
    bytes_written: int


def convert(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    format: str,
    *,
    convention: str | None = None,
    ignore: Sequence[str] = (),
    default_ignore: bool = True,
    format_for: Sequence[tuple[str, str]] = (),
    group_size: int = 128,
    int4_signed: bool = True,
    int4_scale_dtype: str = "bf16",
    scale_rounding: str = "floor",
    fp8_format: str = "E4M3",
    max_shard_bytes: int = 5_000_000_000,
    overwrite: bool = False,
    resume: bool = False,
    validate: str = "error",
    progress: Progress | None = None,
    device: str | Any = "cpu",
) -> ConvertReport:
    """Convert the checkpoint at ``source`` into the directory ``destination``.

    Every weight matrix not matched by ``ignore`` (and, unless ``default_ignore=False``,
    :data:`DEFAULT_IGNORE`) is cast to ``format`` (one of :data:`FORMATS`), or dequantized for
    ``bf16``/``fp16``/``fp32``; the rest is copied. Shards of at most ``max_shard_bytes`` are
    each written atomically, then the index, ``config.json`` with the convention's
    ``quantization_config``, and the other files. ``progress(bytes_done, bytes_total,
    tensors_done, tensors_total, current)`` is called as the work goes on. Ctrl-C abandons the
    conversion without leaving a partial file; ``resume=True`` continues it.

    ``format_for``: (pattern, format) pairs for mixed precision: a weight whose name matches a
    pattern (regular expression, searched; the first that matches) takes that quantized format
    instead of ``format``. ModelOpt writes ``MIXED_PRECISION`` with a ``quant_algo`` per layer,
    compressed-tensors one config group per format.

    ``device``: where the casts run, ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (or a ``torch.device``;
    each tensor copied to the GPU and back; the same bytes, the GPU kernels being bit-identical
    to the CPU's). A build without CUDA kernels raises NotImplementedError for a CUDA device.
    """
    raw = _core.convert_model(
        os.fspath(source),
        os.fspath(destination),
        format,
        convention,
        list(ignore),
        default_ignore,
        group_size,
        int4_signed,
        int4_scale_dtype,
        scale_rounding,
        fp8_format,
        max_shard_bytes,
        overwrite,
        resume,
        validate,
        progress,
        [(str(pattern), str(chosen)) for pattern, chosen in format_for],
        str(device),
    )
    return ConvertReport(
        tensors=[ConvertedTensor(**item) for item in raw["tensors"]],
        shards=list(raw["shards"]),
        resumed_shards=list(raw["resumed_shards"]),
        copied_files=list(raw["copied_files"]),
        convention=str(raw["convention"]),
        bytes_read=int(raw["bytes_read"]),
        bytes_written=int(raw["bytes_written"]),
    )


@dataclass(frozen=True)
class TensorInfo:
    name: str
    convention: (
        str  # breccia, deepseek-v3, deepseek-v4, compressed-tensors, modelopt, gpt-oss, plain
    )
    file: str
    stored: list[str]
    shape: tuple[int, ...]
    format: str  # the dtype of a plain array, or the recipe
    layout: str
    scale_shape: tuple[int, ...] | None
    bytes: int
    problems: list[str] = field(default_factory=list)


def inspect(path: str | os.PathLike[str]) -> list[TensorInfo]:
    """Every tensor of the checkpoint at ``path`` with its convention, format, shapes, size and
    problems (NaN, infinite, negative or out-of-range scales, FP8 data without scales, scales
    without weights)."""
    return [TensorInfo(**item) for item in _core.inspect_model(os.fspath(path))]


@dataclass(frozen=True)
class Comparison:
    name: str
    sqnr_db: float  # inf when the values are equal
    max_abs_error: float
    mismatches: int  # elements whose decoded values differ


def load(path: str | os.PathLike[str], framework: str = "numpy") -> dict[str, Any]:
    """The checkpoint's tensors by name, whatever convention stores them: ScaledTensors and
    plain arrays of ``framework`` ("numpy" or "torch"), memory-mapped (read-only) where the
    stored bytes are breccia's, as ``breccia.bridges.load_safetensors`` gives them for one file.
    Numeric anomalies are not checked here (``inspect`` and ``verify`` report them)."""
    if framework not in ("numpy", "torch"):
        raise ValueError(f"framework must be 'numpy' or 'torch', got {framework!r}")
    tensors, _sources, _files, _anomalies = _core.load_model(os.fspath(path), "off")
    with warnings.catch_warnings():
        # torch warns that the NumPy array it wraps is read-only (the memory map's pages).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {name: _python_entry(value, framework) for name, value in tensors.items()}


def _python_entry(value: Any, framework: str) -> Any:
    if isinstance(value, _core.ScaledTensor):
        return ScaledTensor._from_native(value, framework, recipe_from_native(value.recipe))
    return _backends.from_core(value, framework)


def _core_entry(value: Any, name: str) -> Any:
    if isinstance(value, ScaledTensor):
        return value._native
    if isinstance(value, (_core.ScaledTensor, _core.Array)):
        return value
    return _backends.to_core(value, name)


def compare(
    value: dict[str, Any], reference: dict[str, Any], names: Sequence[str] | None = None
) -> list[Comparison]:
    """Per-tensor SQNR, largest error and mismatch count of ``value`` against ``reference``
    (name -> ScaledTensor or array, as :func:`load` gives them), decoded to fp64, for
    ``names`` (default: the names both hold)."""
    if names is None:
        names = sorted(set(value) & set(reference))
    return [
        Comparison(
            name,
            *_core.compare_entries(
                name, _core_entry(value[name], name), _core_entry(reference[name], name)
            ),
        )
        for name in names
    ]


__all__ = [
    "DEFAULT_IGNORE",
    "FORMATS",
    "Comparison",
    "ConvertReport",
    "ConvertedTensor",
    "TensorInfo",
    "compare",
    "convert",
    "default_convention",
    "inspect",
    "load",
]
