"""Shared helpers: one converter per framework, so a test can run the same input through
NumPy, PyTorch, MLX and JAX and read every result back as NumPy bytes."""

from __future__ import annotations

import importlib.util
import os

# breccia takes JAX arrays on the CPU only; on a GPU machine JAX would default to its GPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import ml_dtypes
import numpy as np
import pytest

import breccia

FRAMEWORKS = ("numpy", "torch", "mlx", "jax")
_MODULES = {"numpy": "numpy", "torch": "torch", "mlx": "mlx.core", "jax": "jax"}


def _installed(framework: str) -> bool:
    try:
        return importlib.util.find_spec(_MODULES[framework]) is not None
    except ModuleNotFoundError:
        return False


def to_framework(array: np.ndarray, framework: str):
    """A framework array with the same values as `array` (float32/bfloat16 inputs)."""
    if framework == "numpy":
        return array
    if framework == "torch":
        import torch

        if array.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
        return torch.from_numpy(array.copy())
    if framework == "mlx":
        import mlx.core as mx

        if array.dtype == ml_dtypes.bfloat16:
            return mx.array(array.view(np.uint16)).view(mx.bfloat16)
        if array.dtype.name.startswith(("float8", "float6")):  # MLX holds those as bytes
            return mx.array(array.view(np.uint8))
        return mx.array(array)
    import jax.numpy as jnp

    if array.dtype.name.startswith("float6"):  # XLA's CPU backend has no FP6: the bytes
        return jnp.asarray(array.view(np.uint8))
    return jnp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """Any framework's array as NumPy (ml_dtypes dtypes kept where the framework has them)."""
    if isinstance(array, np.ndarray):
        return array
    module = type(array).__module__.split(".")[0]
    if module == "torch":
        import torch

        raw = {torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e8m0fnu}
        if array.dtype in raw:
            return array.view(torch.uint8).numpy().view(getattr(ml_dtypes, str(array.dtype)[6:]))
        if array.dtype == torch.bfloat16:
            return array.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
        return array.numpy()
    if module == "mlx":
        import mlx.core as mx

        if array.dtype == mx.bfloat16:
            return np.asarray(array.view(mx.uint16)).view(ml_dtypes.bfloat16)
    return np.asarray(array)


def raw_bytes(array) -> bytes:
    """The bytes of an array, whatever its framework and dtype."""
    return np.ascontiguousarray(to_numpy(array)).tobytes()


@pytest.fixture(params=FRAMEWORKS)
def framework(request) -> str:
    if not _installed(request.param):
        pytest.skip(f"{request.param} is not installed (pip install '.[test]' installs it)")
    return request.param


def default_recipes():
    """One instance of each recipe, with the block sizes the default test shape (32, 128) fits."""
    return [
        breccia.DelayedScaling(),
        breccia.Float8CurrentScaling(),
        breccia.Float8CurrentScaling(fp8_format="E5M2", power_2_scale=True),
        breccia.Float8BlockScaling(),
        breccia.Float8BlockScaling(block_k=32, block_m=2, power_2_scale=False),
        breccia.MXFP8BlockScaling(),
        breccia.MXFP8BlockScaling(fp8_format="E5M2", scale_rounding="rceil"),
        breccia.MXFP6BlockScaling(),
        breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding="rceil"),
        breccia.MXFP4BlockScaling(),
        breccia.MXFP4BlockScaling(scale_rounding="rceil"),
        breccia.NVFP4BlockScaling(),
        breccia.NVFP4BlockScaling(two_d=True),
        breccia.INT4Scaling(group_size=32),
        breccia.INT4Scaling(group_size=64, signed=False, scale_dtype="bf16"),
    ]
