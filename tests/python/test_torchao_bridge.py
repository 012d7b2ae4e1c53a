"""torchao bridge, against the real torchao package on the CPU: torchao's own dequantize of a
converted ScaledTensor equals breccia's bit for bit (and the other way round for tensors
torchao quantized itself), buffers are shared where the layouts agree, and round trips keep
every byte.

NVFP4: torchao's NVFP4Tensor.dequantize multiplies q * (per_tensor_scale * block_scale), which
is breccia's order too (docs/numerics.md), so the two agree bit for bit for any global scale.
Int4Tensor has no dequantize in torchao; it is checked against its documented formula.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import breccia
from breccia.bridges import from_dlpack, from_torchao, to_torchao

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore")
torchao = pytest.importorskip("torchao")

from torchao.prototype.mx_formats.mx_tensor import MXTensor  # noqa: E402
from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor  # noqa: E402
from torchao.quantization import Float8Tensor, Int4Tensor  # noqa: E402
from torchao.quantization.granularity import PerBlock, PerRow  # noqa: E402
from torchao.quantization.granularity import PerTensor as AoPerTensor  # noqa: E402


def test_torchao_version_is_the_pinned_one():
    assert torchao.__version__ == "0.18.0"


def _x(shape=(256, 256), seed=0, scale=4.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * scale


def _bits(tensor):
    return tensor.contiguous().view(torch.int32) if tensor.dtype == torch.float32 else tensor


def _same_bits(a, b):
    return torch.equal(_bits(a), _bits(b))


def _bytes(tensor):
    return (
        tensor.contiguous().view(torch.uint8) if tensor.element_size() == 1 else tensor.contiguous()
    )


FLOAT8_RECIPES = [
    breccia.Float8CurrentScaling(),
    breccia.Float8CurrentScaling(fp8_format="E5M2", power_2_scale=True),
    breccia.DelayedScaling(),
    breccia.Float8BlockScaling(),
    breccia.Float8BlockScaling(block_m=128, power_2_scale=False),
    breccia.Float8BlockScaling(fp8_format="E5M2", block_k=32, block_m=2),
]
ROUND_TRIP_RECIPES = [
    *FLOAT8_RECIPES,
    breccia.MXFP8BlockScaling(),
    breccia.MXFP8BlockScaling(fp8_format="E5M2", scale_rounding="rceil"),
    breccia.MXFP6BlockScaling(),
    breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding="rceil"),
    breccia.MXFP4BlockScaling(),
    breccia.INT4Scaling(group_size=64, scale_dtype="bf16"),
    breccia.INT4Scaling(group_size=128, scale_dtype="fp32"),
    breccia.NVFP4BlockScaling(),
    breccia.NVFP4BlockScaling(two_d=True),
]
MX_RECIPES = ROUND_TRIP_RECIPES[6:11]
DEQUANT_RECIPES = FLOAT8_RECIPES + MX_RECIPES


@pytest.mark.parametrize("recipe", DEQUANT_RECIPES, ids=repr)
def test_torchao_dequantize_of_our_tensor_equals_ours(recipe):
    scaled = breccia.cast(_x(), recipe)
    assert _same_bits(to_torchao(scaled).dequantize(torch.float32), breccia.dequantize(scaled))


@pytest.mark.parametrize("recipe", MX_RECIPES, ids=repr)
def test_torchao_dequantize_with_swizzled_scales_equals_ours(recipe):
    scaled = breccia.cast(_x(), recipe)
    theirs = to_torchao(scaled, swizzle_scales=True)
    assert theirs.is_swizzled_scales
    assert _same_bits(theirs.dequantize(torch.float32), breccia.dequantize(scaled))


@pytest.mark.parametrize("recipe", ROUND_TRIP_RECIPES, ids=repr)
def test_round_trip_keeps_bytes_and_buffers(recipe):
    scaled = breccia.cast(_x(), recipe)
    converted = to_torchao(scaled)
    back = from_torchao(converted)
    # torchao does not record delayed scaling: its per-tensor FP8 reads back as current scaling
    expected = (
        breccia.Float8CurrentScaling if isinstance(recipe, breccia.DelayedScaling) else type(recipe)
    )
    assert type(back.recipe) is expected and back.layout == scaled.layout
    assert torch.equal(_bytes(back.data), _bytes(scaled.data))
    assert torch.equal(_bytes(back.scale), _bytes(scaled.scale))
    if scaled.global_scale is not None:
        assert _same_bits(back.global_scale.reshape(()), scaled.global_scale.reshape(()))
    # where the layouts agree the very memory is shared
    assert back.data.data_ptr() == scaled.data.data_ptr()
    assert back.scale.data_ptr() == scaled.scale.data_ptr()
    assert _same_bits(breccia.dequantize(back), breccia.dequantize(scaled))


def test_round_trip_with_the_recipe_given_back():
    recipe = breccia.MXFP8BlockScaling(scale_rounding="rceil")
    scaled = breccia.cast(_x(), recipe)
    assert from_torchao(to_torchao(scaled), recipe=recipe).recipe == recipe


@pytest.mark.parametrize("swizzle", [False, True])
def test_swizzled_scales_round_trip_and_match_torchaos_own_swizzle(swizzle):
    x = _x((192, 320))  # rows not a multiple of 128, scale columns not a multiple of 4
    theirs = MXTensor.to_mx(x, torch.float8_e4m3fn, 32, is_swizzled_scales=swizzle)
    ours = from_torchao(theirs)
    assert _same_bits(breccia.dequantize(ours), theirs.dequantize(torch.float32))
    again = to_torchao(ours, swizzle_scales=swizzle)
    assert torch.equal(_bytes(again.scale).flatten(), _bytes(theirs.scale).flatten())


@pytest.mark.parametrize("power_of_two", [True, False])
def test_nvfp4_dequantize_is_bit_exact(power_of_two):
    x = _x((128, 256))
    if power_of_two:
        x[0, 0] = 2688.0 * 4  # amax 4 * 2688: global_scale exactly 4
    scaled = breccia.cast(x, breccia.NVFP4BlockScaling())
    assert (float(scaled.global_scale) == 4.0) == power_of_two
    for swizzle in (False, True):
        theirs = to_torchao(scaled, swizzle_scales=swizzle)
        assert _same_bits(theirs.dequantize(torch.float32), breccia.dequantize(scaled))


def test_torchaos_nvfp4_tensors_convert_with_their_per_tensor_scale():
    x = _x((128, 128))
    per_tensor = torch.tensor(4.0)  # torchao takes the decode factor amax / 2688 here
    for swizzle in (False, True):
        theirs = NVFP4Tensor.to_nvfp4(x, per_tensor_scale=per_tensor, is_swizzled_scales=swizzle)
        ours = from_torchao(theirs)
        assert ours.global_scale is theirs.per_tensor_scale
        assert _same_bits(breccia.dequantize(ours), theirs.dequantize(torch.float32))
    without = from_torchao(NVFP4Tensor.to_nvfp4(x))
    assert float(without.global_scale) == 1.0


@pytest.mark.parametrize(
    "granularity, recipe, layout",
    [
        (AoPerTensor(), breccia.Float8CurrentScaling(), breccia.PerTensor()),
        (PerRow(), breccia.Float8CurrentScaling(), breccia.PerChannel()),
        (
            PerBlock([1, 128]),
            breccia.Float8BlockScaling(power_2_scale=False),
            breccia.PerBlockK(128),
        ),
        (
            PerBlock([128, 128]),
            breccia.Float8BlockScaling(block_m=128, power_2_scale=False),
            breccia.PerBlockMN(128, 128),
        ),
    ],
)
def test_torchaos_float8_tensors_convert_zero_copy(granularity, recipe, layout):
    theirs = Float8Tensor.from_hp(_x(), granularity=granularity)
    ours = from_torchao(theirs)
    assert ours.recipe == recipe and ours.layout == layout
    assert ours.data.data_ptr() == theirs.qdata.data_ptr()
    assert ours.scale.data_ptr() == theirs.scale.data_ptr()
    assert _same_bits(breccia.dequantize(ours), theirs.dequantize(torch.float32))


@pytest.mark.parametrize(
    "elem", [torch.float8_e4m3fn, torch.float8_e5m2, "fp6_e2m3", "fp6_e3m2", torch.float4_e2m1fn_x2]
)
def test_torchaos_mx_tensors_convert_zero_copy(elem):
    theirs = MXTensor.to_mx(_x(), elem, 32)
    ours = from_torchao(theirs)
    assert ours.recipe.spec["family"] == "mx"
    assert ours.data.data_ptr() == theirs.qdata.data_ptr()
    assert ours.scale.data_ptr() == theirs.scale.data_ptr()
    assert _same_bits(breccia.dequantize(ours), theirs.dequantize(torch.float32))


def test_int4_matches_int4tensors_documented_formula():
    scaled = breccia.cast(_x((64, 256)), breccia.INT4Scaling(group_size=64, scale_dtype="fp32"))
    theirs = to_torchao(scaled)
    assert isinstance(theirs, Int4Tensor) and tuple(theirs.shape) == (64, 256)
    assert tuple(theirs.scale.shape) == (4, 64)  # (K / group, N)
    # x = q * scale + zero_point, q the signed nibbles, low nibble first (mslk's pack_int4)
    packed = theirs.qdata.view(torch.uint8).to(torch.int16)
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(64, 256)
    q = torch.where(nibbles >= 8, nibbles - 16, nibbles).to(torch.float32)
    scale = theirs.scale.t().repeat_interleave(64, dim=1)
    zero = theirs.zero_point.t().repeat_interleave(64, dim=1)
    assert _same_bits(q * scale + zero, breccia.dequantize(scaled))


def test_numpy_scaled_tensors_move_to_torch_first():
    x = np.random.default_rng(0).standard_normal((32, 128)).astype(np.float32)
    scaled = breccia.cast(x, breccia.MXFP8BlockScaling())
    theirs = to_torchao(scaled)
    assert theirs.qdata.data_ptr() == scaled.data.__array_interface__["data"][0]
    assert _same_bits(
        theirs.dequantize(torch.float32), torch.from_numpy(np.asarray(breccia.dequantize(scaled)))
    )
    assert from_dlpack(from_torchao(theirs), "numpy").recipe == scaled.recipe


def test_refusals_say_why():
    x = _x((64, 128))
    unknown = MXTensor.to_mx(x, torch.float8_e4m3fn, 32)
    unknown.elem_dtype = torch.int8
    with pytest.raises(ValueError, match="elem_dtype"):
        from_torchao(unknown)
    with pytest.raises(ValueError, match="signed=True"):
        to_torchao(breccia.cast(x, breccia.INT4Scaling(group_size=64, signed=False)))
    with pytest.raises(ValueError, match="rowwise"):
        to_torchao(breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2))
    with pytest.raises(TypeError, match="torchao Float8Tensor"):
        from_torchao(x)
    scaled = breccia.cast(x, breccia.INT4Scaling(group_size=64))
    asymmetric = to_torchao(scaled)
    asymmetric.zero_point = torch.ones_like(asymmetric.zero_point)
    with pytest.raises(ValueError, match="float offset"):
        from_torchao(asymmetric)
    transposed = MXTensor.to_mx(x, torch.float8_e4m3fn, 32)
    transposed.qdata = transposed.qdata.t().contiguous().t()
    with pytest.raises(ValueError, match="column-major"):
        from_torchao(transposed)
