"""The OCP MX family against torchao's own quantizer, ``to_mx``, on the CPU: for every element
format (E4M3, E5M2, E2M3, E3M2, E2M1) and both scale roundings, breccia's scales and element
codes equal torchao's byte for byte, except where numerics.md says the two differ on purpose
(docs/numerics.md, "torchao and the MX rules"); those cases are checked too, each against the
rule breccia follows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import breccia

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore")
pytest.importorskip("torchao")

from torchao.prototype.mx_formats.config import ScaleCalculationMode  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import to_mx  # noqa: E402

# (breccia recipe factory, torchao element dtype, fmax, emax)
FORMATS = {
    "E4M3": (lambda r: breccia.MXFP8BlockScaling(scale_rounding=r), torch.float8_e4m3fn, 448.0, 8),
    "E5M2": (
        lambda r: breccia.MXFP8BlockScaling(fp8_format="E5M2", scale_rounding=r),
        torch.float8_e5m2,
        57344.0,
        15,
    ),
    "E2M3": (lambda r: breccia.MXFP6BlockScaling(scale_rounding=r), "fp6_e2m3", 7.5, 2),
    "E3M2": (
        lambda r: breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding=r),
        "fp6_e3m2",
        28.0,
        4,
    ),
    "E2M1": (lambda r: breccia.MXFP4BlockScaling(scale_rounding=r), torch.float4_e2m1fn_x2, 6.0, 2),
}
MODES = {"floor": ScaleCalculationMode.FLOOR, "rceil": ScaleCalculationMode.RCEIL}


def _heavy_tailed(rows: int, seed: int, dtype=torch.float32):
    """Blocks of 32 whose magnitudes span 2^-40 .. 2^40, with zeros, -0 and fp32 rounding
    midpoints of every format mixed in."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((rows, 256), generator=g) * torch.exp2(
        torch.randint(-40, 40, (rows, 8), generator=g).repeat_interleave(32, dim=1).float()
    )
    x[::7, :16] = 0.0
    x[1::11, 3] = -0.0
    x = x * (1 + torch.randint(0, 2, x.shape, generator=g) * 2.0**-23)  # odd mantissas
    return x.to(dtype)


def _codes(array) -> np.ndarray:
    """The one-byte codes of a torch tensor (FP8, E8M0 or uint8)."""
    return array.contiguous().view(torch.uint8).numpy()


def _theirs(x, fmt, mode):
    _, elem, _, _ = FORMATS[fmt]
    scale, data = to_mx(x, elem, 32, scaling_mode=MODES[mode])
    return scale.view(torch.uint8).numpy(), data.view(torch.uint8).numpy()


def _documented_differences(x, fmt, mode) -> np.ndarray:
    """Blocks (rows, blocks) where torchao's arithmetic departs from the MX rule breccia follows:
    scale code 0 (torchao clamps its fp32 scale at 2^-126 under floor, multiplies by 1 under
    rceil) and, under rceil, an amax / fmax a few ulps above a power of two (torchao takes
    ceil(log2) of an fp32 log2 that has rounded to the integer)."""
    _, _, fmax, emax = FORMATS[fmt]
    amax = x.float().abs().reshape(x.shape[0], -1, 32).amax(dim=-1).numpy().astype(np.float32)
    if mode == "floor":
        exponent = (amax.view(np.uint32) >> 23).astype(np.int64) - 127
        return exponent - emax <= -127
    d = (amax / np.float32(fmax)).astype(np.float32)
    flagged = np.zeros(d.shape, bool)
    for index, value in np.ndenumerate(d):
        if value == 0:
            continue
        frac, exp = math.frexp(float(value))  # value = frac * 2^exp, frac in [0.5, 1)
        exact = exp - 1 if frac == 0.5 else exp
        rounded = math.ceil(float(np.float32(np.log2(np.float64(value)))))
        flagged[index] = exact != rounded or exact + 127 <= 0
    return flagged


