"""One test per row of every table in the API reference (shared/seed/api-reference.txt), plus
the extensions the package adds."""

from __future__ import annotations

import dataclasses
import json
import pickle

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia import ScaledTensor
from breccia.layouts import PerBlockK, PerBlockMN, PerChannel, PerTensor


def per_tensor_fp8(**overrides):
    fields = {
        "data": np.zeros((4, 8), dtype=np.uint8),
        "scale": np.float32(1.0),
        "recipe": breccia.Float8CurrentScaling(),
        "layout": PerTensor(),
    }
    fields.update(overrides)
    return fields


# --- ScaledTensor: construction ------------------------------------------------------------------


def test_direct_construction_as_in_the_reference():
    st = ScaledTensor(**per_tensor_fp8())
    assert st.shape == (4, 8)
    assert st.recipe == breccia.Float8CurrentScaling()
    assert st.layout == PerTensor()


def test_scaled_tensor_is_a_frozen_dataclass():
    st = ScaledTensor(**per_tensor_fp8())
    assert [f.name for f in dataclasses.fields(st)] == [
        "data",
        "scale",
        "recipe",
        "layout",
        "global_scale",
        "zero_point",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.scale = np.float32(2.0)
    replaced = dataclasses.replace(st, scale=np.float32(2.0))
    assert float(replaced.scale) == 2.0 and replaced.data is st.data


def test_replace_revalidates():
    st = ScaledTensor(**per_tensor_fp8())
    with pytest.raises(ValueError, match="scale shape"):
        dataclasses.replace(st, scale=np.ones(3, np.float32))


# --- ScaledTensor: invariants (one per row) ------------------------------------------------------


def test_invariant_data_is_array_like():
    with pytest.raises(TypeError) as error:
        ScaledTensor(**per_tensor_fp8(data=[[0, 1]]))
    assert str(error.value).startswith("data must be array-like")


def test_invariant_scale_is_array_like():
    with pytest.raises(TypeError) as error:
        ScaledTensor(**per_tensor_fp8(scale=1.0))
    assert str(error.value).startswith("scale must be array-like")


def test_invariant_data_at_least_1d():
    with pytest.raises(ValueError) as error:
        ScaledTensor(**per_tensor_fp8(data=np.zeros((), np.uint8)))
    assert str(error.value).startswith("data must be at least 1-D")


def test_invariant_recipe_required():
    with pytest.raises(ValueError) as error:
        ScaledTensor(**per_tensor_fp8(recipe=None))
    assert str(error.value).startswith("recipe is required")


def test_invariant_layout_required():
    with pytest.raises(ValueError) as error:
        ScaledTensor(**per_tensor_fp8(layout=None))
    assert str(error.value).startswith("layout is required")


def test_invariant_layout_validate_fails():
    with pytest.raises(ValueError, match=r"scale shape must be \(\) or \(1,\).*got \(3,\)"):
        ScaledTensor(**per_tensor_fp8(scale=np.ones(3, np.float32)))


def test_wrong_data_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="float8_e4m3fn or uint8, got float32"):
        ScaledTensor(**per_tensor_fp8(data=np.zeros((4, 8), np.float32)))


def test_recipe_and_layout_of_the_wrong_type():
    with pytest.raises(TypeError, match="recipe must be a recipe"):
        ScaledTensor(**per_tensor_fp8(recipe="E4M3"))
    with pytest.raises(TypeError, match="layout must be a layout"):
        ScaledTensor(**per_tensor_fp8(layout="PerTensor"))


# --- ScaledTensor: properties --------------------------------------------------------------------


def test_property_shape_is_a_tuple():
    st = breccia.cast(np.ones((3, 64), np.float32), breccia.MXFP8BlockScaling())
    assert st.shape == (3, 64) and isinstance(st.shape, tuple)


def test_property_ndim():
    st = breccia.cast(np.ones((2, 3, 64), np.float32), breccia.MXFP8BlockScaling())
    assert st.ndim == 3


def test_property_data_dtype():
    st = breccia.cast(np.ones((3, 64), np.float32), breccia.MXFP8BlockScaling(fp8_format="E5M2"))
    assert st.data_dtype == np.dtype(ml_dtypes.float8_e5m2)


