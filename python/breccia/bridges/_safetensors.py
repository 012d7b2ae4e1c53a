"""safetensors files: ScaledTensors and plain arrays in breccia's layout, and the DeepSeek-V3
and V4, compressed-tensors, ModelOpt and gpt-oss checkpoint conventions. Reading, writing and
every check happen in C++ (breccia/io/checkpoint.hpp); this module converts arrays. See
docs/bridges.md."""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

from breccia import _backends, _core
from breccia._scaled_tensor import ScaledTensor
from breccia.recipes import recipe_from_native

_FRAMEWORKS = (_backends.NUMPY, _backends.TORCH)
# Files at least this large show a progress bar on a terminal unless told otherwise.
_PROGRESS_BYTES = 256 << 20
_CONVENTIONS = (
    "breccia",
    "deepseek-v3",
    "deepseek-v4",
    "compressed-tensors",
    "modelopt",
    "gpt-oss",
)

# compressed-tensors stores NVFP4's per-tensor factor as an encode scale G and breccia keeps its
# inverse; since 1/(1/G) is not G for about one fp32 value in six, the G read with each loaded
# ScaledTensor is remembered here and written back while it still matches.
_ENCODE_GLOBAL_SCALES: weakref.WeakKeyDictionary[ScaledTensor, float] = weakref.WeakKeyDictionary()