@pytest.mark.parametrize("mode", ["floor", "rceil"])
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_bytes_equal_torchaos_to_mx(fmt, mode, dtype):
    x = _heavy_tailed(64, seed=hash((fmt, mode)) % 1000, dtype=dtype)
    ours = breccia.cast(x, FORMATS[fmt][0](mode))
    their_scale, their_data = _theirs(x, fmt, mode)
    our_scale = _codes(ours.scale)
    our_data = _codes(ours.data)
    assert our_data.shape == their_data.shape and our_scale.shape == their_scale.shape

    expected_differences = _documented_differences(x, fmt, mode)
    same = ~expected_differences
    assert same.mean() > 0.9  # the comparison covers nearly every block
    np.testing.assert_array_equal(our_scale[same], their_scale[same])
    per_block = our_data.reshape(x.shape[0], our_scale.shape[1], -1)
    theirs_per_block = their_data.reshape(per_block.shape)
    np.testing.assert_array_equal(per_block[same], theirs_per_block[same])


def test_dequantize_equals_torchaos_for_every_format():
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    x = _heavy_tailed(32, seed=5)
    for fmt, (recipe, elem, _, _) in FORMATS.items():
        theirs = MXTensor.to_mx(x, elem, 32)
        ours = breccia.cast(x, recipe("floor"))
        np.testing.assert_array_equal(_codes(ours.data), theirs.qdata.view(torch.uint8).numpy())
        ref = theirs.dequantize(torch.float32)
        got = breccia.dequantize(ours)
        assert torch.equal(got.view(torch.int32), ref.view(torch.int32)), fmt


def test_floor_code_zero_follows_the_ocp_rule_not_torchaos_clamp():
    """amax = 2^-125 under E2M1: code 0 (2^-127); breccia scales by 2^127 (element 4.0, code
    0x6), torchao by 2^126 (2.0, code 0x4)."""
    x = torch.zeros((1, 32))
    x[0, 0] = 2.0**-125
    ours = breccia.cast(x, breccia.MXFP4BlockScaling())
    their_scale, their_data = _theirs(x, "E2M1", "floor")
    assert _codes(ours.scale)[0, 0] == their_scale[0, 0] == 0
    assert _codes(ours.data)[0, 0] & 0xF == 0x6
    assert their_data[0, 0] & 0xF == 0x4


def test_rceil_is_the_exact_ceiling_where_torchaos_fp32_log2_rounds():
    """amax bits 0x56400003 under E2M1: amax / 6 = 2^43 (1 + 2^-22); the exact ceiling is 44
    (code 171, as TransformerEngine and cvt.rp.satfinite.ue8m0 give), torchao's fp32 log2
    rounds to 43.0 (code 170, amax element saturated)."""
    x = torch.zeros((1, 32))
    x[0, 0] = float(np.array([0x56400003], np.uint32).view(np.float32)[0])
    ours = breccia.cast(x, breccia.MXFP4BlockScaling(scale_rounding="rceil"))
    their_scale, their_data = _theirs(x, "E2M1", "rceil")
    assert _codes(ours.scale)[0, 0] == 171 and their_scale[0, 0] == 170
    assert _codes(ours.data)[0, 0] & 0xF == 0x5  # 3.0
    assert their_data[0, 0] & 0xF == 0x7  # 6.0, saturated


def test_a_nan_or_inf_amax_makes_the_whole_block_nan():
    """A NaN or inf amax makes the block's scale 0xFF (numerics.md) and its elements code 0 (FP6
    and FP4 have no NaN) or 0x7F. torchao writes payload-dependent element codes for a NaN block
    and a finite scale (254 or 253) for an inf one, so only breccia's rule is checked here."""
    x = torch.ones((2, 32))
    x[0, 5] = float("nan")
    x[1, 7] = float("inf")
    for fmt, (recipe, _, _, _) in FORMATS.items():
        for mode in MODES:
            ours = breccia.cast(x, recipe(mode))
            scale = _codes(ours.scale)
            assert scale[0, 0] == 0xFF, (fmt, mode)
            assert scale[1, 0] == 0xFF, (fmt, mode)  # an inf amax is a NaN scale too
            data = _codes(ours.data)
            nan_code = 0x7F if fmt in ("E4M3", "E5M2") else 0
            assert (data[0] == nan_code).all(), (fmt, mode)
            assert torch.isnan(breccia.dequantize(ours)).all(), (fmt, mode)
