"""A few recipes checked against a plain NumPy + ml_dtypes model of numerics.md, written here
independently of the C++ core: the bytes must agree exactly."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia

F32 = np.float32


def inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((8, 64)) * rng.choice([1e-3, 1.0, 300.0], (8, 1))).astype(F32)
    x[3, :32] = 0.0
    return x


def fp8_codes(values: np.ndarray, fmt: str) -> np.ndarray:
    """Round to the FP8 format after saturating at its max finite (ml_dtypes rounds to even)."""
    dtype, fmax = {
        "E4M3": (ml_dtypes.float8_e4m3fn, 448.0),
        "E5M2": (ml_dtypes.float8_e5m2, 57344.0),
    }[fmt]
    return np.clip(values, -fmax, fmax).astype(dtype)


@pytest.mark.parametrize("fmt", ["E4M3", "E5M2"])
@pytest.mark.parametrize("seed", range(4))
def test_float8_current_scaling(fmt, seed):
    x = inputs(seed)
    fmax = F32(448.0 if fmt == "E4M3" else 57344.0)
    encode = fmax / np.abs(x).max()  # float32 division
    scaled = breccia.cast(x, breccia.Float8CurrentScaling(fp8_format=fmt))
    assert scaled.data.tobytes() == fp8_codes(x * encode, fmt).tobytes()
    assert scaled.scale.tobytes() == (F32(1.0) / encode).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_float8_block_scaling_power_of_two(seed):
    x = inputs(seed)
    blocks = x.reshape(8, 2, 32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        encode = np.where(amax == 0, F32(1.0), F32(448.0) / amax).astype(F32)
    encode = (encode.view(np.uint32) & np.uint32(0xFF800000)).view(F32)  # 2^floor(log2 s)
    scaled = breccia.cast(x, breccia.Float8BlockScaling(block_k=32))
    assert scaled.data.tobytes() == fp8_codes(blocks * encode, "E4M3").reshape(8, 64).tobytes()
    assert scaled.scale.tobytes() == (F32(1.0) / encode).reshape(8, 2).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_mxfp8_floor(seed):
    x = inputs(seed)
    blocks = x.reshape(8, 2, 32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    exponent_field = (amax.view(np.uint32) >> 23).astype(np.int64) & 0xFF
    e = np.clip(exponent_field - 127 - 8, -127, 127)
    codes = (e + 127).astype(np.uint8)
    elements = fp8_codes(blocks * np.ldexp(F32(1.0), -e).astype(F32), "E4M3")
    scaled = breccia.cast(x, breccia.MXFP8BlockScaling())
    assert scaled.scale.view(np.uint8).tobytes() == codes.reshape(8, 2).tobytes()
    assert scaled.data.tobytes() == elements.reshape(8, 64).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_int4_symmetric(seed):
    x = inputs(seed)
    groups = x.reshape(8, 2, 32)
    amax = np.abs(groups).max(axis=-1, keepdims=True)
    scale = np.where(amax == 0, F32(1.0), amax / F32(7.5)).astype(np.float16)
    q = np.clip(np.rint(groups / scale.astype(F32)), -8, 7).astype(np.int8).reshape(8, 64)
    nibbles = (q & 0x0F).astype(np.uint8)
    packed = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)  # element 2i in the low nibble
    scaled = breccia.cast(x, breccia.INT4Scaling(group_size=32))
    assert scaled.scale.tobytes() == scale.reshape(8, 2).tobytes()
    assert scaled.data.tobytes() == packed.tobytes()
