"""DLPack: a ScaledTensor's buffers as DLPack 1.1 capsules, and moved between frameworks
(NumPy, PyTorch, JAX, MLX, CuPy) through the DLPack protocol without copying where the
framework allows. Capsules are made and consumed by breccia::dlpack in C++; Python only picks
the capsule kind and re-types the bytes the consumer gets (uint8 -> float8 views)."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from breccia import _core
from breccia._scaled_tensor import ScaledTensor, require_scaled

FRAMEWORKS = ("numpy", "torch", "jax", "mlx", "cupy")

# DLPack device types (DLDeviceType) of the devices breccia holds memory on.
_KDL_CPU = 1
_KDL_CUDA = 2

# The ScaledTensor fields that hold arrays, in order.
_BUFFERS = ("data", "scale", "global_scale", "zero_point")


class DLPackBuffer:
    """One of a ScaledTensor's arrays, speaking the DLPack Python protocol.

    ``__dlpack__(max_version=...)`` gives a "dltensor_versioned" capsule to consumers that ask
    for DLPack >= 1.0 and a legacy "dltensor" capsule to the others. The DLPack 1.1 float8 and
    float4 type codes are used only for consumers that ask for >= 1.1; older ones get the same
    bytes as uint8 (packed E2M1 pairs stay packed uint8 then). Every capsule shares the memory.
    """

    def __init__(
        self, array: _core.Array, *, packed_float4: bool = False, bytes_as: str | None = None
    ) -> None:
        self._array = array
        self._packed_float4 = packed_float4
        self._bytes_as = bytes_as

    @property
    def dtype(self) -> str:
        """breccia's name of the bytes' dtype ("float8_e4m3fn", "uint8", ...)."""
        return self._array.dtype

    def __dlpack_device__(self) -> tuple[int, int]:
        device = self._array.device
        if device == "cpu":
            return (_KDL_CPU, 0)
        return (_KDL_CUDA, int(device.split(":")[1]))

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        if copy:
            raise BufferError("breccia exports its buffers without copying; copy=True was asked")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(
                f"dl_device: the buffer is on {self._array.device} "
                f"{self.__dlpack_device__()}, got a request for {tuple(dl_device)}; "
                "breccia never moves memory between devices"
            )
        versioned = max_version is not None and next(iter(max_version)) >= 1
        typed = max_version is not None and tuple(max_version) >= (1, 1)
        return _core.dlpack_export(
            self._array, typed, self._packed_float4 and typed, versioned, self._bytes_as
        )

    def as_bytes_of(self, dtype: str) -> DLPackBuffer:
        """The same memory labelled as another dtype of the same size."""
        return DLPackBuffer(self._array, packed_float4=self._packed_float4, bytes_as=dtype)


def dlpack_buffers(scaled: ScaledTensor) -> dict[str, DLPackBuffer]:
    """The ScaledTensor's arrays by field name ("data", "scale", and "global_scale" /
    "zero_point" where present) as DLPackBuffer objects (extension). E2M1 data (MXFP4, NVFP4)
    is marked as packed float4_e2m1fn, so DLPack >= 1.1 consumers see its logical shape; FP6
    data goes out as float6 codes one per byte (flag IS_SUBBYTE_TYPE_PADDED)."""
    require_scaled(scaled, "scaled")
    native = scaled._native
    packed_float4 = scaled.recipe.spec["element"] == "E2M1"
    buffers = {
        "data": DLPackBuffer(native.data, packed_float4=packed_float4),
        "scale": DLPackBuffer(native.scale),
    }
    if native.global_scale is not None:
        buffers["global_scale"] = DLPackBuffer(native.global_scale)
    if native.zero_point is not None:
        buffers["zero_point"] = DLPackBuffer(native.zero_point)
    return buffers


def to_dlpack(scaled: ScaledTensor, *, max_version: tuple[int, int] = (1, 1)) -> tuple[Any, Any]:
    """ScaledTensor -> (data_capsule, scale_capsule), DLPack "dltensor_versioned" capsules
    sharing the ScaledTensor's memory.

    With max_version >= (1, 1) (default) the data carries the DLPack 1.1 codes: float8_e4m3fn
    (10) / float8_e5m2 (12) for FP8, float6_e2m3fn (15) / float6_e3m2fn (16) for FP6 (6 bits,
    one code per byte, IS_SUBBYTE_TYPE_PADDED), float4_e2m1fn (17, 4 bits, logical shape) for
    MXFP4 and NVFP4, and the MX scales float8_e8m0fnu (14), NVFP4 scales float8_e4m3fn; INT4
    data stays packed uint8
    (DLPack has no int4 code). max_version (1, 0) (extension) gives the same bytes as uint8 for
    consumers that predate those codes. NVFP4's global_scale and INT4's zero_point are not in
    the pair: get them from ``dlpack_buffers``.
    """
    require_scaled(scaled, "scaled")
    if tuple(max_version) < (1, 0):
        raise ValueError(
            f"max_version: to_dlpack makes versioned capsules (>= (1, 0)), got "
            f"{tuple(max_version)}; use dlpack_buffers(scaled)[name].__dlpack__() "
            "for a legacy capsule"
        )
    buffers = dlpack_buffers(scaled)
    return (
        buffers["data"].__dlpack__(max_version=tuple(max_version)),
        buffers["scale"].__dlpack__(max_version=tuple(max_version)),
    )


def from_dlpack(scaled: ScaledTensor, framework: str) -> ScaledTensor:
    """The same ScaledTensor with its buffers moved to ``framework`` ("numpy", "torch", "jax",
    "mlx" or "cupy") through DLPack.

    Zero-copy into NumPy, PyTorch and CuPy (the new arrays share the old memory) and into JAX
    when it can alias the buffer; MLX always copies into its own memory. FP8/E8M0 bytes come
    back typed where the framework has the dtype (NumPy through ml_dtypes, PyTorch, JAX) and
    as uint8 in MLX. CuPy needs CUDA memory: a CPU ScaledTensor is refused rather than copied
    to the device.
    """
    require_scaled(scaled, "scaled")
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"framework must be one of {', '.join(map(repr, FRAMEWORKS))}, got {framework!r}"
        )
    importer = _IMPORTERS[framework]
    moved = {name: importer(buffer, name) for name, buffer in dlpack_buffers(scaled).items()}
    return ScaledTensor._from_buffers(
        moved["data"],
        moved["scale"],
        scaled.recipe,
        scaled.layout,
        moved.get("global_scale"),
        moved.get("zero_point"),
    )


def _numpy_import(buffer: DLPackBuffer, name: str) -> Any:
    if buffer.dtype == "bfloat16":  # NumPy has no bfloat16: take the bytes as float16
        buffer = buffer.as_bytes_of("float16")
    raw = np.from_dlpack(buffer)  # NumPy asks for DLPack 1.0: uint8 bytes for float8
    dtype = np.dtype(getattr(ml_dtypes, buffer.dtype, buffer.dtype))
    return raw if raw.dtype == dtype else raw.view(dtype)


def _torch_import(buffer: DLPackBuffer, name: str) -> Any:
    import torch

    if buffer.dtype.startswith("float6_"):  # PyTorch has no FP6 dtype: the codes as bytes
        return torch.from_dlpack(buffer.as_bytes_of("uint8"))
    raw = torch.from_dlpack(buffer)
    dtype = getattr(torch, buffer.dtype)
    return raw if raw.dtype == dtype else raw.view(dtype)


def _jax_import(buffer: DLPackBuffer, name: str) -> Any:
    import jax
    import jax.numpy as jnp

    if buffer.dtype.startswith("float6_"):  # XLA's CPU backend has no FP6: the codes as bytes
        return jax.dlpack.from_dlpack(buffer.as_bytes_of("uint8"))
    raw = jax.dlpack.from_dlpack(buffer)
    dtype = jnp.dtype(getattr(ml_dtypes, buffer.dtype, buffer.dtype))
    return raw if raw.dtype == dtype else jax.lax.bitcast_convert_type(raw, dtype)


def _mlx_import(buffer: DLPackBuffer, name: str) -> Any:
    import mlx.core as mx

    if buffer.dtype == "bfloat16":
        return mx.array(_numpy_import(buffer, name).view(np.uint16)).view(mx.bfloat16)
    # MLX has no float8 or float6 dtypes: those codes and E8M0/E4M3 scales stay uint8 bytes.
    return mx.array(np.from_dlpack(buffer))


def _cupy_import(buffer: DLPackBuffer, name: str) -> Any:
    try:
        import cupy
    except ImportError as error:
        raise ImportError("from_dlpack(..., 'cupy') needs CuPy, which is not installed") from error
    if buffer.__dlpack_device__()[0] != _KDL_CUDA:
        raise ValueError(
            f"{name}: CuPy holds CUDA memory, but this buffer is on the CPU; "
            "breccia never copies host memory to the device behind your back"
        )
    raw = cupy.from_dlpack(buffer)
    dtype = np.dtype(getattr(ml_dtypes, buffer.dtype, buffer.dtype))
    return raw if raw.dtype == dtype else raw.view(dtype)


_IMPORTERS = {
    "numpy": _numpy_import,
    "torch": _torch_import,
    "jax": _jax_import,
    "mlx": _mlx_import,
    "cupy": _cupy_import,
}

__all__ = ["DLPackBuffer", "dlpack_buffers", "from_dlpack", "to_dlpack"]
