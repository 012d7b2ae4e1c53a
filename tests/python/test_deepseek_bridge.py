"""DeepSeek-V3 bridge: checkpoint-style weights and activations wrap without copying and
dequantize to DeepSeek's own formula (w = q * scale_inv per tile); DeepSeek's block quantizer
(s = max(amax, 1e-4) / 448, q = x / s, V3.1 "ue8m0" power-of-two scales) matches a plain
NumPy model of that formula byte for byte."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia.bridges import from_deepseek_v3, quantize_deepseek_v3, to_deepseek_v3
from conftest import raw_bytes, to_framework

E4M3 = ml_dtypes.float8_e4m3fn


def _tile_amax(x, block_m, block_k):
    """amax of each block_m x block_k tile (ragged last row tile allowed)."""
    rows, cols = x.shape
    tiles = np.zeros((-(-rows // block_m), cols // block_k), np.float32)
    for i in range(tiles.shape[0]):
        for j in range(tiles.shape[1]):
            tiles[i, j] = np.abs(
                x[i * block_m : (i + 1) * block_m, j * block_k : (j + 1) * block_k]
            ).max()
    return tiles


def _expand(scale, block_m, block_k, shape):
    return np.repeat(np.repeat(scale, block_m, axis=0), block_k, axis=1)[: shape[0], : shape[1]]


def deepseek_model(x, block_m=1, block_k=128, ue8m0=False):
    """DeepSeek-V3's act_quant / weight quantization, written from its formula."""
    s = np.maximum(_tile_amax(x, block_m, block_k), np.float32(1e-4)) / np.float32(448)
    if ue8m0:
        mantissa, exponent = np.frexp(s)  # s = mantissa * 2^exponent, mantissa in [0.5, 1)
        s = np.ldexp(np.float32(1), np.where(mantissa == 0.5, exponent - 1, exponent)).astype(
            np.float32
        )
    q = np.clip(x / _expand(s, block_m, block_k, x.shape), -448, 448).astype(E4M3)
    return q, s.astype(np.float32)


def _checkpoint_weight(rows, cols, seed=0):
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    return deepseek_model(x, block_m=128)


@pytest.mark.parametrize("shape", [(256, 384), (200, 300), (576, 128), (1, 256)])
def test_weight_dequantizes_to_deepseeks_formula(shape):
    # DeepSeek's scale grid is ceil-sized in both dims; a ragged K is built on a padded copy.
    q, s = _checkpoint_weight(*shape) if shape[1] % 128 == 0 else _ragged_weight(*shape)
    scaled = from_deepseek_v3(q, s)
    assert scaled.recipe == breccia.Float8BlockScaling(
        block_k=128, block_m=128, power_2_scale=False
    )
    assert scaled.layout == breccia.PerBlockMN(128, 128)
    expected = q.astype(np.float32) * _expand(s, 128, 128, shape)  # DeepSeek's weight_dequant
    assert raw_bytes(breccia.dequantize(scaled)) == raw_bytes(expected)


def _ragged_weight(rows, cols):
    padded = -(-cols // 128) * 128
    q, s = _checkpoint_weight(rows, padded)
    return np.ascontiguousarray(q[:, :cols]), s


def test_weight_and_scale_are_wrapped_not_copied_and_come_back_as_is():
    torch = pytest.importorskip("torch")
    q, s = _checkpoint_weight(256, 256)
    for data, scale in (
        (q, s),
        (torch.from_numpy(q.view(np.uint8)).view(torch.float8_e4m3fn), torch.from_numpy(s)),
    ):
        scaled = from_deepseek_v3(data, scale)
        assert scaled.data is data and scaled.scale is scale
        out_data, out_scale = to_deepseek_v3(scaled)
        assert out_data is data and out_scale is scale


def test_uint8_bytes_come_back_typed():
    q, s = _checkpoint_weight(128, 256)
    data, scale = to_deepseek_v3(from_deepseek_v3(q.view(np.uint8), s))
    assert data.dtype == E4M3 and data.tobytes() == q.tobytes() and scale is not None


def test_activation_scale_shape_selects_one_by_128_tiles():
    x = np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)
    q, s = deepseek_model(x, block_m=1)
    scaled = from_deepseek_v3(q, s)
    assert scaled.recipe.block_m == 1 and scaled.layout == breccia.PerBlockK(128)
    expected = q.astype(np.float32) * _expand(s, 1, 128, x.shape)
    assert raw_bytes(breccia.dequantize(scaled)) == raw_bytes(expected)


