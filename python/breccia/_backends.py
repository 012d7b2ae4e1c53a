"""Moving arrays between Python frameworks and breccia's C++ ``Array``.

Only pointers, shapes, strides and dtype names cross here; no value is computed in Python.
NumPy arrays (any ml_dtypes dtype) and PyTorch CPU tensors are borrowed zero-copy; JAX CPU and
MLX arrays are read through their zero-copy NumPy views. Results come back as NumPy views of
the C++ memory, then move into the input's framework (zero-copy for PyTorch; JAX and MLX own
their buffers, so they copy once).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from breccia import _core

NUMPY = "numpy"
TORCH = "torch"
MLX = "mlx"
JAX = "jax"

# NumPy dtypes that DLPack and the array interface cannot spell; their bytes travel as the
# unsigned integer of the same size.
_RAW_NUMPY_DTYPE = {
    "float8_e4m3fn": np.dtype(np.uint8),
    "float8_e5m2": np.dtype(np.uint8),
    "float8_e8m0fnu": np.dtype(np.uint8),
    "float6_e2m3fn": np.dtype(np.uint8),
    "float6_e3m2fn": np.dtype(np.uint8),
    "bfloat16": np.dtype(np.uint16),
}


def backend_of(x: Any) -> str:
    """The framework an array belongs to: "numpy", "torch", "mlx" or "jax"."""
    if _core._is_torch(x):
        return TORCH
    if _core._is_mlx(x):
        return MLX
    if _core._is_jax(x):
        return JAX
    return NUMPY


def is_array_like(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def describe(x: Any) -> str:
    """A short description of a value for error messages."""
    if is_array_like(x):
        kind = f"{type(x).__module__}.{type(x).__qualname__}"
        return f"{kind} of dtype {x.dtype}, shape {tuple(x.shape)}"
    return f"{type(x).__module__}.{type(x).__qualname__}"


def require_array_like(x: Any, argument: str) -> None:
    if not is_array_like(x):
        raise TypeError(
            f"{argument} must be array-like (an object with .shape and .dtype: a NumPy, "
            f"PyTorch, MLX or JAX array), got {describe(x)}"
        )


def cuda_not_built(argument: str, where: str) -> NotImplementedError:
    return NotImplementedError(
        f"{argument}: got an array on {where}, but this breccia was built without CUDA kernels; "
        "move it to the CPU explicitly (breccia never copies device memory to the host behind "
        "your back)"
    )


def dtype_name(dtype: Any, argument: str) -> str:
    """breccia's name ("float32", "bfloat16", ...) of a NumPy/ml_dtypes, PyTorch, MLX or JAX
    dtype."""
    if isinstance(dtype, str):
        return dtype
    text = str(dtype)
    if text.startswith(("torch.", "mlx.core.")):
        return text.rsplit(".", 1)[-1]
    try:
        return np.dtype(dtype).name
    except TypeError as error:
        raise TypeError(f"{argument} must be a dtype such as np.float32, got {dtype!r}") from error


def to_core(x: Any, argument: str, backend: str | None = None) -> _core.Array:
    """Borrows x's memory as a breccia Array (no copy). ``backend``: x's framework, where the
    caller has found it already."""
    backend = backend or backend_of(x)
    if backend == TORCH:
        return _torch_to_core(x, argument)
    if backend == MLX:
        return _numpy_to_core(_mlx_to_numpy(x), argument)
    if backend == JAX:
        return _numpy_to_core(_jax_to_numpy(x, argument), argument)
    return _numpy_to_core(np.asarray(x), argument)


def _numpy_to_core(array: np.ndarray, argument: str) -> _core.Array:
    if not array.dtype.isnative:
        raise ValueError(
            f"{argument}: expected native byte order, got dtype {array.dtype.str}; "
            "convert it with .astype(its dtype.newbyteorder('='))"
        )
    return _core.Array.borrow(
        array.__array_interface__["data"][0],
        array.dtype.name,
        array.shape,
        array.strides,
        array,
        not array.flags.writeable,
        argument=argument,
    )


def _torch_to_core(tensor: Any, argument: str) -> _core.Array:
    import torch

    if tensor.layout != torch.strided:
        raise TypeError(
            f"{argument}: expected a dense (strided) tensor, got layout {tensor.layout}"
        )
    device = tensor.device
    if device.type == "cuda" and not _core.CUDA_BUILT:
        raise cuda_not_built(argument, str(device))
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{argument}: expected a CPU or CUDA tensor, got one on {device}")
    itemsize = tensor.element_size()
    return _core.Array.borrow(
        tensor.data_ptr(),
        str(tensor.dtype).rsplit(".", 1)[-1],
        tuple(tensor.shape),
        tuple(stride * itemsize for stride in tensor.stride()),
        tensor,
        False,
        device_kind=device.type,
        device_id=device.index or 0,
        argument=argument,
    )


def _mlx_to_numpy(array: Any) -> np.ndarray:
    import mlx.core as mx

    # NumPy cannot read MLX's bfloat16 buffer format, so read the same bytes as uint16.
    if array.dtype == mx.bfloat16:
        return np.asarray(array.view(mx.uint16)).view(ml_dtypes.bfloat16)
    return np.asarray(array)


def _jax_to_numpy(array: Any, argument: str) -> np.ndarray:
    platforms = {device.platform for device in array.devices()}
    if platforms != {"cpu"}:
        where = ", ".join(sorted(platforms))
        if "gpu" in platforms or "cuda" in platforms:
            raise cuda_not_built(argument, where)
        raise ValueError(f"{argument}: expected a JAX array on the CPU, got one on {where}")
    return np.asarray(array)


def to_numpy(array: _core.Array) -> np.ndarray:
    """A NumPy view (no copy) of a CPU breccia Array, with the ml_dtypes dtype where needed."""
    dtype = np.dtype(getattr(ml_dtypes, array.dtype, array.dtype))
    if 0 in array.shape:  # nothing to share, and no valid pointer to share it through
        return np.empty(array.shape, dtype)
    raw = np.asarray(array)
    return raw if raw.dtype == dtype else raw.view(dtype)


def swap_last_two(x: Any, backend: str) -> Any:
    """x with its last two axes swapped, in its framework: a view for NumPy and PyTorch; JAX
    and MLX arrays have no views, so those frameworks copy."""
    if len(x.shape) < 2:
        return x
    if backend == TORCH:
        return x.transpose(-1, -2)
    if backend == MLX:
        import mlx.core as mx

        return mx.swapaxes(x, -1, -2)
    if backend == JAX:
        import jax.numpy as jnp

        return jnp.swapaxes(x, -1, -2)
    return np.swapaxes(x, -1, -2)


def device_context(x: Any, backend: str | None = None) -> tuple[Any, int]:
    """(allocate, stream) for an op on x's device: for a CUDA tensor, the framework's caching
    allocator and its current stream, so that breccia's outputs are ordinary framework memory
    ordered after the caller's work; (None, 0) for host data. Every eager GPU call passes
    here, so it takes PyTorch's cheapest paths (no Stream object, one shared allocator)."""
    if (backend or backend_of(x)) != TORCH or not x.is_cuda:
        return None, 0
    return _torch_cuda_allocate, _current_raw_stream(x.get_device())


