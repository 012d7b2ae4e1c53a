"""Property tests (hypothesis): error bounds of dequantize(cast(x)), requantize to the same
recipe, JSON and pickle round trips."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import breccia

SHAPE = (16, 64)  # fits every recipe below (NVFP4 two_d needs 16 rows)
FP8 = {"E4M3": (448.0, 2.0**-4, 2.0**-10), "E5M2": (57344.0, 2.0**-3, 2.0**-17)}
# (max finite, half-ulp relative error, half the smallest subnormal) in scaled units.

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
inputs = hnp.arrays(np.float32, SHAPE, elements=finite)


def per_element_scale(scaled) -> np.ndarray:
    """Each element's decode scale, broadcast from the scale tensor (test-side bookkeeping)."""
    scale = np.asarray(scaled.scale).astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return np.full(SHAPE, scale.reshape(()), np.float32)
    rows, cols = SHAPE[0] // scale.shape[0], SHAPE[1] // scale.shape[1]
    return np.repeat(np.repeat(scale, rows, axis=0), cols, axis=1)


def fp8_bound(x, d, fmt):
    fmax, relative, absolute = FP8[fmt]
    v = np.abs(x) / np.where(d == 0, 1, d)
    saturated = np.maximum(0, v - fmax)
    return d * (v * relative + absolute + saturated) + np.abs(x) * 1e-6


FP8_RECIPES = [
    breccia.DelayedScaling(),
    breccia.DelayedScaling(fp8_format="E5M2", margin=2),
    breccia.Float8CurrentScaling(),
    breccia.Float8CurrentScaling(fp8_format="E5M2", power_2_scale=True),
    breccia.Float8BlockScaling(block_k=32),
    breccia.Float8BlockScaling(block_k=32, block_m=8, power_2_scale=False),
    breccia.MXFP8BlockScaling(),
    breccia.MXFP8BlockScaling(fp8_format="E5M2", scale_rounding="rceil"),
]


@pytest.mark.parametrize("recipe", FP8_RECIPES, ids=repr)
@settings(max_examples=60, deadline=None)
@given(x=inputs)
def test_fp8_error_bound(recipe, x):
    scaled = breccia.cast(x, recipe)
    error = np.abs(breccia.dequantize(scaled) - x)
    assert np.all(error <= fp8_bound(x, per_element_scale(scaled), recipe.fp8_format))


@pytest.mark.parametrize("two_d", [False, True])
@settings(max_examples=60, deadline=None)
@given(x=inputs)
@example(x=np.full((16, 64), 1e-45, np.float32))  # amax so small that S_enc saturates
def test_nvfp4_error_bound(two_d, x):
    scaled = breccia.cast(x, breccia.NVFP4BlockScaling(two_d=two_d))
    d = per_element_scale(scaled) * np.float32(scaled.global_scale)
    v = np.abs(x) / np.where(d == 0, 1, d)
    # E2M1 rounds within 0.25 below 2 and within a quarter of the value above; beyond 6 it
    # saturates. A block whose E4M3 scale underflowed to 0 holds values below half E4M3's
    # smallest subnormal (2^-10) times 6 / S_enc, where the tensor's encode factor
    # S_enc = 2688 / amax saturates at FLT_MAX for tiny tensors.
    bound = d * (0.25 + v / 4) + np.maximum(0, np.abs(x) - 6 * d) + np.abs(x) * 1e-6
    amax = float(np.max(np.abs(x)))
    tensor_encode = min(2688.0 / amax, float(np.finfo(np.float32).max)) if amax > 0 else 1.0
    underflow = 6 * 2.0**-10 / tensor_encode * (1 + 1e-6)
    assert np.all(np.abs(breccia.dequantize(scaled) - x) <= bound)
    assert np.all(np.abs(x[d == 0]) <= underflow)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("scale_dtype", ["fp16", "bf16", "fp32"])
@settings(max_examples=60, deadline=None)
@given(x=inputs)
def test_int4_error_bound(signed, scale_dtype, x):
    scaled = breccia.cast(
        x, breccia.INT4Scaling(group_size=32, signed=signed, scale_dtype=scale_dtype)
    )
    s = per_element_scale(scaled)
    # Symmetric: half a step (the top code 7 clamps 7.5 * s by half a step too). Asymmetric:
    # the rounded zero point adds another half step. The scale's own rounding (bf16: 2^-9
    # relative) can push the extreme value one rounding further.
    steps = 0.5 if signed else 1.0
    bound = s * (steps + 8 * 2.0**-8) + 2.0**-20
    assert np.all(np.abs(breccia.dequantize(scaled) - x) <= bound)


