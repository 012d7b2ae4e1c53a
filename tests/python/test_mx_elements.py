"""The MX element encoders against ml_dtypes, the peer that defines the FP6 and FP4 NumPy types:
every code decodes to ml_dtypes' value, and values encode to ml_dtypes' code (round to nearest
even, saturating) over every bfloat16 bit pattern and a million random fp32 values.

A block whose amax lies in [2^emax, 2^(emax+1)) gets the E8M0 scale 2^0 under the floor rule,
so its elements are encoded as they are; values between the format's max and 2^(emax+1) check
saturation."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia

# (recipe, ml_dtypes type, emax, packed)
FORMATS = {
    "E2M3": (breccia.MXFP6BlockScaling(), ml_dtypes.float6_e2m3fn, 2, False),
    "E3M2": (breccia.MXFP6BlockScaling(fp6_format="E3M2"), ml_dtypes.float6_e3m2fn, 4, False),
    "E2M1": (breccia.MXFP4BlockScaling(), ml_dtypes.float4_e2m1fn, 2, True),
}


def _values(emax: int) -> np.ndarray:
    """Every bfloat16 pattern and random fp32 values, all finite and below 2^(emax+1)."""
    bf16 = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
    rng = np.random.default_rng(3)
    wide = rng.standard_normal(1 << 20).astype(np.float32) * np.float32(2.0**emax)
    values = np.concatenate([bf16, wide])
    limit = np.float32(2.0 ** (emax + 1))
    return values[np.isfinite(values) & (np.abs(values) < limit)]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_code_decodes_to_ml_dtypes_value(fmt):
    recipe, dtype, _, packed = FORMATS[fmt]
    codes = np.arange(16 if packed else 64, dtype=np.uint8)
    if packed:
        pairs = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
        data = np.tile(pairs, 4).reshape(1, 32)
        expected = np.tile(codes, 4).view(dtype).astype(np.float32)
    else:
        data = codes.reshape(1, 64).view(dtype)
        expected = codes.view(dtype).astype(np.float32)
    scale = np.full((1, 2), 127, np.uint8).view(ml_dtypes.float8_e8m0fnu)  # 2^0
    scaled = breccia.from_buffer(data, scale, recipe, breccia.PerBlockMN(1, 32))
    np.testing.assert_array_equal(
        np.asarray(breccia.dequantize(scaled)).reshape(-1).view(np.uint32),
        expected.view(np.uint32),
    )


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_codes_equal_ml_dtypes_rounding(fmt):
    recipe, dtype, emax, packed = FORMATS[fmt]
    values = _values(emax)
    values = values[: len(values) // 31 * 31].reshape(-1, 31)
    anchor = np.full((values.shape[0], 1), 2.0**emax, np.float32)  # block scale 2^0
    x = np.concatenate([anchor, values], axis=1)
    scaled = breccia.cast(x, recipe)
    assert (np.asarray(scaled.scale).view(np.uint8) == 127).all()
    got = np.asarray(scaled.data).view(np.uint8)
    if packed:
        got = np.stack([got & 0xF, got >> 4], axis=-1).reshape(x.shape)
    want = x.astype(dtype).view(np.uint8)
    mismatched = np.count_nonzero(got != want)
    assert mismatched == 0, f"{mismatched} of {x.size} codes differ from ml_dtypes"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_op_takes_the_mx_family(fmt):
    recipe = FORMATS[fmt][0]
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 64)).astype(np.float32)
    b = rng.standard_normal((64, 32)).astype(np.float32)
    qa, qb = breccia.cast(a, recipe), breccia.cast(b, recipe, axis=-2)
    assert qb.layout == breccia.PerBlockMN(32, 1)
    expected = np.asarray(breccia.dequantize(qa)) @ np.asarray(breccia.dequantize(qb))
    np.testing.assert_allclose(np.asarray(breccia.matmul(qa, qb)), expected, rtol=1e-5, atol=1e-5)
    same = breccia.requantize(qa, recipe)  # same recipe and layout: the bytes stand
    assert np.asarray(same.data).tobytes() == np.asarray(qa.data).tobytes()
    assert np.asarray(same.scale).tobytes() == np.asarray(qa.scale).tobytes()
    again = breccia.requantize(qa, breccia.MXFP8BlockScaling())
    assert again.recipe == breccia.MXFP8BlockScaling()
    gemm = breccia.cast_for_gemm(a, recipe, columnwise=False, swizzled_scales=True)
    assert np.asarray(gemm.rowwise.data).tobytes() == np.asarray(qa.data).tobytes()
    assert gemm.rowwise_swizzled_scale.shape == (128, 4)  # 16 rows, 2 blocks: one padded tile