def _torch_cuda_allocate(nbytes: int, device_id: int) -> Any:
    import torch

    return torch.empty(nbytes, dtype=torch.uint8, device=torch.device("cuda", device_id))


def _current_raw_stream(device_id: int) -> int:
    import torch

    raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw_stream is not None:
        return int(raw_stream(device_id))
    return int(torch.cuda.current_stream(device_id).cuda_stream)


def _device_array_to_torch(array: _core.Array) -> Any:
    """A CUDA result as a torch tensor: a view of the uint8 buffer that allocate() returned."""
    import torch

    buffer = array.owner
    if buffer is None or not isinstance(buffer, torch.Tensor):
        raise NotImplementedError(f"a result on {array.device} was not allocated by PyTorch")
    start = array.data_ptr - buffer.data_ptr()
    nbytes = array.nbytes
    raw = buffer if start == 0 and nbytes == buffer.numel() else buffer[start : start + nbytes]
    # PyTorch has no FP6 dtypes: those codes stay uint8 bytes, as on the CPU.
    dtype = getattr(torch, array.dtype, torch.uint8)
    return raw.view(dtype).view(array.shape)


def from_core(array: _core.Array, backend: str) -> Any:
    """The Array as an array of `backend`."""
    if array.device != "cpu":
        if backend != TORCH:
            raise NotImplementedError(f"results on {array.device} need PyTorch tensors")
        return _device_array_to_torch(array)
    result = to_numpy(array)
    if backend == TORCH:
        return _numpy_to_torch(result)
    if backend == MLX:
        return _numpy_to_mlx(result)
    if backend == JAX:
        return _numpy_to_jax(result)
    return result


def _numpy_to_torch(array: np.ndarray) -> Any:
    import torch

    raw = _RAW_NUMPY_DTYPE.get(array.dtype.name)
    if raw is None:
        return torch.from_numpy(array)
    tensor = torch.from_numpy(array.view(raw))
    # PyTorch has no FP6 dtypes: those codes stay uint8 bytes, as torchao keeps them.
    torch_dtype = getattr(torch, array.dtype.name, None)
    return tensor if torch_dtype is None else tensor.view(torch_dtype)


def _numpy_to_mlx(array: np.ndarray) -> Any:
    import mlx.core as mx

    if array.dtype.name == "bfloat16":
        return mx.array(array.view(np.uint16)).view(mx.bfloat16)
    # MLX has no float8 dtypes: FP8 codes and E8M0 scales live in MLX as their uint8 bytes.
    raw = _RAW_NUMPY_DTYPE.get(array.dtype.name)
    return mx.array(array if raw is None else array.view(raw))


def _numpy_to_jax(array: np.ndarray) -> Any:
    import jax
    import jax.numpy as jnp

    if array.dtype.name.startswith("float6_"):
        # XLA's CPU backend cannot hold FP6 arrays: their codes live in JAX as uint8 bytes.
        return jnp.asarray(array.view(np.uint8))
    if array.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"a {array.dtype} result cannot be held by JAX while 64-bit types are disabled; "
            "set jax.config.update('jax_enable_x64', True) or ask for a 32-bit dtype"
        )
    return jnp.asarray(array)
