"""breccia.bridges.save_safetensors / load_safetensors against the `safetensors` package:
breccia's files open there with the right dtypes and values, its files load here, and every
recipe round-trips byte for byte."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import breccia
from breccia.bridges import load_safetensors, save_safetensors

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402

RECIPES = [
    (breccia.DelayedScaling(), -1),
    (breccia.Float8CurrentScaling(fp8_format="E5M2"), -1),
    (breccia.Float8BlockScaling(), -1),
    (breccia.Float8BlockScaling(block_m=128, power_2_scale=False), -1),
    (breccia.MXFP8BlockScaling(), -1),
    (breccia.MXFP8BlockScaling(), -2),
    (breccia.MXFP6BlockScaling(), -1),
    (breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding="rceil"), -2),
    (breccia.MXFP4BlockScaling(), -1),
    (breccia.MXFP4BlockScaling(scale_rounding="rceil"), -2),
    (breccia.NVFP4BlockScaling(), -1),
    (breccia.NVFP4BlockScaling(), -2),
    (breccia.INT4Scaling(), -1),
    (breccia.INT4Scaling(group_size=32, signed=False, scale_dtype="bf16"), -1),
]


def _bytes(array) -> bytes:
    if hasattr(array, "numpy"):  # torch
        import torch

        return array.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return np.ascontiguousarray(array).tobytes()


def _cast_all(rng) -> dict:
    tensors = {}
    for i, (recipe, axis) in enumerate(RECIPES):
        x = rng.standard_normal((256, 256)).astype(np.float32)
        tensors[f"layer{i}.weight"] = breccia.cast(x, recipe, axis)
    tensors["norm.weight"] = rng.standard_normal(256).astype(np.float32)
    return tensors


def _assert_same(a: breccia.ScaledTensor, b: breccia.ScaledTensor) -> None:
    assert a.recipe == b.recipe and a.layout == b.layout
    assert a.logical_shape == b.logical_shape
    for field in ("data", "scale", "global_scale", "zero_point"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert tuple(x.shape) == tuple(y.shape), field
            assert _bytes(x) == _bytes(y), field


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_every_recipe_round_trips_byte_for_byte(tmp_path, framework):
    if framework == "torch":
        pytest.importorskip("torch")
    tensors = _cast_all(np.random.default_rng(0))
    save_safetensors(tensors, tmp_path / "m.safetensors", {"origin": "test"})
    loaded, metadata = load_safetensors(
        tmp_path / "m.safetensors", framework=framework, return_metadata=True
    )
    assert metadata == {"format": "pt", "origin": "test"}
    assert loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        if isinstance(value, breccia.ScaledTensor):
            assert loaded[name].backend == framework
            _assert_same(loaded[name], value)
            # dequantize agrees too: the loaded tensor is the same tensor.
            assert _bytes(breccia.dequantize(loaded[name])) == _bytes(breccia.dequantize(value))
        else:
            assert _bytes(loaded[name]) == value.tobytes()
    save_safetensors(loaded, tmp_path / "again.safetensors", {"origin": "test"})
    assert (tmp_path / "again.safetensors").read_bytes() == (
        tmp_path / "m.safetensors"
    ).read_bytes()


def test_breccia_files_open_in_safetensors_with_torch_dtypes(tmp_path):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    fp8 = breccia.cast(x, breccia.Float8CurrentScaling())
    mx = breccia.cast(x, breccia.MXFP8BlockScaling())
    nv = breccia.cast(x, breccia.NVFP4BlockScaling())
    save_safetensors({"fp8": fp8, "mx": mx, "nv": nv, "x": x}, tmp_path / "m.safetensors")
    expected = {
        "fp8": (torch.float8_e4m3fn, fp8.data),
        "fp8.scale": (torch.float32, fp8.scale),
        "mx": (torch.float8_e4m3fn, mx.data),
        "mx.scale": (torch.float8_e8m0fnu, mx.scale),
        "nv": (torch.float4_e2m1fn_x2, nv.data),
        "nv.scale": (torch.float8_e4m3fn, nv.scale),
        "nv.global_scale": (torch.float32, nv.global_scale),
        "x": (torch.float32, x),
    }
    with safe_open(tmp_path / "m.safetensors", framework="pt") as f:
        assert set(f.keys()) == set(expected)
        for name, (dtype, source) in expected.items():
            tensor = f.get_tensor(name)
            assert tensor.dtype == dtype, name
            assert tuple(tensor.shape) == tuple(source.shape), name
            assert _bytes(tensor) == _bytes(source), name
        # Values, not only bytes: torch's own decode of the FP8 data times the scale.
        values = f.get_tensor("fp8").float() * f.get_tensor("fp8.scale")
        np.testing.assert_array_equal(values.numpy(), breccia.dequantize(fp8))


def test_breccia_files_open_in_safetensors_numpy_where_numpy_has_the_dtypes(tmp_path):
    # safetensors' numpy framework has no float8/bfloat16 (it looks them up on numpy itself), so
    # this checks a file whose every dtype numpy spells: INT4 (U8 data, F16 scale, U8 zero point).
    x = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    int4 = breccia.cast(x, breccia.INT4Scaling(group_size=32, signed=False))
    plain = {"i32": np.arange(6, dtype=np.int32).reshape(2, 3), "f16": x.astype(np.float16)}
    save_safetensors({"w": int4, **plain}, tmp_path / "m.safetensors")
    with safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        for name, source in {
            "w": int4.data,
            "w.scale": int4.scale,
            "w.zero_point": int4.zero_point,
            **plain,
        }.items():
            value = f.get_tensor(name)
            assert value.dtype == source.dtype, name
            np.testing.assert_array_equal(value, source)


def test_files_written_by_safetensors_load_as_plain_arrays(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(3)
    tensors = {
        "e4m3": torch.randn(4, 8, generator=gen).to(torch.float8_e4m3fn),
        "e5m2": torch.randn(4, 8, generator=gen).to(torch.float8_e5m2),
        "e8m0": torch.rand(4, 8, generator=gen).to(torch.float8_e8m0fnu),
        "bf16": torch.randn(3, generator=gen).to(torch.bfloat16),
        "f32": torch.randn(2, 2, generator=gen),
        "i64": torch.arange(5),
    }
    save_file(tensors, tmp_path / "t.safetensors")
    loaded = load_safetensors(tmp_path / "t.safetensors")
    names = {
        "e4m3": "float8_e4m3fn",
        "e5m2": "float8_e5m2",
        "e8m0": "float8_e8m0fnu",
        "bf16": "bfloat16",
        "f32": "float32",
        "i64": "int64",
    }
    for name, dtype in names.items():
        assert loaded[name].dtype == np.dtype(getattr(ml_dtypes, dtype, dtype)), name
        assert _bytes(loaded[name]) == _bytes(tensors[name]), name
    as_torch = load_safetensors(tmp_path / "t.safetensors", framework="torch")
    for name, tensor in tensors.items():
        assert as_torch[name].dtype == tensor.dtype
        assert torch.equal(
            as_torch[name].view(torch.uint8) if tensor.element_size() == 1 else as_torch[name],
            tensor.view(torch.uint8) if tensor.element_size() == 1 else tensor,
        )


def test_saves_torch_tensors_and_torch_scaled_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    st = breccia.cast(x, breccia.MXFP8BlockScaling())
    save_safetensors({"w": st, "b": x[:, :8]}, tmp_path / "t.safetensors")  # strided b
    loaded = load_safetensors(tmp_path / "t.safetensors", framework="torch")
    _assert_same(loaded["w"], st)
    assert torch.equal(loaded["b"], x[:, :8])


def test_lying_metadata_is_a_value_error(tmp_path):
    from safetensors.numpy import save_file

    record = (
        '{"w": {"recipe": {"recipe": "MXFP8BlockScaling"}, '
        '"layout": {"layout": "PerBlockMN", "block_m": 1, "block_n": 32}}}'
    )
    save_file(
        {"w": np.zeros((4, 64), np.uint8), "w.scale": np.zeros((4, 1), np.float32)},
        tmp_path / "lie.safetensors",
        metadata={"breccia": record},
    )
    with pytest.raises(ValueError, match="MXFP8BlockScaling"):
        load_safetensors(tmp_path / "lie.safetensors")
    save_file(
        {"w": np.zeros((4, 64), np.uint8)},
        tmp_path / "missing.safetensors",
        metadata={"breccia": record.replace('"w"', '"v"')},
    )
    with pytest.raises(ValueError, match="'v'"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_rejects_bad_arguments_without_writing(tmp_path):
    st = breccia.cast(np.ones((4, 32), np.float32), breccia.Float8CurrentScaling())
    target = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="convention"):
        save_safetensors({"w": st}, target, convention="gguf")
    with pytest.raises(TypeError, match="extra_metadata"):
        save_safetensors({"w": st}, target, {"n": 1})
    with pytest.raises(ValueError, match="reserved"):
        save_safetensors({"w": st}, target, {"breccia": "{}"})
    with pytest.raises(TypeError, match="tensors"):
        save_safetensors({"w": [1, 2]}, target)
    with pytest.raises(ValueError, match=r"w\.scale"):
        save_safetensors({"w": st, "w.scale": np.ones(1, np.float32)}, target)
    assert not target.exists()
    with pytest.raises(OSError):
        load_safetensors(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="framework"):
        load_safetensors(target, framework="jax")


def test_fp6_is_bit_packed_in_the_file_and_its_header_reads_with_safetensors(tmp_path):
    x = np.random.default_rng(1).standard_normal((32, 64)).astype(np.float32)
    scaled = breccia.cast(x, breccia.MXFP6BlockScaling())
    save_safetensors({"w": scaled}, tmp_path / "f6.safetensors")
    with safe_open(tmp_path / "f6.safetensors", "np") as f:
        assert f.get_slice("w").get_dtype() == "F6_E2M3"
        assert f.get_slice("w").get_shape() == [32, 64]
    # four codes in three bytes: the file's data region holds 32 * 64 * 6 / 8 bytes for w
    header_length = int.from_bytes((tmp_path / "f6.safetensors").read_bytes()[:8], "little")
    import json

    header = json.loads((tmp_path / "f6.safetensors").read_bytes()[8 : 8 + header_length])
    begin, end = header["w"]["data_offsets"]
    assert end - begin == 32 * 64 * 6 // 8
    loaded = load_safetensors(tmp_path / "f6.safetensors")["w"]
    _assert_same(loaded, scaled)


def test_save_shows_a_progress_bar_when_asked_and_none_by_default_off_a_terminal(tmp_path, capsys):
    path = tmp_path / "big.safetensors"
    save_safetensors({"w": np.zeros(1 << 22, np.float32)}, path, progress=True)
    shown = capsys.readouterr().err
    assert "big.safetensors" in shown and "100%" in shown
    save_safetensors({"w": np.zeros(1 << 22, np.float32)}, tmp_path / "quiet.safetensors")
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal
    with pytest.raises(TypeError, match="progress must be None, True or False"):
        save_safetensors({"w": np.zeros(4, np.float32)}, path, progress="yes")