class _WriteProgress:
    """A tqdm bar (the library breccia's command line uses too) fed by the C++ writer's
    (written, total) reports; shown on a terminal for large files, or whenever asked."""

    def __init__(self, path: str, show: bool | None) -> None:
        self._name = os.path.basename(path)
        self._show = show
        self._bar: Any = None

    def __call__(self, written: int, total: int) -> None:
        if self._bar is None:
            if self._show is None and (total < _PROGRESS_BYTES or not sys.stderr.isatty()):
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self._name
            )
        self._bar.update(written - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def save_safetensors(
    tensors: Mapping[str, Any],
    path: Any,
    extra_metadata: Any = None,
    *,
    convention: str | None = None,
    progress: bool | None = None,
) -> None:
    """Write ScaledTensors and plain arrays to a safetensors file, atomically.

    tensors: name -> ScaledTensor or array (NumPy, PyTorch CPU, MLX or JAX CPU). A ScaledTensor
    ``w`` is stored as ``w`` (data), ``w.scale`` (+ ``w.global_scale``, ``w.zero_point``) with
    its recipe and layout in the metadata, so ``load_safetensors`` rebuilds it byte for byte.
    extra_metadata: str -> str pairs for the file's ``__metadata__`` ("breccia" is reserved).
    convention (extension): "deepseek-v3", "deepseek-v4", "compressed-tensors", "modelopt" or
    "gpt-oss" writes each ScaledTensor under that convention's names and dtypes instead
    (ValueError for a recipe the convention cannot express). The file appears whole or not at
    all: it is written beside the target as ``.<name>.breccia-partial-<pid>-<n>`` and renamed
    over it. The write runs without the GIL; a KeyboardInterrupt raised from this call means the
    target was left untouched, unless the exception carries a note saying the file had already
    been written completely.
    Temporary files left by a killed writer are removed by the next save to the same path.
    Names and the path must not hold NUL bytes (ValueError).
    progress (extension): a progress bar (tqdm, on stderr) while the file is written; by default
    only on a terminal and for files of 256 MiB or more; True always, False never.
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"tensors must be a mapping of name -> ScaledTensor or array, got "
            f"{type(tensors).__name__}"
        )
    convention = "breccia" if convention is None else convention
    if convention not in _CONVENTIONS:
        raise ValueError(
            f"convention must be one of {', '.join(map(repr, _CONVENTIONS[1:]))} "
            f"or None, got {convention!r}"
        )
    metadata = _string_pairs(extra_metadata)
    native: dict[str, Any] = {}
    encode_global_scales: dict[str, float] = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensors: names must be str, got {type(name).__name__} {name!r}")
        if isinstance(value, ScaledTensor):
            native[name] = value._native
            if value in _ENCODE_GLOBAL_SCALES:
                encode_global_scales[name] = _ENCODE_GLOBAL_SCALES[value]
        else:
            _backends.require_array_like(value, f"tensors[{name!r}]")
            native[name] = _backends.to_core(value, f"tensors[{name!r}]")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be None, True or False, got {progress!r}")
    report = None if progress is False else _WriteProgress(os.fspath(path), progress)
    try:
        _core.save_checkpoint(
            os.fspath(path), native, convention, metadata, encode_global_scales, report
        )
    finally:
        if report is not None:
            report.close()


_VALIDATION = ("error", "warn", "off")


def load_safetensors(
    path: Any,
    *,
    framework: str = "numpy",
    return_metadata: bool = False,
    copy: bool = False,
    validate: str = "error",
) -> Any:
    """Read a safetensors file into ScaledTensors and plain arrays: a dict name -> value.

    The file is validated in full before anything is returned. Files breccia wrote give back
    the same ScaledTensors; files without breccia's metadata are searched for the DeepSeek-V3,
    compressed-tensors and ModelOpt conventions, whose weights come back as ScaledTensors under
    the weight's name (``x.weight``); other tensors stay plain arrays.

    copy (extension): False (default) maps the file privately and copy-on-write; arrays view the
    mapping wherever the stored bytes are breccia's. NumPy arrays are flagged read-only; torch
    tensors, which have no such flag, may be written, and the writes stay in this process,
    never reaching the file. Truncating the file while its arrays live makes the next read of
    them crash the process with SIGBUS, and rewriting it in place can show through (breccia's
    own saves do neither). True reads the file into private memory first (its size in RAM),
    after which nothing done to the file affects the arrays.
    validate (extension): what numeric anomalies in a ScaledTensor (NaN, infinite, negative or
    misplaced zero scales or global scale, zero points above 15) do: "error" (default) raises
    ValueError, "warn" emits a RuntimeWarning per anomaly and loads the file, "off" skips the
    scan. Structural faults (shapes, dtypes, missing tensors) raise ValueError whatever this is.
    framework (extension): "numpy" (default) or "torch". return_metadata (extension): also
    return the file's ``__metadata__`` (without breccia's key) as a second value.
    Raises OSError when the file cannot be read (a FIFO or other non-regular file included),
    ValueError for a malformed file, a path holding a NUL byte, or metadata that does not
    describe its tensors, NotImplementedError for a convention feature breccia does not model.
    """
    if framework not in _FRAMEWORKS:
        raise ValueError(f"framework must be 'numpy' or 'torch', got {framework!r}")
    if validate not in _VALIDATION:
        raise ValueError(f"validate must be 'error', 'warn' or 'off', got {validate!r}")
    if not isinstance(copy, bool):
        raise TypeError(f"copy must be a bool, got {type(copy).__name__}")
    entries, metadata, encode_global_scales, anomalies = _core.load_checkpoint(
        os.fspath(path), copy, validate
    )
    for anomaly in anomalies:
        warnings.warn(anomaly, RuntimeWarning, stacklevel=2)
    tensors: dict[str, Any] = {}
    with warnings.catch_warnings():
        # torch warns that the NumPy array it wraps is flagged read-only; writes through the
        # tensor are safe (private copy-on-write pages), as the docstring says.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, value in entries.items():
            tensors[name] = _from_core(name, value, framework, encode_global_scales)
    return (tensors, dict(metadata)) if return_metadata else tensors


def _from_core(
    name: str, value: Any, framework: str, encode_global_scales: dict[str, float]
) -> Any:
    if not isinstance(value, _core.ScaledTensor):
        return _backends.from_core(value, framework)
    scaled = ScaledTensor._from_native(value, framework, recipe_from_native(value.recipe))
    if name in encode_global_scales:
        _ENCODE_GLOBAL_SCALES[scaled] = encode_global_scales[name]
    return scaled


def _string_pairs(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise TypeError(
            "extra_metadata must be a mapping of str -> str (safetensors metadata "
            f"holds only strings), got {metadata!r}"
        )
    return dict(metadata)


__all__ = ["load_safetensors", "save_safetensors"]
