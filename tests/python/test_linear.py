"""breccia.linear for (N, K) weights as checkpoints store them, ScaledTensor.T, and the
first-use errors: messages naming the call, recipe format names in any case, a recipe class
given for an instance, and the logical shape of packed tensors in the repr."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia.kernels import reference
from conftest import default_recipes, raw_bytes, to_framework, to_numpy

RECIPES = default_recipes()
IDS = [repr(recipe) for recipe in RECIPES]


def weights(rows: int = 96, cols: int = 256, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, cols)).astype(np.float32)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_linear_is_x_times_the_dequantized_weight_transposed_plus_bias(framework, recipe):
    w = breccia.cast(to_framework(weights(), framework), recipe)  # (N, K) blocked along K
    x = to_framework(weights(5, 256, seed=4), framework)
    bias = to_framework(weights(1, 96, seed=5)[0], framework)
    got = to_numpy(breccia.linear(x, w, bias)).astype(np.float64)
    want = to_numpy(x).astype(np.float64) @ to_numpy(breccia.dequantize(w)).astype(np.float64).T
    want += to_numpy(bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_linear_matches_the_reference_kernels_bit_for_bit_above_sixteen_rows(recipe):
    # More than 16 rows: the fast kernels dequantize and call the same BLAS as the reference.
    w = breccia.cast(weights(), recipe)
    x = breccia.cast(weights(24, 256, seed=9), recipe)
    bias = weights(1, 96, seed=10)[0]
    for out_dtype in (np.float32, "bfloat16"):
        fast = breccia.linear(x, w, bias, out_dtype=out_dtype)
        oracle = reference.linear(x, w, bias, out_dtype=out_dtype)
        assert raw_bytes(fast) == raw_bytes(oracle)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
@pytest.mark.parametrize("rows", [1, 3, 4, 7, 16])
def test_decoding_linear_is_within_the_fp32_summation_bound(recipe, rows):
    # Up to 16 rows the weight is decoded in registers, never dequantized into memory; its
    # values are dequantize()'s, only the order of the fp32 sums differs from the BLAS. So
    # |got - exact| <= gamma_K * sum_k |x_k w_k| (gamma_K = K u / (1 - K u), u = 2^-24), plus
    # the bias's rounding, against the fp64 product of the same fp32 operands.
    w = breccia.cast(weights(), recipe)
    x = weights(rows, 256, seed=11)
    x[0, :7] = [0.0, -0.0, 1e-30, -1e-30, 3e4, -3e4, 1e-40]  # zeros, subnormals, large
    bias = weights(1, 96, seed=12)[0]
    w64 = breccia.dequantize(w).astype(np.float64)
    exact = x.astype(np.float64) @ w64.T
    magnitude = np.abs(x).astype(np.float64) @ np.abs(w64).T
    k = x.shape[1]
    unit = 2.0**-24
    gamma = k * unit / (1 - k * unit)
    got = breccia.linear(x, w, bias)
    assert got.dtype == np.float32 and got.shape == (rows, 96)
    sum_only = got.astype(np.float64) - bias  # exact up to the bias addition's rounding
    bound = gamma * magnitude + 2 * unit * (np.abs(exact) + np.abs(bias)) + 1e-45
    assert np.all(np.abs(sum_only - exact) <= bound)
    # The bf16 result is the fp32 result rounded once.
    rounded = breccia.linear(x, w, bias, out_dtype="bfloat16")
    assert raw_bytes(rounded) == raw_bytes(got.astype(ml_dtypes.bfloat16))
    # The reference kernels stay reachable, and agree within the same bound.
    oracle = reference.linear(x, w, bias).astype(np.float64) - bias
    assert np.all(np.abs(oracle - exact) <= bound)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_decoding_linear_propagates_nan_and_inf_like_the_dequantized_product(recipe):
    w = breccia.cast(weights(), recipe)
    x = weights(2, 256, seed=13)
    x[0, 5] = np.nan
    x[1, 9] = np.inf
    got = breccia.linear(x, w)
    with np.errstate(invalid="ignore"):
        want = x.astype(np.float64) @ breccia.dequantize(w).astype(np.float64).T
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))


def test_linear_of_a_square_weight_is_not_matmul():
    # The trap linear removes: matmul(x, w) of a square (N, K) weight silently computes x @ w.
    w = breccia.cast(weights(128, 128), breccia.Float8BlockScaling())
    x = weights(4, 128, seed=1)
    w32 = breccia.dequantize(w).astype(np.float64)
    np.testing.assert_allclose(breccia.linear(x, w), x @ w32.T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(breccia.matmul(x, w), x @ w32, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_transpose_dequantizes_to_the_transpose_exactly(framework, recipe):
    w = breccia.cast(to_framework(weights(64, 128), framework), recipe)
    t = w.T
    assert t.logical_shape == (128, 64)
    assert raw_bytes(breccia.dequantize(t)) == raw_bytes(
        np.ascontiguousarray(to_numpy(breccia.dequantize(w)).T)
    )
    assert raw_bytes(breccia.dequantize(t.T)) == raw_bytes(breccia.dequantize(w))
    assert t.layout == w.transpose(-1, -2).layout == w.transpose(1, 0).layout
    assert t.T.layout == w.layout


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_transpose_is_a_view_for_one_byte_formats(recipe):
    w = breccia.cast(weights(64, 128), recipe)
    t = w.T
    assert np.shares_memory(t.scale, w.scale) or t.scale.size == 1
    if recipe.spec["packed"]:
        assert not np.shares_memory(t.data, w.data)  # the codes are repacked
    else:
        assert np.shares_memory(t.data, w.data)


def test_a_transposed_weight_is_a_matmul_operand():
    w = breccia.cast(weights(256, 256), breccia.Float8BlockScaling(block_m=128, block_k=128))
    x = weights(4, 256, seed=2)
    np.testing.assert_allclose(breccia.matmul(x, w.T), breccia.linear(x, w), rtol=1e-5, atol=1e-4)


def test_transpose_refuses_other_dims_and_per_channel_tensors():
    w = breccia.cast(weights(8, 32), breccia.MXFP8BlockScaling())
    with pytest.raises(ValueError, match=r"transpose: expected the last two dims"):
        w.transpose(0, 0)
    per_channel = breccia.from_buffer(
        np.zeros((8, 16), np.uint8),
        np.ones(8, np.float32),
        breccia.Float8CurrentScaling(),
        breccia.PerChannel(),
    )
    with pytest.raises(NotImplementedError, match=r"transpose: x: the transpose of a PerChannel"):
        _ = per_channel.T


def test_linear_names_the_argument_that_does_not_fit():
    w = breccia.cast(weights(8, 32), breccia.MXFP8BlockScaling())
    with pytest.raises(ValueError, match=r"^linear: bias: expected shape \(N,\) = \(8,\)"):
        breccia.linear(weights(2, 32), w, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"^linear: x's last dimension \(K=16"):
        breccia.linear(weights(2, 16), w)


def test_errors_name_the_function_called():
    with pytest.raises(ValueError, match=r"^cast: x: Float8BlockScaling needs dimension -1"):
        breccia.cast(weights(4, 64), breccia.Float8BlockScaling())
    with pytest.raises(ValueError, match=r"^Float8CurrentScaling: fp8_format must be"):
        breccia.Float8CurrentScaling(fp8_format="E9M9")
    with pytest.raises(ValueError, match=r"^PerBlockK\.block_size must be in \[1, "):
        breccia.PerBlockK(block_size=0)
    with pytest.raises(ValueError, match=r"^recipe_from_json: "):
        breccia.recipe_from_json({"recipe": "Nope"})


def test_format_names_are_read_in_any_case():
    assert breccia.Float8CurrentScaling(fp8_format="e4m3") == breccia.Float8CurrentScaling()
    assert breccia.Float8CurrentScaling(fp8_format="e5m2").fp8_format == "E5M2"
    assert breccia.MXFP8BlockScaling(scale_rounding="RCEIL").scale_rounding == "rceil"
    assert breccia.MXFP6BlockScaling(fp6_format="e3m2").fp6_format == "E3M2"
    assert breccia.NVFP4BlockScaling(fp4_format="e2m1", scale_format="e4m3") == (
        breccia.NVFP4BlockScaling()
    )
    assert breccia.INT4Scaling(scale_dtype="BF16").scale_dtype == "bf16"


def test_a_recipe_or_layout_class_given_for_an_instance_says_so():
    with pytest.raises(TypeError, match=r"got the class Float8BlockScaling; call it"):
        breccia.cast(weights(4, 128), breccia.Float8BlockScaling)
    with pytest.raises(TypeError, match=r"got the class PerTensor; call it"):
        breccia.ScaledTensor(
            np.zeros(4, np.uint8),
            np.ones((), np.float32),
            breccia.Float8CurrentScaling(),
            breccia.PerTensor,
        )


def test_repr_shows_the_logical_shape_of_packed_data():
    packed = breccia.cast(weights(4, 64), breccia.NVFP4BlockScaling())
    assert "shape=(4, 32), logical_shape=(4, 64)" in repr(packed)
    plain = breccia.cast(weights(4, 64), breccia.MXFP8BlockScaling())
    assert "logical_shape" not in repr(plain)
