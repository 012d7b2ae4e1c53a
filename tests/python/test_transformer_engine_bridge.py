"""TransformerEngine bridge. TE cannot be installed here (it builds against CUDA), so these
tests run against tests/python/te_standin.py, which reproduces the attributes and buffer shapes
of TE's tensor classes; with TE importable its own classes are used. Checked: round trips keep
every byte, TE's padded scale shapes, the 128 x 4 swizzle against its definition, transposed
column-wise data, and NVFP4's stored amax."""

from __future__ import annotations

import numpy as np
import pytest

import breccia
from breccia.bridges import from_transformer_engine, to_transformer_engine

torch = pytest.importorskip("torch")

try:  # the real classes when TransformerEngine is importable
    import transformer_engine.pytorch  # noqa: F401

    CLASSES = None
except ImportError:
    import te_standin as CLASSES


def _x(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3


def _u8(tensor):
    return tensor.contiguous().view(torch.uint8) if tensor.element_size() == 1 else tensor.contiguous()


def _same(a, b):
    return torch.equal(_u8(a), _u8(b))


def _bits(t):
    return t.contiguous().view(torch.int32)


RECIPES = [
    breccia.Float8CurrentScaling(),
    breccia.DelayedScaling(fp8_format="E5M2"),
    breccia.MXFP8BlockScaling(scale_rounding="rceil"),
    breccia.MXFP8BlockScaling(fp8_format="E5M2"),
    breccia.Float8BlockScaling(),
    breccia.Float8BlockScaling(block_m=128, power_2_scale=True),
    breccia.NVFP4BlockScaling(),
]
SHAPES = [(256, 256), (200, 384)]  # the second pads rows (to 128 / 4) and scale columns


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("swizzle", [False, True])
def test_round_trip_keeps_every_byte(recipe, shape, swizzle):
    scaled = breccia.cast(_x(shape), recipe)
    te_t = to_transformer_engine(scaled, classes=CLASSES, swizzle_scales=swizzle)
    back = from_transformer_engine(te_t, recipe=recipe)
    assert back.recipe == recipe and back.layout == scaled.layout
    assert _same(back.data, scaled.data) and _same(back.scale, scaled.scale)
    assert back.data.data_ptr() == scaled.data.data_ptr()  # data is shared
    if scaled.global_scale is not None:
        assert torch.equal(_bits(back.global_scale.reshape(())), _bits(scaled.global_scale.reshape(())))
    assert torch.equal(_bits(breccia.dequantize(back)), _bits(breccia.dequantize(scaled)))


def test_padded_scale_shapes_are_tes():
    m, k = 200, 384
    x = _x((m, k))
    mx = to_transformer_engine(breccia.cast(x, breccia.MXFP8BlockScaling()), classes=CLASSES)
    assert tuple(mx._rowwise_scale_inv.shape) == (256, 12)
    nv = to_transformer_engine(breccia.cast(x, breccia.NVFP4BlockScaling()), classes=CLASSES)
    assert tuple(nv._rowwise_scale_inv.shape) == (256, 24)
    assert tuple(nv._rowwise_data.shape) == (m, k // 2)
    one_d = to_transformer_engine(breccia.cast(x, breccia.Float8BlockScaling()), classes=CLASSES)
    assert tuple(one_d._rowwise_scale_inv.shape) == (3, 200)  # transposed, M rounded up to 4
    two_d = to_transformer_engine(breccia.cast(x, breccia.Float8BlockScaling(block_m=128)),
                                  classes=CLASSES)
    assert tuple(two_d._rowwise_scale_inv.shape) == (2, 4)
    fp8 = to_transformer_engine(breccia.cast(x, breccia.Float8CurrentScaling()), classes=CLASSES)
    assert tuple(fp8._scale_inv.shape) == (1,) and fp8._transpose is None


def test_swizzle_follows_the_tile_formula():
    scaled = breccia.cast(_x((256, 256)), breccia.MXFP8BlockScaling())
    compact = scaled.scale.view(torch.uint8)  # (256, 8)
    swizzled = to_transformer_engine(scaled, classes=CLASSES, swizzle_scales=True)._rowwise_scale_inv
    flat = swizzled.view(torch.uint8).flatten()
    tiles_per_row = 8 // 4
    for r in range(256):
        for c in range(8):
            tile = (r // 128) * tiles_per_row + c // 4
            inner = (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
            assert flat[tile * 512 + inner] == compact[r, c]


def test_nvfp4_amax_maps_back_to_the_global_scale_exactly():
    for seed in range(5):
        scaled = breccia.cast(_x((64, 64), seed), breccia.NVFP4BlockScaling())
        te_t = to_transformer_engine(scaled, classes=CLASSES)
        amax = te_t._amax_rowwise.numpy()
        assert amax.shape == (1,)
        assert np.float32(amax[0]) / np.float32(2688) == scaled.global_scale.numpy()


def _padded(matrix, rows, cols):
    out = torch.zeros((rows, cols), dtype=matrix.dtype)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out


def _r(v, m):
    return -(-v // m) * m


def test_columnwise_mxfp8_is_not_transposed():
    m, k = 256, 160
    x = _x((m, k))
    col = breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2)  # 32 x 1 blocks, (m/32, k) scales
    te_t = CLASSES.MXFP8Tensor(
        shape=(m, k), dtype=torch.float32, rowwise_data=None, rowwise_scale_inv=None,
        columnwise_data=col.data.view(torch.uint8),
        columnwise_scale_inv=_padded(col.scale.view(torch.uint8), _r(m // 32, 4), _r(k, 128)),
        fp8_dtype=CLASSES.DType.kFloat8E4M3)
    back = from_transformer_engine(te_t, breccia.MXFP8BlockScaling(), usage="columnwise")
    assert back.layout == breccia.PerBlockMN(32, 1)
    assert _same(back.data, col.data) and _same(back.scale, col.scale)


@pytest.mark.parametrize("two_d", [False, True])
def test_columnwise_blockwise_fp8_is_the_transposed_matrix(two_d):
    m, k = 256, 384
    x = _x((m, k))
    recipe = breccia.Float8BlockScaling(block_m=128 if two_d else 1)
    transposed = breccia.cast(x.t().contiguous(), recipe)  # TE's column-wise = rowwise of X^T
    scale = transposed.scale
    stored = _padded(scale, scale.shape[0], _r(scale.shape[1], 4)) if two_d else \
        _padded(scale.t(), scale.shape[1], _r(k, 4))
    te_t = CLASSES.Float8BlockwiseQTensor(
        shape=(m, k), dtype=torch.float32, rowwise_data=None, rowwise_scale_inv=None,
        columnwise_data=transposed.data.view(torch.uint8), columnwise_scale_inv=stored,
        fp8_dtype=CLASSES.DType.kFloat8E4M3, is_2D_scaled=two_d)
    back = from_transformer_engine(te_t, usage="columnwise")
    assert back.shape == (k, m)
    assert _same(back.data, transposed.data) and _same(back.scale, transposed.scale)
    assert torch.equal(_bits(breccia.dequantize(back)), _bits(breccia.dequantize(transposed)))


def test_columnwise_nvfp4_is_the_transposed_matrix_with_its_own_amax():
    m, k = 128, 256
    x = _x((m, k))
    transposed = breccia.cast(x.t().contiguous(), breccia.NVFP4BlockScaling())
    row = to_transformer_engine(transposed, classes=CLASSES, swizzle_scales=True)
    te_t = CLASSES.NVFP4Tensor(
        shape=(m, k), dtype=torch.float32, rowwise_data=None, rowwise_scale_inv=None,
        columnwise_data=row._rowwise_data, columnwise_scale_inv=row._rowwise_scale_inv,
        amax_rowwise=None, amax_columnwise=row._amax_rowwise,
        fp4_dtype=CLASSES.DType.kFloat4E2M1, with_gemm_swizzled_scales=True)
    back = from_transformer_engine(te_t, usage="columnwise")
    assert back.shape == (k, m // 2)
    assert _same(back.data, transposed.data) and _same(back.scale, transposed.scale)
    assert torch.equal(_bits(back.global_scale.reshape(())), _bits(transposed.global_scale.reshape(())))


def test_float8_transpose_buffer_reads_as_the_transposed_matrix():
    x = _x((64, 128))
    rowwise = breccia.cast(x, breccia.Float8CurrentScaling())
    transposed = breccia.cast(x.t().contiguous(), breccia.Float8CurrentScaling())
    te_t = CLASSES.Float8Tensor(shape=(64, 128), dtype=torch.float32,
                                data=rowwise.data.view(torch.uint8),
                                fp8_scale_inv=rowwise.scale.reshape(1),
                                fp8_dtype=CLASSES.DType.kFloat8E4M3,
                                data_transpose=transposed.data.view(torch.uint8))
    back = from_transformer_engine(te_t, usage="columnwise")
    assert back.shape == (128, 64) and _same(back.data, transposed.data)


def test_refusals_say_why():
    x = _x((64, 128))
    with pytest.raises(ValueError, match="no tensor for INT4Scaling"):
        to_transformer_engine(breccia.cast(x, breccia.INT4Scaling(group_size=32)), classes=CLASSES)
    with pytest.raises(ValueError, match="row-wise MXFP8"):
        to_transformer_engine(breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2), classes=CLASSES)
    with pytest.raises(TypeError, match="TransformerEngine Float8Tensor"):
        from_transformer_engine(x)
    te_t = to_transformer_engine(breccia.cast(x, breccia.MXFP8BlockScaling()), classes=CLASSES)
    with pytest.raises(ValueError, match="no such usage"):
        from_transformer_engine(te_t, usage="columnwise")
    with pytest.raises(ValueError, match="usage must be"):
        from_transformer_engine(te_t, usage="both")
    te_t._rowwise_scale_inv = te_t._rowwise_scale_inv[:64]
    with pytest.raises(ValueError, match="padded shape"):
        from_transformer_engine(te_t)