def test_property_scale_dtype():
    st = breccia.cast(np.ones((3, 64), np.float32), breccia.MXFP8BlockScaling())
    assert st.scale_dtype == np.dtype(ml_dtypes.float8_e8m0fnu)


def test_extension_logical_shape_unpacks_4bit_data():
    st = breccia.cast(np.ones((3, 64), np.float32), breccia.NVFP4BlockScaling())
    assert st.shape == (3, 32) and st.logical_shape == (3, 64)


# --- ScaledTensor: repr --------------------------------------------------------------------------


def test_repr():
    st = breccia.cast(np.ones((4, 64), np.float32), breccia.MXFP8BlockScaling())
    assert repr(st) == (
        "breccia.ScaledTensor(shape=(4, 64), data_dtype=float8_e4m3fn, scale_shape=(4, 2), "
        "recipe=MXFP8BlockScaling(fp8_format='E4M3', block_size=32, scale_rounding='floor'), "
        "layout=PerBlockMN(block_m=1, block_n=32))"
    )


# --- cast ----------------------------------------------------------------------------------------


def test_cast_x_keeps_the_backend(framework):
    from conftest import to_framework

    x = to_framework(np.ones((4, 64), np.float32), framework)
    st = breccia.cast(x, breccia.MXFP8BlockScaling())
    assert type(st.data) is type(x) and type(st.scale) is type(x)


def test_cast_recipe_must_be_a_recipe():
    with pytest.raises(TypeError, match="recipe must be a recipe"):
        breccia.cast(np.ones((4, 64), np.float32), "MXFP8")


def test_cast_x_must_be_an_array():
    with pytest.raises(TypeError, match="x must be array-like"):
        breccia.cast([1.0, 2.0], breccia.Float8CurrentScaling())


@pytest.mark.parametrize(
    "recipe_class",
    [
        breccia.Float8BlockScaling,
        breccia.MXFP8BlockScaling,
        breccia.NVFP4BlockScaling,
        breccia.INT4Scaling,
    ],
)
def test_cast_block_recipes_need_divisible_last_dim(recipe_class):
    with pytest.raises(ValueError, match="multiple of the block size"):
        breccia.cast(np.ones((4, 200), np.float32), recipe_class())


def test_cast_float8_block_needs_2d():
    with pytest.raises(ValueError, match="x"):
        breccia.cast(np.ones(256, np.float32), breccia.Float8BlockScaling())


def test_cast_extension_axis_minus_2_blocks_columns():
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    st = breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2)
    assert st.layout == PerBlockMN(block_m=32, block_n=1)
    assert st.scale.shape == (2, 8)
    rowwise = breccia.cast(np.ascontiguousarray(x.T), breccia.MXFP8BlockScaling())
    assert st.data.T.tobytes() == rowwise.data.tobytes()


def test_cast_rejects_integer_input():
    with pytest.raises(TypeError, match="float32, float16, bfloat16 or float64"):
        breccia.cast(np.ones((4, 64), np.int32), breccia.MXFP8BlockScaling())


# --- dequantize ----------------------------------------------------------------------------------


def test_dequantize_output_matches_input_backend(framework):
    from conftest import to_framework

    x = to_framework(np.ones((4, 64), np.float32), framework)
    y = breccia.dequantize(breccia.cast(x, breccia.MXFP8BlockScaling()))
    assert type(y) is type(x)


def test_dequantize_extension_out_dtype():
    st = breccia.cast(np.ones((4, 64), np.float32), breccia.MXFP8BlockScaling())
    assert breccia.dequantize(st).dtype == np.float32
    assert breccia.dequantize(st, out_dtype=np.float16).dtype == np.float16
    assert breccia.dequantize(st, out_dtype=ml_dtypes.bfloat16).dtype == ml_dtypes.bfloat16
    assert breccia.dequantize(st, out_dtype="float64").dtype == np.float64
    with pytest.raises(TypeError, match="out_dtype"):
        breccia.dequantize(st, out_dtype=np.int8)


