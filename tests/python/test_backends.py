"""The same input through NumPy, PyTorch, MLX and JAX gives byte-identical data and scales,
equal to the C++ reference kernels'; buffers are shared, not copied, where frameworks allow."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia.kernels import reference
from breccia.layouts import PerBlockMN
from conftest import default_recipes, raw_bytes, to_framework, to_numpy

RECIPES = default_recipes()
IDS = [repr(recipe) for recipe in RECIPES]


def sample(dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((32, 128)).astype(np.float32) * np.float32(3.0)
    x[0, :16] = 0.0  # an all-zero block
    x[1, 5] = 1e-30  # far below every format's range
    return x.astype(dtype)


def outputs(scaled) -> list[bytes]:
    parts = [scaled.data, scaled.scale, scaled.global_scale, scaled.zero_point]
    return [raw_bytes(part) for part in parts if part is not None]


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16], ids=["f32", "bf16"])
def test_every_framework_gives_the_reference_bytes(framework, recipe, dtype):
    x = sample(dtype)
    expected = reference.cast(x, recipe)
    scaled = breccia.cast(to_framework(x, framework), recipe)
    assert outputs(scaled) == outputs(expected)
    decoded = breccia.dequantize(scaled)
    assert raw_bytes(decoded) == raw_bytes(reference.dequantize(expected))


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_scaled_tensor_survives_each_framework(framework, recipe):
    """A ScaledTensor built from one framework's arrays validates and decodes the same."""
    scaled = reference.cast(sample(), recipe)
    moved = breccia.ScaledTensor(
        to_framework(scaled.data, framework) if framework != "torch" else _torch(scaled.data),
        to_framework(scaled.scale, framework) if framework != "torch" else _torch(scaled.scale),
        scaled.recipe,
        scaled.layout,
        None
        if scaled.global_scale is None
        else to_framework(np.asarray(scaled.global_scale), framework),
        None if scaled.zero_point is None else to_framework(scaled.zero_point, framework),
    )
    assert raw_bytes(breccia.dequantize(moved)) == raw_bytes(reference.dequantize(scaled))


def _torch(array: np.ndarray):
    import torch

    if array.dtype.name in ("float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"):
        return torch.from_numpy(array.view(np.uint8).copy()).view(getattr(torch, array.dtype.name))
    if array.dtype.name.startswith("float6_"):  # PyTorch has no FP6 dtype: the raw bytes
        return torch.from_numpy(array.view(np.uint8).copy())
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def test_matmul_is_identical_across_frameworks(framework):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((2, 16, 64)).astype(np.float32)
    b = rng.standard_normal((64, 8)).astype(np.float32)
    sa = reference.cast(a, breccia.MXFP8BlockScaling())
    expected = reference.matmul(sa, b)
    fa = breccia.cast(to_framework(a, framework), breccia.MXFP8BlockScaling())
    result = breccia.matmul(fa, to_framework(b, framework))
    assert raw_bytes(result) == raw_bytes(expected)


def test_requantize_is_identical_across_frameworks(framework):
    scaled = breccia.cast(to_framework(sample(), framework), breccia.MXFP8BlockScaling())
    new = breccia.requantize(scaled, breccia.INT4Scaling(group_size=32))
    expected = reference.requantize(
        reference.cast(sample(), breccia.MXFP8BlockScaling()), breccia.INT4Scaling(group_size=32)
    )
    assert outputs(new) == outputs(expected)


def test_non_contiguous_input_is_read_correctly():
    x = sample()
    strided = np.asfortranarray(x)[:, ::2]
    assert not strided.flags.c_contiguous
    recipe = breccia.MXFP8BlockScaling()
    assert outputs(breccia.cast(strided, recipe)) == outputs(breccia.cast(strided.copy(), recipe))


def test_non_contiguous_torch_input_is_read_correctly():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(sample()).t()  # (128, 32), column-major view
    recipe = breccia.MXFP8BlockScaling()
    assert outputs(breccia.cast(x, recipe)) == outputs(breccia.cast(x.contiguous(), recipe))


def test_from_buffer_shares_memory_with_numpy():
    data = np.zeros((4, 64), ml_dtypes.float8_e4m3fn)
    scale = np.full((4, 2), 127, np.uint8)  # E8M0 code 127 = 1.0
    scaled = breccia.from_buffer(data, scale, breccia.MXFP8BlockScaling(), PerBlockMN(1, 32))
    data[0, 0] = 2.0  # write through the caller's array ...
    assert breccia.dequantize(scaled)[0, 0] == 2.0  # ... read through the ScaledTensor
    scaled.scale[0, 0] = 128  # write through the ScaledTensor's scale (2.0) ...
    assert scale[0, 0] == 128  # ... read through the caller's array
    assert breccia.dequantize(scaled)[0, 0] == 4.0


def test_from_buffer_shares_memory_with_torch():
    torch = pytest.importorskip("torch")
    data = torch.zeros((4, 64), dtype=torch.float8_e4m3fn)
    scale = torch.full((4, 2), 127, dtype=torch.uint8)
    scaled = breccia.from_buffer(data, scale, breccia.MXFP8BlockScaling(), PerBlockMN(1, 32))
    data[1, 3] = 3.0
    assert float(breccia.dequantize(scaled)[1, 3]) == 3.0
    assert scaled.data.data_ptr() == data.data_ptr()


def test_cast_output_is_a_view_of_the_core_memory():
    torch = pytest.importorskip("torch")
    scaled = breccia.cast(torch.ones((4, 64)), breccia.MXFP8BlockScaling())
    # The ScaledTensor's C++ half reads the very bytes the torch tensor holds.
    doubled = scaled.scale[0, 0].float() * 2  # E8M0 holds the power of two exactly
    scaled.scale[0, 0] = doubled.to(torch.float8_e8m0fnu)
    assert float(breccia.dequantize(scaled)[0, 0]) == 2.0


def test_gpu_and_other_devices_are_never_copied_silently():
    torch = pytest.importorskip("torch")
    meta = torch.ones((4, 64), device="meta")
    with pytest.raises(ValueError, match="CPU or CUDA tensor, got one on meta"):
        breccia.cast(meta, breccia.MXFP8BlockScaling())
    if torch.cuda.is_available() and not breccia.kernels.cuda.CUDA_AVAILABLE:
        with pytest.raises(NotImplementedError, match="built without CUDA kernels"):
            breccia.cast(torch.ones((4, 64), device="cuda"), breccia.MXFP8BlockScaling())


def test_mixed_frameworks_in_a_scaled_tensor_are_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="different frameworks"):
        breccia.ScaledTensor(
            torch.zeros((4, 8), dtype=torch.uint8),
            np.float32(1.0),
            breccia.Float8CurrentScaling(),
            breccia.PerTensor(),
        )


def test_mlx_holds_float8_as_uint8_bytes():
    mx = pytest.importorskip("mlx.core")
    scaled = breccia.cast(mx.ones((4, 64)), breccia.MXFP8BlockScaling())
    assert scaled.data.dtype == mx.uint8 and scaled.scale.dtype == mx.uint8
    assert (
        to_numpy(scaled.data).tobytes()
        == reference.cast(np.ones((4, 64), np.float32), breccia.MXFP8BlockScaling()).data.tobytes()
    )
