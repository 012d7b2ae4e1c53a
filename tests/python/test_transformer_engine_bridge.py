"""TransformerEngine bridge. TE cannot be installed here (it builds against CUDA), so these
tests run against tests/python/te_standin.py, which reproduces the attributes of TE's tensor
classes and rejects any buffer whose shape differs from the one TE's quantizers allocate; with
TE importable its own classes are used. Checked: row-wise and column-wise round trips keep
every byte, TE's column-wise buffers hold what TE computes (the row-wise quantization of the
transposed matrix, or MXFP8's 32 x 1 blocks), padded and 128 x 4-swizzled scales against the
swizzle's definition in TE's own tests, batched tensors, and NVFP4's stored amax."""

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
    tensor = tensor.contiguous()
    return tensor.view(torch.uint8) if tensor.element_size() == 1 else tensor


def _same(a, b):
    return tuple(a.shape) == tuple(b.shape) and torch.equal(_u8(a), _u8(b))


def _bits(t):
    return t.contiguous().view(torch.int32)


def _same_st(a, b):
    """Byte-identical ScaledTensors: recipe, layout, data, scales and global_scale."""
    assert a.recipe == b.recipe and a.layout == b.layout
    assert _same(a.data, b.data) and _same(a.scale, b.scale)
    if b.global_scale is not None:
        assert torch.equal(_bits(a.global_scale.reshape(())), _bits(b.global_scale.reshape(())))


def _matrix_t(x):
    """TE's transposed matrix: leading dims flattened into rows, then transposed."""
    return x.reshape(-1, x.shape[-1]).t().contiguous()


MX_SHAPES = [(256, 256), (160, 416), (3, 64, 416)]  # 160 rows: padding; K/32 = 13, K/16 = 26
CASES = (
    [(breccia.Float8CurrentScaling(), s) for s in [(256, 256), (3, 5, 7)]]
    + [(breccia.DelayedScaling(fp8_format="E5M2"), (64, 96))]
    + [(breccia.MXFP8BlockScaling(scale_rounding="rceil"), s) for s in MX_SHAPES]
    + [(breccia.MXFP8BlockScaling(fp8_format="E5M2"), (160, 416))]
    + [(breccia.Float8BlockScaling(), s) for s in [(256, 256), (202, 384), (2, 101, 384)]]
    + [
        (breccia.Float8BlockScaling(block_m=128, power_2_scale=True), s)
        for s in [(256, 256), (202, 384), (2, 128, 384)]
    ]
    + [(breccia.NVFP4BlockScaling(), s) for s in MX_SHAPES]
    + [(breccia.NVFP4BlockScaling(two_d=True), (160, 416))]
)
# Only MXFP8/NVFP4 scales come 128 x 4-swizzled (blockwise FP8 has no swizzled form).
SWIZZLED = [
    (r, s, swizzle)
    for r, s in CASES
    for swizzle in (False, True)
    if not swizzle or not isinstance(r, breccia.Float8BlockScaling)
]
IDS = [f"{r!r}-{s}-{'swizzled' if w else 'padded'}" for r, s, w in SWIZZLED]


def _needs_columnwise_cast(recipe):
    return isinstance(recipe, (breccia.MXFP8BlockScaling, breccia.NVFP4BlockScaling)) or (
        isinstance(recipe, breccia.Float8BlockScaling) and recipe.block_m == 1
    )


@pytest.mark.parametrize("recipe,shape,swizzle", SWIZZLED, ids=IDS)
def test_rowwise_round_trip_keeps_every_byte(recipe, shape, swizzle):
    scaled = breccia.cast(_x(shape), recipe)
    te_t = to_transformer_engine(scaled, classes=CLASSES, swizzle_scales=swizzle)
    back = from_transformer_engine(te_t, recipe=recipe)
    _same_st(back, scaled)
    assert back.data.data_ptr() == scaled.data.data_ptr()  # data is shared
    assert torch.equal(_bits(breccia.dequantize(back)), _bits(breccia.dequantize(scaled)))