def test_scale_shape_that_fits_neither_convention_is_refused():
    q, s = _checkpoint_weight(256, 256)
    with pytest.raises(ValueError, match=r"expected 2 rows .* or 256 rows"):
        from_deepseek_v3(q, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="fp8_format"):
        from_deepseek_v3(q, s, fp8_format="E2M1")
    with pytest.raises(ValueError, match="block_k"):
        from_deepseek_v3(q, s, block_k=0)
    with pytest.raises(ValueError, match="of one rank"):
        from_deepseek_v3(q, s.reshape(-1))


def test_to_deepseek_refuses_other_recipes_and_columnwise_layouts():
    x = np.random.default_rng(2).standard_normal((128, 128)).astype(np.float32)
    with pytest.raises(ValueError, match="requantize"):
        to_deepseek_v3(breccia.cast(x, breccia.MXFP8BlockScaling()))
    columnwise = breccia.cast(x, breccia.Float8BlockScaling(), axis=-2)
    with pytest.raises(ValueError, match="columnwise"):
        to_deepseek_v3(columnwise)


@pytest.mark.parametrize("block_m", [1, 128])
@pytest.mark.parametrize("ue8m0", [False, True])
def test_quantizer_matches_deepseeks_formula(block_m, ue8m0):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((160, 384)) * rng.choice([1e-3, 1.0, 300.0], (160, 1))).astype(
        np.float32
    )
    x[5, :128] = 0  # an all-zero block: s = 1e-4 / 448, not 1
    x[7, 128:256] = 1e-6  # amax below the 1e-4 floor
    scaled = quantize_deepseek_v3(x, block_m=block_m, scale_fmt="ue8m0" if ue8m0 else None)
    q, s = deepseek_model(x, block_m=block_m, ue8m0=ue8m0)
    assert raw_bytes(scaled.data) == q.tobytes()
    assert raw_bytes(scaled.scale) == s.tobytes()
    assert scaled.recipe == breccia.Float8BlockScaling(block_m=block_m, power_2_scale=ue8m0)
    # and the bridge hands DeepSeek the same bytes
    data, scale = to_deepseek_v3(scaled)
    assert raw_bytes(data) == q.tobytes() and raw_bytes(scale) == s.tobytes()


def test_ue8m0_scales_are_powers_of_two_at_or_above_the_plain_ones():
    x = np.random.default_rng(4).standard_normal((8, 1024)).astype(np.float32)
    plain = np.asarray(quantize_deepseek_v3(x).scale)
    rounded = np.asarray(quantize_deepseek_v3(x, scale_fmt="ue8m0").scale)
    assert np.all(rounded >= plain) and np.all(rounded < 2 * plain)
    assert np.all(np.frexp(rounded)[0] == 0.5)


def test_quantizer_keeps_the_input_framework(framework):
    x = np.random.default_rng(5).standard_normal((4, 256)).astype(np.float32)
    scaled = quantize_deepseek_v3(to_framework(x, framework))
    assert scaled.backend == framework
    assert raw_bytes(scaled.data) == deepseek_model(x)[0].tobytes()


def test_quantizer_differs_from_transformer_engine_rule_where_documented():
    # TE's rule gives an all-zero block scale 1; DeepSeek's gives 1e-4 / 448.
    x = np.zeros((1, 128), np.float32)
    te = breccia.cast(x, breccia.Float8BlockScaling(power_2_scale=False))
    ds = quantize_deepseek_v3(x)
    assert np.asarray(te.scale)[0, 0] == 1.0
    assert np.asarray(ds.scale)[0, 0] == np.float32(1e-4) / np.float32(448)


def test_quantizer_bad_arguments():
    x = np.ones((4, 256), np.float32)
    with pytest.raises(ValueError, match="scale_fmt"):
        quantize_deepseek_v3(x, scale_fmt="e4m3")
    with pytest.raises(ValueError, match="multiple of the block size"):
        quantize_deepseek_v3(np.ones((4, 100), np.float32))
    with pytest.raises(TypeError, match="float32"):
        quantize_deepseek_v3(np.ones((4, 128), np.int32))