ALL_RECIPES = [
    *FP8_RECIPES,
    breccia.MXFP6BlockScaling(),
    breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding="rceil"),
    breccia.MXFP4BlockScaling(),
    breccia.NVFP4BlockScaling(),
    breccia.INT4Scaling(group_size=32),
    breccia.INT4Scaling(group_size=64, signed=False, scale_dtype="bf16"),
]


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=repr)
@settings(max_examples=30, deadline=None)
@given(x=inputs)
def test_requantize_to_the_same_recipe_keeps_the_bytes(recipe, x):
    scaled = breccia.cast(x, recipe)
    again = breccia.requantize(scaled, recipe)
    for name in ("data", "scale", "global_scale", "zero_point"):
        before, after = getattr(scaled, name), getattr(again, name)
        assert (before is None) == (after is None)
        if before is not None:
            assert np.asarray(before).tobytes() == np.asarray(after).tobytes()


fp8_formats = st.sampled_from(["E4M3", "E5M2"])
positive = st.integers(1, 4096)
recipes = st.one_of(
    st.builds(breccia.DelayedScaling, fp8_formats, positive, st.integers(0, 8)),
    st.builds(breccia.Float8CurrentScaling, fp8_formats, st.booleans()),
    st.builds(breccia.Float8BlockScaling, fp8_formats, positive, positive, st.booleans()),
    st.builds(
        breccia.MXFP8BlockScaling, fp8_formats, st.just(32), st.sampled_from(["floor", "rceil"])
    ),
    st.builds(breccia.NVFP4BlockScaling, two_d=st.booleans()),
    st.builds(
        breccia.INT4Scaling,
        st.one_of(st.just(-1), positive),
        st.booleans(),
        st.sampled_from(["fp16", "bf16", "fp32"]),
    ),
)


@given(recipe=recipes)
def test_json_round_trip_is_identity(recipe):
    text = json.dumps(recipe.to_json())
    restored = breccia.recipe_from_json(json.loads(text))
    assert restored == recipe and type(restored) is type(recipe)
    assert type(recipe).from_json(text) == recipe
    assert hash(restored) == hash(recipe) and repr(restored) == repr(recipe)


@given(recipe=recipes)
def test_pickling_a_recipe_works(recipe):
    restored = pickle.loads(pickle.dumps(recipe))
    assert restored == recipe and repr(restored) == repr(recipe)


@pytest.mark.parametrize("two_d", [False, True])
def test_nvfp4_tensor_amax_gives_a_fused_groups_shared_global_scale(two_d):
    """Members of a fused projection cast with the group's amax share one global scale, which
    is the scale of the member with that amax; the fast and reference kernels agree."""
    rng = np.random.default_rng(5)
    recipe = breccia.NVFP4BlockScaling(two_d=two_d)
    q, k = rng.standard_normal((64, 128)).astype(np.float32), rng.standard_normal((32, 128))
    k = (k * 9).astype(np.float32)
    shared = float(max(np.abs(q).max(), np.abs(k).max()))
    cq = breccia.cast(q, recipe, tensor_amax=shared)
    ck = breccia.cast(k, recipe, tensor_amax=shared)
    assert np.asarray(cq.global_scale).tobytes() == np.asarray(ck.global_scale).tobytes()
    plain_k = breccia.cast(k, recipe)
    assert np.asarray(ck.data).tobytes() == np.asarray(plain_k.data).tobytes()
    assert np.asarray(ck.global_scale).tobytes() == np.asarray(plain_k.global_scale).tobytes()
    reference = breccia.kernels.reference.cast(q, recipe, tensor_amax=shared)
    for name in ("data", "scale", "global_scale"):
        assert (
            np.asarray(getattr(cq, name)).tobytes()
            == np.asarray(getattr(reference, name)).tobytes()
        )
    with pytest.raises(ValueError, match="tensor_amax: only NVFP4"):
        breccia.cast(q, breccia.MXFP8BlockScaling(), tensor_amax=1.0)
    for negative in (-1.0, -0.0):  # an amax is never negative (-0 would turn into NaN bits)
        with pytest.raises(ValueError, match="tensor_amax: expected a non-negative amax"):
            breccia.cast(q, recipe, tensor_amax=negative)
    # Every NaN is taken as the canonical one, as the kernels' own amax pass gives it.
    nan = breccia.cast(
        q, recipe, tensor_amax=float(np.frombuffer(b"\x01\x00\xc0\x7f", np.float32)[0])
    )
    canonical = breccia.cast(q, recipe, tensor_amax=float("nan"))
    assert np.asarray(nan.global_scale).tobytes() == np.asarray(canonical.global_scale).tobytes()
