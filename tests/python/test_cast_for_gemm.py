"""breccia.cast_for_gemm: each part is the cast of its axis, in the input's framework, and the
swizzled scales follow the 128 x 4 tile formula (checked entry by entry here)."""

from __future__ import annotations

import numpy as np
import pytest

import breccia


def _x(shape=(160, 416), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3


def _swizzled_reference(compact: np.ndarray) -> np.ndarray:
    """The padded, swizzled form of one scale matrix, by the tile formula."""
    rows, cols = compact.shape
    padded_rows, padded_cols = -(-rows // 128) * 128, -(-cols // 4) * 4
    out = np.zeros(padded_rows * padded_cols, np.uint8)
    for r in range(rows):
        for c in range(cols):
            tile = (r // 128) * (padded_cols // 4) + c // 4
            out[tile * 512 + (r % 32) * 16 + (r % 128 // 32) * 4 + c % 4] = compact[r, c]
    return out.reshape(padded_rows, padded_cols)


def _bytes(array) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array)).view(np.uint8)


@pytest.mark.parametrize(
    "recipe",
    [breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling(), breccia.INT4Scaling(group_size=32)],
    ids=repr,
)
def test_parts_are_the_casts_of_each_axis(recipe):
    x = _x()
    out = breccia.cast_for_gemm(x, recipe)
    for part, axis in ((out.rowwise, -1), (out.columnwise, -2)):
        want = breccia.cast(x, recipe, axis=axis)
        assert part.layout == want.layout
        np.testing.assert_array_equal(_bytes(part.data), _bytes(want.data))
        np.testing.assert_array_equal(_bytes(part.scale), _bytes(want.scale))
    assert out.rowwise_swizzled_scale is None and out.columnwise_swizzled_scale is None
    only = breccia.cast_for_gemm(x, recipe, rowwise=False)
    assert only.rowwise is None and only.columnwise is not None


@pytest.mark.parametrize(
    "recipe", [breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling()], ids=repr
)
def test_swizzled_scales_follow_the_tile_formula(recipe):
    out = breccia.cast_for_gemm(_x(), recipe, swizzled_scales=True)
    row_scale = _bytes(out.rowwise.scale)
    column_scale = _bytes(out.columnwise.scale)
    np.testing.assert_array_equal(out.rowwise_swizzled_scale, _swizzled_reference(row_scale))
    np.testing.assert_array_equal(
        out.columnwise_swizzled_scale, _swizzled_reference(column_scale.T)
    )


def test_torch_input_gives_torch_parts():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(_x())
    out = breccia.cast_for_gemm(x, breccia.MXFP8BlockScaling(), swizzled_scales=True)
    assert isinstance(out.rowwise.data, torch.Tensor)
    assert isinstance(out.columnwise_swizzled_scale, torch.Tensor)


def test_refusals():
    with pytest.raises(ValueError, match="rowwise, columnwise or both"):
        breccia.cast_for_gemm(_x(), breccia.MXFP8BlockScaling(), rowwise=False, columnwise=False)
    with pytest.raises(ValueError, match="swizzled_scales"):
        breccia.cast_for_gemm(_x(), breccia.Float8BlockScaling(), swizzled_scales=True)
    with pytest.raises(TypeError, match="rowwise must be a bool"):
        breccia.cast_for_gemm(_x(), breccia.MXFP8BlockScaling(), rowwise=1)