def test_dequantize_needs_a_scaled_tensor():
    with pytest.raises(TypeError, match=r"scaled must be a breccia\.ScaledTensor"):
        breccia.dequantize(np.ones(4, np.float32))


# --- matmul --------------------------------------------------------------------------------------


def _operands():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 8, 64)).astype(np.float32)
    b = rng.standard_normal((64, 16)).astype(np.float32)
    return a, b


def test_matmul_a_may_be_scaled_or_raw():
    a, b = _operands()
    sa = breccia.cast(a, breccia.MXFP8BlockScaling())
    expected = np.matmul(breccia.dequantize(sa), b)
    np.testing.assert_allclose(breccia.matmul(sa, b), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(breccia.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)


def test_matmul_b_may_be_scaled_or_raw():
    a, b = _operands()
    sb = breccia.cast(b, breccia.MXFP8BlockScaling(), axis=-2)
    expected = np.matmul(a, breccia.dequantize(sb))
    np.testing.assert_allclose(breccia.matmul(a, sb), expected, rtol=1e-5, atol=1e-4)


def test_matmul_out_dtype():
    a, b = _operands()
    out = breccia.matmul(a, b, out_dtype=np.float16)
    assert out.dtype == np.float16
    assert out.tobytes() == breccia.matmul(a, b).astype(np.float16).tobytes()


def test_matmul_returns_batch_m_n():
    a, b = _operands()
    assert breccia.matmul(a, b).shape == (2, 8, 16)


def test_matmul_mismatched_k():
    with pytest.raises(ValueError, match="K=64"):
        breccia.matmul(np.ones((8, 64), np.float32), np.ones((32, 4), np.float32))


def test_matmul_mixed_backends_are_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="different frameworks"):
        breccia.matmul(np.ones((8, 64), np.float32), torch.ones((64, 4)))


# --- requantize ----------------------------------------------------------------------------------


def test_requantize_is_cast_of_dequantize():
    x = np.random.default_rng(2).standard_normal((8, 128)).astype(np.float32)
    st = breccia.cast(x, breccia.MXFP8BlockScaling())
    new = breccia.requantize(st, breccia.NVFP4BlockScaling())
    direct = breccia.cast(breccia.dequantize(st), breccia.NVFP4BlockScaling())
    assert new.recipe == breccia.NVFP4BlockScaling()
    assert new.data.tobytes() == direct.data.tobytes()
    assert new.scale.tobytes() == direct.scale.tobytes()


# --- from_buffer ---------------------------------------------------------------------------------


def test_from_buffer_wraps_without_copy():
    data = np.zeros((4, 64), ml_dtypes.float8_e4m3fn)
    scale = np.ones((4, 2), ml_dtypes.float8_e8m0fnu)
    st = breccia.from_buffer(data, scale, breccia.MXFP8BlockScaling(), PerBlockMN(1, 32))
    assert st.data is data and st.scale is scale


def test_from_buffer_validates():
    with pytest.raises(ValueError, match=r"scale shape must be \(4, 2\)"):
        breccia.from_buffer(
            np.zeros((4, 64), np.uint8),
            np.ones((4, 3), np.uint8),
            breccia.MXFP8BlockScaling(),
            PerBlockMN(1, 32),
        )


# --- recipes: defaults and fixed fields ----------------------------------------------------------


