"""DLPack bridge: every recipe's buffers move between frameworks byte for byte, sharing memory
where the framework can; capsules follow the DLPack 1.1 protocol (type codes, consumed once,
freed when not consumed)."""

from __future__ import annotations

import gc

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia import _core
from breccia.bridges import DLPackBuffer, dlpack_buffers, from_dlpack, to_dlpack
from conftest import _installed, default_recipes, raw_bytes, to_framework

torch = pytest.importorskip("torch")

TARGETS = ("numpy", "torch", "jax", "mlx")
RECIPES = default_recipes()


def _scaled(recipe, framework="numpy", shape=(32, 128), seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3
    return breccia.cast(to_framework(x, framework), recipe)


def _fields(scaled):
    return {
        name: getattr(scaled, name)
        for name in ("data", "scale", "global_scale", "zero_point")
        if getattr(scaled, name) is not None
    }


def _address(array):
    if isinstance(array, np.ndarray):
        return array.__array_interface__["data"][0]
    if type(array).__module__.startswith("torch"):
        return array.data_ptr()
    return array.unsafe_buffer_pointer()  # JAX


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
@pytest.mark.parametrize("source", ("numpy", "torch"))
@pytest.mark.parametrize("target", TARGETS)
def test_round_trip_keeps_bytes_recipe_and_layout(recipe, source, target):
    if not _installed({"jax": "jax", "mlx": "mlx"}.get(target, target)):
        pytest.skip(f"{target} is not installed")
    scaled = _scaled(recipe, source)
    moved = from_dlpack(scaled, target)
    assert moved.backend == target
    assert moved.recipe == scaled.recipe and moved.layout == scaled.layout
    back = from_dlpack(moved, source)
    for name, array in _fields(scaled).items():
        assert raw_bytes(getattr(moved, name)) == raw_bytes(array), name
        assert raw_bytes(getattr(back, name)) == raw_bytes(array), name
    assert raw_bytes(breccia.dequantize(back)) == raw_bytes(breccia.dequantize(scaled))


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
def test_numpy_and_torch_share_memory_both_ways(recipe):
    scaled = _scaled(recipe, "torch")
    in_numpy = from_dlpack(scaled, "numpy")
    back = from_dlpack(in_numpy, "torch")
    for name, array in _fields(scaled).items():
        assert _address(getattr(in_numpy, name)) == _address(array), name
        assert _address(getattr(back, name)) == _address(array), name


def test_typed_dtypes_where_the_framework_has_them():
    scaled = _scaled(breccia.MXFP8BlockScaling(fp8_format="E5M2"), "numpy")
    in_torch = from_dlpack(scaled, "torch")
    assert in_torch.data.dtype == torch.float8_e5m2
    assert in_torch.scale.dtype == torch.float8_e8m0fnu
    assert from_dlpack(in_torch, "numpy").scale.dtype == ml_dtypes.float8_e8m0fnu
    if _installed("jax"):
        assert from_dlpack(scaled, "jax").data.dtype == ml_dtypes.float8_e5m2


def test_jax_aliases_numpy_memory():
    if not _installed("jax"):
        pytest.skip("jax is not installed")
    scaled = _scaled(breccia.Float8CurrentScaling(), "numpy")
    in_jax = from_dlpack(scaled, "jax")
    # JAX aliases CPU buffers it can (aligned); it copies otherwise, and the bytes agree either way.
    assert raw_bytes(in_jax.data) == raw_bytes(scaled.data)


def _consume(capsule):
    array = _core.dlpack_import(capsule)
    return array.dtype, array.shape


def test_to_dlpack_uses_the_dlpack_1_1_type_codes():
    nvfp4 = _scaled(breccia.NVFP4BlockScaling())
    data, scale = to_dlpack(nvfp4)
    assert "dltensor_versioned" in repr(data)
    # float4_e2m1fn comes back as packed bytes; the capsule carried the logical shape.
    assert _consume(data) == ("uint8", (32, 64))
    assert _consume(scale) == ("float8_e4m3fn", (32, 8))
    mx = _scaled(breccia.MXFP8BlockScaling())
    data, scale = to_dlpack(mx)
    assert _consume(data) == ("float8_e4m3fn", (32, 128))
    assert _consume(scale) == ("float8_e8m0fnu", (32, 4))


def test_to_dlpack_uint8_variant_for_consumers_before_1_1():
    for recipe in (breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling()):
        data, scale = to_dlpack(_scaled(recipe), max_version=(1, 0))
        assert _consume(data)[0] == "uint8"
        assert _consume(scale)[0] == "uint8"


def test_torch_reads_our_versioned_capsules_as_typed_tensors():
    scaled = _scaled(breccia.MXFP8BlockScaling(), "torch")
    data, scale = to_dlpack(scaled)
    tensor = torch.from_dlpack(data)
    assert tensor.dtype == torch.float8_e4m3fn
    assert tensor.data_ptr() == scaled.data.data_ptr()
    assert torch.from_dlpack(scale).dtype == torch.float8_e8m0fnu


def test_a_capsule_is_consumed_once():
    data, _ = to_dlpack(_scaled(breccia.Float8CurrentScaling()))
    _core.dlpack_import(data)
    assert "used_dltensor_versioned" in repr(data)
    with pytest.raises(ValueError, match="unconsumed"):
        _core.dlpack_import(data)


def test_unconsumed_capsule_keeps_memory_alive_then_frees_it():
    scaled = _scaled(breccia.Float8CurrentScaling())
    expected = raw_bytes(scaled.data)
    data, scale = to_dlpack(scaled)
    del scaled
    gc.collect()
    assert np.asarray(_core.dlpack_import(data)).tobytes() == expected
    del scale  # never consumed: its destructor runs the deleter (no leak, no crash)
    gc.collect()


def test_import_from_torch_capsules_both_kinds():
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    for capsule in (tensor.__dlpack__(max_version=(1, 1)), tensor.__dlpack__()):
        array = _core.dlpack_import(capsule)
        assert (array.dtype, array.shape) == ("float32", (3, 4))
        assert np.array_equal(np.asarray(array), tensor.numpy())


def test_legacy_capsule_for_consumers_without_max_version():
    buffer = dlpack_buffers(_scaled(breccia.Float8CurrentScaling()))["data"]
    capsule = buffer.__dlpack__()
    assert repr(capsule).startswith('<capsule object "dltensor"')
    assert _consume(capsule) == ("uint8", (32, 128))


def test_read_only_memory_is_never_handed_out_as_writable():
    scaled = _scaled(breccia.Float8CurrentScaling())
    data = scaled.data.copy()
    data.flags.writeable = False
    frozen = breccia.from_buffer(data, scaled.scale, scaled.recipe, scaled.layout)
    buffer = dlpack_buffers(frozen)["data"]
    assert _core.dlpack_import(buffer.__dlpack__(max_version=(1, 1))).read_only
    with pytest.raises(ValueError, match="read-only"):
        buffer.__dlpack__()


def test_protocol_refusals():
    buffer = dlpack_buffers(_scaled(breccia.Float8CurrentScaling()))["data"]
    assert isinstance(buffer, DLPackBuffer)
    assert buffer.__dlpack_device__() == (1, 0)
    with pytest.raises(BufferError, match="copy"):
        buffer.__dlpack__(max_version=(1, 1), copy=True)
    with pytest.raises(BufferError, match="dl_device"):
        buffer.__dlpack__(max_version=(1, 1), dl_device=(2, 0))
    with pytest.raises(TypeError, match="PyCapsule"):
        _core.dlpack_import(object())


def test_bad_arguments():
    scaled = _scaled(breccia.Float8CurrentScaling())
    with pytest.raises(ValueError, match="framework must be one of"):
        from_dlpack(scaled, "tensorflow")
    with pytest.raises(TypeError, match="ScaledTensor"):
        from_dlpack(np.zeros(3), "numpy")
    with pytest.raises(ValueError, match="max_version"):
        to_dlpack(scaled, max_version=(0, 9))


def test_cupy_is_import_gated_and_never_copies_host_memory():
    scaled = _scaled(breccia.Float8CurrentScaling())
    if _installed_cupy():
        with pytest.raises(ValueError, match="CUDA memory"):
            from_dlpack(scaled, "cupy")
    else:
        with pytest.raises(ImportError, match="CuPy"):
            from_dlpack(scaled, "cupy")


def _installed_cupy() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True