@pytest.mark.parametrize("recipe,shape,swizzle", SWIZZLED, ids=IDS)
def test_columnwise_buffers_are_what_te_computes(recipe, shape, swizzle):
    if isinstance(recipe, breccia.Float8BlockScaling) and recipe.block_m == 1 and shape[-2] % 128:
        pytest.skip("breccia's 128 x 1 column-wise cast needs whole blocks along dim -2")
    x = _x(shape)
    row = breccia.cast(x, recipe)
    col = breccia.cast(x, recipe, axis=-2) if _needs_columnwise_cast(recipe) else None
    te_t = to_transformer_engine(
        row, columnwise=col, usage="both", classes=CLASSES, swizzle_scales=swizzle
    )
    _same_st(from_transformer_engine(te_t, recipe=recipe), row)
    back = from_transformer_engine(te_t, recipe=recipe, usage="columnwise")
    if isinstance(recipe, breccia.MXFP8BlockScaling):  # not transposed: 32 x 1 blocks
        _same_st(back, col)
        assert back.data.data_ptr() == col.data.data_ptr()
        return
    # Transposed usages hold the row-wise quantization of the transposed 2-D matrix.
    assert torch.equal(
        _bits(breccia.dequantize(back).reshape(shape[-1], -1)),
        _bits(_matrix_t(breccia.dequantize(row if col is None else col))),
    )
    if isinstance(recipe, (breccia.Float8CurrentScaling, breccia.DelayedScaling)):
        assert _same(back.data.reshape(shape[-1], -1), _matrix_t(_u8(row.data)))
    elif not (isinstance(recipe, breccia.Float8BlockScaling) and shape[-2] % 128):
        # (breccia's 128 x 128 cast needs whole blocks along the transposed K)
        _same_st(back, breccia.cast(_matrix_t(x), recipe))


@pytest.mark.parametrize(
    "recipe",
    [breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling(), breccia.Float8BlockScaling()],
    ids=repr,
)
def test_columnwise_only_from_a_columnwise_cast(recipe):
    x = _x((2, 128, 384))
    col = breccia.cast(x, recipe, axis=-2)
    te_t = to_transformer_engine(col, classes=CLASSES)
    assert te_t._rowwise_data is None and te_t._columnwise_data is not None
    back = from_transformer_engine(te_t, recipe, usage="columnwise")
    expected = (
        col if isinstance(recipe, breccia.MXFP8BlockScaling) else breccia.cast(_matrix_t(x), recipe)
    )
    _same_st(back, expected)


def test_buffer_shapes_are_tes():
    """Shapes written out from quantizer.cpp's get_scale_shape / create_tensor."""
    x = _x((160, 416))
    mx = to_transformer_engine(
        breccia.cast(x, breccia.MXFP8BlockScaling()),
        columnwise=breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2),
        classes=CLASSES,
    )
    assert tuple(mx._rowwise_scale_inv.shape) == (256, 16)
    assert tuple(mx._columnwise_data.shape) == (160, 416)
    assert tuple(mx._columnwise_scale_inv.shape) == (8, 512)
    nv = to_transformer_engine(
        breccia.cast(x, breccia.NVFP4BlockScaling()),
        columnwise=breccia.cast(x, breccia.NVFP4BlockScaling(), axis=-2),
        classes=CLASSES,
    )
    assert tuple(nv._rowwise_data.shape) == (160, 208)
    assert tuple(nv._rowwise_scale_inv.shape) == (256, 28)
    assert tuple(nv._columnwise_data.shape) == (416, 80)
    assert tuple(nv._columnwise_scale_inv.shape) == (512, 12)
    assert tuple(nv._amax_columnwise.shape) == (1,)
    y = _x((2, 101, 384))
    one_d = to_transformer_engine(breccia.cast(y, breccia.Float8BlockScaling()), classes=CLASSES)
    assert tuple(one_d._rowwise_scale_inv.shape) == (3, 204)  # transposed, rows rounded up to 4
    two_d = to_transformer_engine(
        breccia.cast(_x((202, 384)), breccia.Float8BlockScaling(block_m=128)),
        usage="both",
        classes=CLASSES,
    )
    assert tuple(two_d._rowwise_scale_inv.shape) == (2, 4)
    assert tuple(two_d._columnwise_data.shape) == (384, 202)
    assert tuple(two_d._columnwise_scale_inv.shape) == (3, 4)
    fp8 = to_transformer_engine(
        breccia.cast(_x((3, 5, 7)), breccia.Float8CurrentScaling()), usage="both", classes=CLASSES
    )
    assert tuple(fp8._scale_inv.shape) == (1,) and tuple(fp8._transpose.shape) == (7, 3, 5)
    nv3 = to_transformer_engine(
        breccia.cast(_x((3, 64, 416)), breccia.NVFP4BlockScaling(), axis=-2), classes=CLASSES
    )
    assert tuple(nv3._columnwise_data.shape) == (416, 96)  # always 2-D


