"""Checkpoints as people publish them, built here with the `safetensors` package and PyTorch:
DeepSeek-V3 FP8, compressed-tensors (NVFP4, FP8, INT4 pack-quantized), ModelOpt NVFP4 and
OpenAI gpt-oss MXFP4. Each
loads into breccia as ScaledTensors that dequantize to the convention's own formula, and
writing it back in its convention reproduces the file byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

import breccia
from breccia.bridges import load_safetensors, save_safetensors

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fp8(shape, gen) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen) * 50).to(torch.float8_e4m3fn)


def _block_scales(shape, gen) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen) * 2 + 0.01).to(torch.float8_e4m3fn)


def _e2m1_values(packed: torch.Tensor) -> torch.Tensor:
    """Unpacks two E2M1 codes per byte, the low nibble first (the even column)."""
    low, high = packed & 0x0F, packed >> 4
    codes = torch.stack((low, high), dim=-1).reshape(packed.shape[0], -1)
    return E2M1[codes.long()]


def _ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def ordered(x):
        bits = x.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, np.int64(-(2**31)) - bits, bits)

    return np.abs(ordered(a) - ordered(b))


def _rewrite_is_identical(path, convention: str) -> None:
    loaded, metadata = load_safetensors(path, return_metadata=True)
    save_safetensors(loaded, path.with_suffix(".rewritten"), metadata, convention=convention)
    assert path.with_suffix(".rewritten").read_bytes() == path.read_bytes()


def test_deepseek_v3_fp8(tmp_path):
    gen = _generator(0)
    weight, scale_inv = _fp8((200, 300), gen), torch.rand(2, 3, generator=gen) + 0.5
    path = tmp_path / "ds.safetensors"
    save_file(
        {
            "model.layers.3.mlp.gate_proj.weight": weight,
            "model.layers.3.mlp.gate_proj.weight_scale_inv": scale_inv,
            "model.embed_tokens.weight": torch.randn(10, 4, generator=gen).bfloat16(),
        },
        path,
        metadata={"format": "pt"},
    )
    loaded = load_safetensors(path)
    w = loaded["model.layers.3.mlp.gate_proj.weight"]
    assert w.recipe == breccia.Float8BlockScaling(block_k=128, block_m=128, power_2_scale=False)
    assert w.layout == breccia.PerBlockMN(128, 128)
    assert loaded["model.embed_tokens.weight"].dtype.name == "bfloat16"
    # DeepSeek's weight_dequant: each 128 x 128 tile times its scale_inv.
    expanded = scale_inv.repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)[:, :300]
    np.testing.assert_array_equal(breccia.dequantize(w), (weight.float() * expanded).numpy())
    _rewrite_is_identical(path, "deepseek-v3")


def test_compressed_tensors_nvfp4(tmp_path):
    gen = _generator(1)
    packed = torch.randint(0, 256, (32, 64), dtype=torch.uint8, generator=gen)
    scale = _block_scales((32, 8), gen)
    global_scale = torch.tensor([2688.0 / 3.7])  # 2688 / amax: an ENCODE factor
    path = tmp_path / "ct.safetensors"
    save_file(
        {
            "proj.weight_packed": packed,
            "proj.weight_scale": scale,
            "proj.weight_global_scale": global_scale,
            "proj.input_global_scale": torch.tensor([1000.0]),
        },
        path,
        metadata={"format": "pt"},
    )
    loaded = load_safetensors(path)
    w = loaded["proj.weight"]
    assert w.recipe == breccia.NVFP4BlockScaling() and w.layout == breccia.PerBlockMN(1, 16)
    assert w.global_scale == np.float32(1) / global_scale.numpy()[0]
    assert "proj.input_global_scale" in loaded
    # compressed-tensors' dequantize: x_q * (scale / global_scale).
    convention = _e2m1_values(packed) * (scale.float() / global_scale).repeat_interleave(16, 1)
    # breccia multiplies by 1/G instead of dividing by G: at most a couple of ulps apart.
    assert _ulp_distance(breccia.dequantize(w), convention.numpy()).max() <= 2
    _rewrite_is_identical(path, "compressed-tensors")


@pytest.mark.parametrize("scale_shape", [(1,), (48, 1), (1, 2)], ids=["tensor", "channel", "block"])
def test_compressed_tensors_fp8(tmp_path, scale_shape):
    gen = _generator(2)
    weight = _fp8((48, 256), gen)
    scale = torch.rand(*scale_shape, generator=gen) + 0.1
    path = tmp_path / "fp8.safetensors"
    save_file(
        {"q.weight": weight, "q.weight_scale": scale, "q.input_scale": torch.tensor([0.2])},
        path,
        metadata={"format": "pt"},
    )
    w = load_safetensors(path)["q.weight"]
    expected_layout = {
        (1,): breccia.PerTensor(),
        (48, 1): breccia.PerChannel(),
        (1, 2): breccia.PerBlockMN(128, 128),
    }[scale_shape]
    assert w.layout == expected_layout
    expanded = scale if scale_shape != (1, 2) else scale.repeat_interleave(128, 1)[:, :256]
    np.testing.assert_array_equal(breccia.dequantize(w), (weight.float() * expanded).numpy())
    _rewrite_is_identical(path, "compressed-tensors")


def _pack_int32_rows(nibbles: np.ndarray) -> np.ndarray:
    """compressed-tensors' pack_to_int32 along columns: eight nibbles per word, low end first."""
    rows, cols = nibbles.shape
    words = np.zeros((rows, -(-cols // 8)), np.uint32)
    for i in range(cols):
        words[:, i // 8] |= nibbles[:, i].astype(np.uint32) << np.uint32(4 * (i % 8))
    return words.view(np.int32)


@pytest.mark.parametrize("symmetric", [True, False])
def test_compressed_tensors_int4_pack_quantized(tmp_path, symmetric):
    rng = np.random.default_rng(3)
    rows, cols, group = 20, 96, 32
    q = rng.integers(-8, 8, (rows, cols))  # signed codes; stored as q + 8
    zero = (
        np.zeros((rows, cols // group), np.int64) if symmetric else rng.integers(-8, 8, (rows, 3))
    )
    scale = torch.from_numpy(rng.uniform(0.01, 0.2, (rows, cols // group))).to(torch.bfloat16)
    tensors = {
        "w.weight_packed": torch.from_numpy(_pack_int32_rows((q + 8).astype(np.uint8))),
        "w.weight_scale": scale,
        "w.weight_shape": torch.tensor([rows, cols]),
    }
    if not symmetric:
        tensors["w.weight_zero_point"] = torch.from_numpy(
            _pack_int32_rows((zero + 8).astype(np.uint8).T).T.copy()
        )  # packed along rows
    path = tmp_path / "int4.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    w = load_safetensors(path)["w.weight"]
    assert w.recipe == breccia.INT4Scaling(group_size=group, signed=symmetric, scale_dtype="bf16")
    # compressed-tensors' dequantize, in the scale's dtype: (x_q - zero_point) * scale.
    expanded = scale.repeat_interleave(group, 1)
    diff = torch.from_numpy(q - np.repeat(zero, group, 1)).to(torch.bfloat16)
    convention = (diff * expanded).float().numpy()
    np.testing.assert_array_equal(
        breccia.dequantize(w, torch.bfloat16).astype(np.float32), convention
    )
    _rewrite_is_identical(path, "compressed-tensors")


def test_modelopt_nvfp4(tmp_path):
    gen = _generator(4)
    packed = torch.randint(0, 256, (16, 32), dtype=torch.uint8, generator=gen)
    scale = _block_scales((16, 4), gen)
    scale_2 = torch.tensor(5.1 / 2688)  # amax / (6 * 448): a DECODE factor, shape ()
    path = tmp_path / "modelopt.safetensors"
    save_file(
        {
            "fc1.weight": packed,
            "fc1.weight_scale": scale,
            "fc1.weight_scale_2": scale_2,
            "fc1.input_scale": torch.tensor(0.02),
        },
        path,
        metadata={"format": "pt"},
    )
    w = load_safetensors(path)["fc1.weight"]
    assert w.recipe == breccia.NVFP4BlockScaling()
    assert w.global_scale == scale_2.numpy()
    # ModelOpt's dequantize: unpacked * (weight_scale * weight_scale_2) per block.
    convention = _e2m1_values(packed) * (scale.float() * scale_2).repeat_interleave(16, 1)
    # breccia forms the same per-block factor first: bit for bit.
    assert _ulp_distance(breccia.dequantize(w), convention.numpy()).max() == 0
    _rewrite_is_identical(path, "modelopt")


@pytest.mark.parametrize("kind", ["channel", "block", "mxfp8"])
def test_modelopt_fp8_channel_block_and_mxfp8(tmp_path, kind):
    """ModelOpt's FP8_PER_CHANNEL_PER_TOKEN (scale [N]), FP8_PB_WO (scale [N/128, 1, K/128, 1])
    and MXFP8 (U8 E8M0 scales [N, K/32]) weights, as vLLM's ModelOpt loader reads them."""
    gen = _generator(8)
    weight = _fp8((256, 384), gen)
    if kind == "channel":
        scale = torch.rand(256, generator=gen) + 0.01
        expanded = scale[:, None].expand(256, 384)
    elif kind == "block":
        scale = torch.rand(2, 1, 3, 1, generator=gen) + 0.01
        expanded = scale[:, 0, :, 0].repeat_interleave(128, 0).repeat_interleave(128, 1)
    else:
        scale = torch.randint(110, 135, (256, 12), dtype=torch.uint8, generator=gen)
        expanded = torch.exp2(scale.float() - 127).repeat_interleave(32, 1)
    path = tmp_path / "modelopt.safetensors"
    save_file({"fc.weight": weight, "fc.weight_scale": scale}, path, metadata={"format": "pt"})
    w = load_safetensors(path)["fc.weight"]
    expected = {
        "channel": breccia.PerChannel(),
        "block": breccia.PerBlockMN(128, 128),
        "mxfp8": breccia.PerBlockMN(1, 32),
    }[kind]
    assert w.layout == expected
    assert _ulp_distance(breccia.dequantize(w), (weight.float() * expanded).numpy()).max() == 0
    _rewrite_is_identical(path, "modelopt")


def _gpt_oss_dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """gpt-oss's own decode: each byte two E2M1 codes (low nibble = even element) from a lookup
    table, each group of 32 times 2^(scale - 127)."""
    *prefix, groups, _ = blocks.shape
    low, high = (blocks & 0x0F).long(), (blocks >> 4).long()
    values = torch.stack((E2M1[low], E2M1[high]), dim=-1).reshape(*prefix, groups, 32)
    values = torch.ldexp(values, scales.to(torch.int32)[..., None] - 127)
    return values.reshape(*prefix, groups * 32)


def test_gpt_oss_mxfp4_experts(tmp_path):
    gen = _generator(6)
    # Two experts of an (N=8, K=128) projection: blocks [E, N, K/32, 16], scales [E, N, K/32].
    blocks = torch.randint(0, 256, (2, 8, 4, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(100, 140, (2, 8, 4), dtype=torch.uint8, generator=gen)
    bias = torch.randn(2, 8, generator=gen).bfloat16()
    path = tmp_path / "gpt-oss.safetensors"
    save_file(
        {
            "model.layers.0.mlp.experts.gate_up_proj_blocks": blocks,
            "model.layers.0.mlp.experts.gate_up_proj_scales": scales,
            "model.layers.0.mlp.experts.gate_up_proj_bias": bias,
        },
        path,
        metadata={"format": "pt"},
    )
    loaded = load_safetensors(path)
    w = loaded["model.layers.0.mlp.experts.gate_up_proj"]
    assert w.recipe == breccia.MXFP4BlockScaling()
    assert w.logical_shape == (2, 8, 128)
    assert "model.layers.0.mlp.experts.gate_up_proj_bias" in loaded  # a plain array
    expected = _gpt_oss_dequantize(blocks, scales).numpy()
    assert _ulp_distance(breccia.dequantize(w), expected).max() == 0
    _rewrite_is_identical(path, "gpt-oss")


def test_compressed_tensors_mxfp4(tmp_path):
    gen = _generator(7)
    packed = torch.randint(0, 256, (16, 32), dtype=torch.uint8, generator=gen)
    scale = torch.randint(110, 140, (16, 2), dtype=torch.uint8, generator=gen)
    path = tmp_path / "ct-mxfp4.safetensors"
    save_file(
        {"fc.weight_packed": packed, "fc.weight_scale": scale}, path, metadata={"format": "pt"}
    )
    w = load_safetensors(path)["fc.weight"]
    assert w.recipe == breccia.MXFP4BlockScaling() and w.logical_shape == (16, 64)
    # compressed-tensors' decode: E2M1 value times 2^(scale - 127) per group of 32.
    convention = torch.ldexp(
        _e2m1_values(packed), scale.to(torch.int32).repeat_interleave(32, 1) - 127
    )
    assert _ulp_distance(breccia.dequantize(w), convention.numpy()).max() == 0
    _rewrite_is_identical(path, "compressed-tensors")


def test_gpt_oss_rejects_blocks_that_are_not_32_codes(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file(
        {
            "e.w_blocks": torch.zeros(2, 4, 8, dtype=torch.uint8),
            "e.w_scales": torch.zeros(2, 4, dtype=torch.uint8),
        },
        path,
    )
    with pytest.raises(ValueError, match=r"e\.w_blocks.*\(\.\.\., G, 16\)"):
        load_safetensors(path)


@pytest.mark.parametrize(
    "convention, recipe, names",
    [
        (
            "deepseek-v3",
            breccia.Float8BlockScaling(block_m=128, power_2_scale=False),
            {"m.weight": torch.float8_e4m3fn, "m.weight_scale_inv": torch.float32},
        ),
        (
            "compressed-tensors",
            breccia.NVFP4BlockScaling(),
            {
                "m.weight_packed": torch.uint8,
                "m.weight_scale": torch.float8_e4m3fn,
                "m.weight_global_scale": torch.float32,
            },
        ),
        (
            "compressed-tensors",
            breccia.INT4Scaling(group_size=64),
            {
                "m.weight_packed": torch.int32,
                "m.weight_scale": torch.float16,
                "m.weight_shape": torch.int64,
            },
        ),
        (
            "modelopt",
            breccia.NVFP4BlockScaling(),
            {
                "m.weight": torch.uint8,
                "m.weight_scale": torch.float8_e4m3fn,
                "m.weight_scale_2": torch.float32,
            },
        ),
        (
            "compressed-tensors",
            breccia.MXFP4BlockScaling(),
            {"m.weight_packed": torch.uint8, "m.weight_scale": torch.uint8},
        ),
        (
            "gpt-oss",
            breccia.MXFP4BlockScaling(),
            {"m.weight_blocks": torch.uint8, "m.weight_scales": torch.uint8},
        ),
        (
            "modelopt",
            breccia.Float8CurrentScaling(),
            {"m.weight": torch.float8_e4m3fn, "m.weight_scale": torch.float32},
        ),
        (
            "modelopt",
            breccia.Float8BlockScaling(block_m=128, power_2_scale=False),
            {"m.weight": torch.float8_e4m3fn, "m.weight_scale": torch.float32},
        ),
        (
            "modelopt",
            breccia.MXFP8BlockScaling(),
            {"m.weight": torch.float8_e4m3fn, "m.weight_scale": torch.uint8},
        ),
        (
            "deepseek-v4",
            breccia.Float8BlockScaling(block_m=128, power_2_scale=True),
            {"m.weight": torch.float8_e4m3fn, "m.scale": torch.float8_e8m0fnu},
        ),
        (
            "deepseek-v4",
            breccia.MXFP4BlockScaling(),
            {"m.weight": torch.int8, "m.scale": torch.float8_e8m0fnu},
        ),
    ],
)
def test_cast_tensors_write_each_convention_and_read_back(tmp_path, convention, recipe, names):
    x = np.random.default_rng(5).standard_normal((256, 256)).astype(np.float32)
    st = breccia.cast(x, recipe)
    path = tmp_path / "c.safetensors"
    save_safetensors({"m.weight": st}, path, convention=convention)
    with safe_open(path, framework="pt") as f:
        assert {name: f.get_tensor(name).dtype for name in f.keys()} == names  # noqa: SIM118 (safe_open is not iterable)
        assert "breccia" not in f.metadata()
    back = load_safetensors(path)["m.weight"]
    assert back.recipe.to_json() | {"power_2_scale": None} == st.recipe.to_json() | {
        "power_2_scale": None
    }
    np.testing.assert_array_equal(breccia.dequantize(back), breccia.dequantize(st))


def test_conventions_reject_what_they_cannot_express(tmp_path):
    st = breccia.cast(np.ones((64, 64), np.float32), breccia.MXFP6BlockScaling())
    for convention in ("deepseek-v3", "deepseek-v4", "compressed-tensors", "modelopt", "gpt-oss"):
        with pytest.raises(ValueError, match=convention):
            save_safetensors({"w": st}, tmp_path / "x.safetensors", convention=convention)
    assert not (tmp_path / "x.safetensors").exists()


def test_act_order_int4_is_not_implemented(tmp_path):
    path = tmp_path / "gidx.safetensors"
    save_file(
        {
            "w.weight_packed": torch.zeros(4, 2, dtype=torch.int32),
            "w.weight_scale": torch.ones(4, 1, dtype=torch.float16),
            "w.weight_shape": torch.tensor([4, 16]),
            "w.weight_g_idx": torch.zeros(16, dtype=torch.int32),
        },
        path,
    )
    with pytest.raises(NotImplementedError, match="g_idx"):
        load_safetensors(path)