@pytest.mark.parametrize(
    "cls, defaults",
    [
        (breccia.DelayedScaling, {"fp8_format": "E4M3", "amax_history_len": 16, "margin": 0}),
        (breccia.Float8CurrentScaling, {"fp8_format": "E4M3", "power_2_scale": False}),
        (
            breccia.Float8BlockScaling,
            {"fp8_format": "E4M3", "block_k": 128, "block_m": 1, "power_2_scale": True},
        ),
        (
            breccia.MXFP8BlockScaling,
            {"fp8_format": "E4M3", "block_size": 32, "scale_rounding": "floor"},
        ),
        (
            breccia.NVFP4BlockScaling,
            {"fp4_format": "E2M1", "block_size": 16, "scale_format": "E4M3", "two_d": False},
        ),
        (breccia.INT4Scaling, {"group_size": 128, "signed": True, "scale_dtype": "fp16"}),
    ],
)
def test_recipe_defaults(cls, defaults):
    recipe = cls()
    assert dataclasses.asdict(recipe) == defaults
    # The Python defaults are the C++ ones: JSON with no fields takes the C++ defaults.
    assert cls.from_json({"recipe": cls.__name__}) == recipe
    assert recipe.to_json() == {"recipe": cls.__name__, **defaults}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: breccia.MXFP8BlockScaling(block_size=16), "block_size must be 32"),
        (lambda: breccia.NVFP4BlockScaling(fp4_format="E3M0"), "fp4_format must be 'E2M1'"),
        (lambda: breccia.NVFP4BlockScaling(block_size=32), "block_size must be 16"),
        (lambda: breccia.NVFP4BlockScaling(scale_format="E8M0"), "scale_format must be 'E4M3'"),
        (
            lambda: breccia.Float8CurrentScaling(fp8_format="E3M4"),
            "fp8_format must be 'E4M3' or 'E5M2'",
        ),
        (lambda: breccia.INT4Scaling(scale_dtype="fp8"), "scale_dtype"),
        (
            lambda: breccia.MXFP8BlockScaling(scale_rounding="up"),
            "scale_rounding|'floor' or 'rceil'",
        ),
        (
            lambda: breccia.DelayedScaling(amax_history_len=0),
            r"amax_history_len must be in \[1, 1048576\], got 0",
        ),
    ],
)
def test_recipe_fixed_and_invalid_fields_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_recipes_are_frozen_hashable_and_picklable():
    for recipe in (breccia.DelayedScaling(margin=1), breccia.INT4Scaling(signed=False)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            recipe.margin = 2
        assert hash(recipe) == hash(dataclasses.replace(recipe))
        assert pickle.loads(pickle.dumps(recipe)) == recipe
        assert breccia.recipe_from_json(json.loads(json.dumps(recipe.to_json()))) == recipe
    assert len({breccia.Float8CurrentScaling(), breccia.Float8CurrentScaling()}) == 1


def test_recipe_repr_is_the_cpp_repr():
    assert (
        repr(breccia.INT4Scaling())
        == "INT4Scaling(group_size=128, signed=True, scale_dtype='fp16')"
    )


def test_recipe_from_json_of_the_wrong_class():
    with pytest.raises(ValueError, match="describes INT4Scaling"):
        breccia.Float8CurrentScaling.from_json({"recipe": "INT4Scaling"})
    with pytest.raises(ValueError, match="unknown field"):
        breccia.recipe_from_json({"recipe": "INT4Scaling", "bits": 4})


def test_delayed_scaling_state_extension():
    recipe = breccia.DelayedScaling(amax_history_len=2)
    state = breccia.DelayedScalingState(recipe)
    x = np.full((2, 4), 2.0, np.float32)
    first = breccia.cast(x, recipe, state=state)
    assert float(first.scale) == 1.0  # the previous (initial) scale
    assert state.encode_scale == np.float32(448.0) / np.float32(2.0)
    second = breccia.cast(x, recipe, state=state)
    assert float(second.scale) == np.float32(1.0) / np.float32(224.0)
    with pytest.raises(ValueError, match="state"):
        breccia.cast(x, breccia.Float8CurrentScaling(), state=state)


# --- layouts: accepted scale shapes --------------------------------------------------------------


def test_layout_per_tensor():
    data = np.zeros((4, 8), np.uint8)
    PerTensor().validate(data, np.float32(1))
    PerTensor().validate(data, np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"\(\) or \(1,\)"):
        PerTensor().validate(data, np.ones(4, np.float32))


def test_layout_per_block_k():
    data = np.zeros((2, 4, 256), np.uint8)
    PerBlockK(block_size=128).validate(data, np.ones((2, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 4, 2\)"):
        PerBlockK(block_size=128).validate(data, np.ones((2, 4, 1), np.float32))
    assert PerBlockK().block_size == 128


def test_layout_per_channel():
    PerChannel().validate(np.zeros((4, 8)), np.ones(4))
    PerChannel().validate(np.zeros((2, 4, 8)), np.ones((2, 4, 1)))
    with pytest.raises(ValueError, match=r"\(4, 1\) or \(4,\)"):
        PerChannel().validate(np.zeros((4, 8)), np.ones(5))


def test_layout_per_block_mn():
    assert (PerBlockMN().block_m, PerBlockMN().block_n) == (1, 32)
    PerBlockMN(1, 32).validate(np.zeros((4, 64)), np.ones((4, 2)))
    PerBlockMN(1, 16).validate(np.zeros((4, 64)), np.ones((4, 4)))
    PerBlockMN(32, 1).validate(np.zeros((64, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        PerBlockMN(1, 32).validate(np.zeros((4, 64)), np.ones((4, 3)))


def test_layout_extension_logical_shape():
    PerBlockMN(1, 16).validate(np.zeros((4, 32), np.uint8), np.ones((4, 4)), logical_shape=(4, 64))


def test_layouts_are_frozen_hashable_picklable_json():
    for layout in (PerTensor(), PerBlockK(64), PerChannel(), PerBlockMN(32, 1)):
        assert pickle.loads(pickle.dumps(layout)) == layout
        assert breccia.layout_from_json(layout.to_json()) == layout
        assert hash(layout) == hash(type(layout).from_json(json.dumps(layout.to_json())))
    with pytest.raises(dataclasses.FrozenInstanceError):
        PerBlockK().block_size = 3
    assert repr(PerBlockMN()) == "PerBlockMN(block_m=1, block_n=32)"
    with pytest.raises(ValueError, match=r"must be in \[1, 1048576\], got 0"):
        PerBlockK(block_size=0)


# --- bridges -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "from_transformer_engine",
        "to_transformer_engine",
        "from_torchao",
        "to_torchao",
        "save_safetensors",
        "load_safetensors",
        "to_dlpack",
        "from_dlpack",
        "from_deepseek_v3",
        "to_deepseek_v3",
    ],
)
def test_bridge_is_exposed(name):
    from breccia import bridges

    assert callable(getattr(bridges, name)) and getattr(bridges, name).__doc__


# --- kernels -------------------------------------------------------------------------------------


def test_kernels_reference_cast_and_dequantize():
    from breccia.kernels import reference

    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    st = reference.cast(x, breccia.MXFP8BlockScaling())
    assert st.data.tobytes() == breccia.cast(x, breccia.MXFP8BlockScaling()).data.tobytes()
    assert reference.dequantize(st).tobytes() == breccia.dequantize(st).tobytes()


def test_kernels_reference_requantize():
    from breccia.kernels import reference

    x = np.random.default_rng(4).standard_normal((4, 64)).astype(np.float32)
    st = reference.cast(x, breccia.MXFP8BlockScaling())
    new = reference.requantize(st, breccia.Float8CurrentScaling())
    expected = reference.cast(reference.dequantize(st), breccia.Float8CurrentScaling())
    assert new.data.tobytes() == expected.data.tobytes()


def test_kernels_reference_matmul():
    from breccia.kernels import reference

    a, b = _operands()
    sa = reference.cast(a, breccia.MXFP8BlockScaling())
    assert reference.matmul(sa, b).tobytes() == breccia.matmul(sa, b).tobytes()


def test_kernels_cuda_is_import_gated():
    from breccia.kernels import cuda

    if not cuda.CUDA_AVAILABLE:
        assert [name for name in dir(cuda) if not name.startswith("_")] == ["CUDA_AVAILABLE"]
        assert cuda.__all__ == ["CUDA_AVAILABLE"]
        assert not hasattr(cuda, "scaled_matmul_cuda")


def test_version():
    assert breccia.__version__ == "0.0.1"


def test_private_backend_predicates():
    from breccia import _core

    assert not _core._is_torch(np.ones(2))
    torch = pytest.importorskip("torch")
    assert _core._is_torch(torch.ones(2)) and not _core._is_jax(torch.ones(2))


def test_public_names_have_docstrings():
    for name in breccia.__all__:
        value = getattr(breccia, name)
        if callable(value):
            assert value.__doc__, name
    assert "recipe" in breccia.cast.__doc__ and "axis" in breccia.cast.__doc__