def _te_reference_swizzle(compact, row_scaling):
    """compute_ref_swizzle of TE's tests/cpp/operator/test_swizzle.cu: `compact` is the padded
    (M, K) matrix for row scaling, the padded (K, M) one (M contiguous) for column scaling."""
    if not row_scaling:
        compact = compact.T
    m_size, k_size = compact.shape
    out = np.zeros(m_size * k_size, np.uint8)
    for m in range(m_size):
        for k in range(k_size):
            tile = (m // 128) * 128 * k_size + (k // 4) * 512
            m_in = m % 128
            out[tile + (m_in % 32) * 16 + (m_in // 32) * 4 + k % 4] = compact[m, k]
    return out


@pytest.mark.parametrize(
    "recipe", [breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling()], ids=repr
)
def test_swizzle_matches_tes_reference(recipe):
    x = _x((160, 416))
    row, col = breccia.cast(x, recipe), breccia.cast(x, recipe, axis=-2)
    plain = to_transformer_engine(row, columnwise=col, classes=CLASSES)
    swizzled = to_transformer_engine(row, columnwise=col, classes=CLASSES, swizzle_scales=True)
    assert swizzled._with_gemm_swizzled_scales and not plain._with_gemm_swizzled_scales
    for name, row_scaling in (
        ("_rowwise_scale_inv", True),
        ("_columnwise_scale_inv", not isinstance(recipe, breccia.MXFP8BlockScaling)),
    ):
        padded = getattr(plain, name).view(torch.uint8).numpy()
        got = getattr(swizzled, name)
        assert got.shape == padded.shape
        assert np.array_equal(
            got.view(torch.uint8).numpy().ravel(), _te_reference_swizzle(padded, row_scaling)
        )


def test_compact_blockwise_format_of_te_2_9_to_2_11():
    x = _x((2, 128, 384))
    row = breccia.cast(x, breccia.Float8BlockScaling())
    col = breccia.cast(x, breccia.Float8BlockScaling(), axis=-2)
    te_t = CLASSES.Float8BlockwiseQTensor(
        shape=x.shape,
        dtype=torch.float32,
        rowwise_data=_u8(row.data),
        rowwise_scale_inv=row.scale.reshape(256, 3),
        columnwise_data=_u8(col.data),
        columnwise_scale_inv=col.scale.reshape(2, 384),
        fp8_dtype=CLASSES.DType.kFloat8E4M3,
        data_format=CLASSES.Float8BlockScaleTensorFormat.COMPACT,
    )
    _same_st(from_transformer_engine(te_t), row)
    _same_st(from_transformer_engine(te_t, usage="columnwise"), col)


def test_swizzled_columnwise_mxfp8_reads_back():
    x = _x((3, 64, 256))
    col = breccia.cast(x, breccia.MXFP8BlockScaling(), axis=-2)
    te_t = to_transformer_engine(col, classes=CLASSES, swizzle_scales=True)
    _same_st(from_transformer_engine(te_t, breccia.MXFP8BlockScaling(), usage="columnwise"), col)


def test_columnwise_blocks_spanning_batch_entries_read_as_the_flat_matrix():
    """TE's 32 x 1 blocks run down the flattened rows; with dim -2 = 48 a block spans two
    batch entries, which only the flattened 2-D matrix can hold."""
    x = _x((2, 48, 64))
    flat = breccia.cast(x.reshape(96, 64), breccia.MXFP8BlockScaling(), axis=-2)
    te_t = to_transformer_engine(flat, classes=CLASSES)
    te_t.shape = (2, 48, 64)
    te_t._columnwise_data = te_t._columnwise_data.reshape(2, 48, 64)
    _same_st(from_transformer_engine(te_t, breccia.MXFP8BlockScaling(), usage="columnwise"), flat)


def test_nvfp4_amax_maps_back_to_the_global_scale_exactly():
    for seed in range(5):
        x = _x((64, 64), seed)
        scaled = breccia.cast(x, breccia.NVFP4BlockScaling())
        te_t = to_transformer_engine(
            scaled,
            columnwise=breccia.cast(x, breccia.NVFP4BlockScaling(), axis=-2),
            classes=CLASSES,
        )
        for amax in (te_t._amax_rowwise.numpy(), te_t._amax_columnwise.numpy()):
            assert amax.shape == (1,)
            assert np.float32(amax[0]) / np.float32(2688) == scaled.global_scale.numpy()


class _RHTQuantizer:
    with_rht = True


def test_refusals_say_why():
    x = _x((64, 128))
    mx = breccia.MXFP8BlockScaling()
    with pytest.raises(ValueError, match="no tensor for INT4Scaling"):
        to_transformer_engine(breccia.cast(x, breccia.INT4Scaling(group_size=32)), classes=CLASSES)
    with pytest.raises(ValueError, match="high-precision input"):
        to_transformer_engine(breccia.cast(x, mx), usage="both", classes=CLASSES)
    with pytest.raises(ValueError, match="high-precision input"):
        to_transformer_engine(breccia.cast(x, mx, axis=-2), usage="both", classes=CLASSES)
    with pytest.raises(ValueError, match="same recipe"):
        e5m2 = breccia.MXFP8BlockScaling("E5M2")
        to_transformer_engine(
            breccia.cast(x, mx), classes=CLASSES, columnwise=breccia.cast(x, e5m2, axis=-2)
        )
    with pytest.raises(ValueError, match="multiples of 32"):
        to_transformer_engine(breccia.cast(_x((40, 64)), mx), classes=CLASSES)
    with pytest.raises(ValueError, match="multiple of 128"):
        to_transformer_engine(
            breccia.cast(_x((2, 100, 128)), breccia.Float8BlockScaling(block_m=128)),
            classes=CLASSES,
        )
    with pytest.raises(ValueError, match="without a 128 x 4 swizzle"):
        to_transformer_engine(
            breccia.cast(x, breccia.Float8BlockScaling()), classes=CLASSES, swizzle_scales=True
        )
    with pytest.raises(TypeError, match="TransformerEngine Float8Tensor"):
        from_transformer_engine(x)
    te_t = to_transformer_engine(breccia.cast(x, mx), classes=CLASSES)
    with pytest.raises(ValueError, match="no such usage"):
        from_transformer_engine(te_t, usage="columnwise")
    with pytest.raises(ValueError, match="usage must be"):
        from_transformer_engine(te_t, usage="both")
    te_t._rowwise_scale_inv = te_t._rowwise_scale_inv[:64]
    with pytest.raises(ValueError, match="padded shape"):
        from_transformer_engine(te_t)
    nv = breccia.NVFP4BlockScaling()
    te_t = to_transformer_engine(breccia.cast(x, nv, axis=-2), classes=CLASSES)
    te_t._quantizer = _RHTQuantizer()
    with pytest.raises(ValueError, match="Hadamard"):
        from_transformer_engine(te_t, usage="columnwise")


def test_packed_fp4_transpose_moves_every_nibble():
    """The C++ transpose of packed E2M1 codes (low nibble first) against unpacked NumPy."""
    from breccia import _backends, _core

    packed = np.random.default_rng(3).integers(0, 256, size=(2, 6, 5), dtype=np.uint8)
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(12, 10)  # (rows, K)
    out = _backends.to_numpy(_core.te_transpose(_backends.to_core(packed, "data"), True))
    expected = codes.T.reshape(10, 6, 2)
    assert np.array_equal(out, expected[..., 0] | (expected[..., 1] << 4))
    with pytest.raises(ValueError, match="even"):
        _core.te_transpose(_backends.to_core(packed[:1, :3], "data"), True)
