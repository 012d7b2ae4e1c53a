"""DeepSeek-V4 checkpoints as its release stores them, written here with the `safetensors`
package and PyTorch: FP8 E4M3 weights with E8M0 128x128 scales under `<p>.scale`, routed
experts as E2M1 pairs in I8 tensors with E8M0 1x32 scales, `expert_dtype: fp4` in config.json.
They dequantize to DeepSeek's formula, round-trip byte for byte, and their FP4 experts re-encode
to FP8 blocks with every value kept and the bytes of DeepSeek's own re-encode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import breccia
from breccia.bridges import load_safetensors, save_safetensors
from breccia.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.torch import load_file, save_file  # noqa: E402

# DeepSeek's decode table of E2M1 codes; its code 8 (negative zero) decodes to +0.0.
DEEPSEEK_E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6])
SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"


def _e8m0(codes: torch.Tensor) -> torch.Tensor:
    return codes.to(torch.uint8).view(torch.float8_e8m0fnu)


def _v4_tensors(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two shards of a small DeepSeek-V4-style model; one expert's scale lies in the other
    shard than its weight."""
    gen = torch.Generator().manual_seed(seed)

    def bf16(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * 0.05).to(torch.bfloat16)

    def fp8(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * 60).to(torch.float8_e4m3fn)

    def codes(low: int, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(low, high + 1, shape, generator=gen)

    def packed(rows: int, cols: int) -> torch.Tensor:
        return codes(0, 255, rows, cols // 2).to(torch.uint8).view(torch.int8)

    first = {
        "embed.weight": bf16(64, 256),
        "layers.0.attn_norm.weight": torch.ones(256, dtype=torch.bfloat16),
        "layers.0.attn.wq_a.weight": fp8(256, 384),
        "layers.0.attn.wq_a.scale": _e8m0(codes(110, 130, 2, 3)),
        "layers.0.ffn.gate.weight": bf16(8, 256),
        "layers.0.ffn.experts.0.w1.weight": packed(256, 256),
        "layers.0.ffn.experts.0.w1.scale": _e8m0(codes(115, 128, 256, 8)),
        "layers.0.ffn.experts.0.w2.weight": packed(256, 512),
    }
    second = {
        "layers.0.ffn.experts.0.w2.scale": _e8m0(codes(100, 110, 256, 16)),
        "head.weight": bf16(64, 256),
    }
    return first, second


def _write_v4(directory: Path) -> dict[str, torch.Tensor]:
    directory.mkdir(parents=True, exist_ok=True)
    first, second = _v4_tensors()
    weight_map = {}
    for name, tensors in ((SHARD_1, first), (SHARD_2, second)):
        save_file(tensors, str(directory / name), {"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    config = {
        "model_type": "deepseek_v4",
        "expert_dtype": "fp4",
        "quantization_config": {
            "quant_method": "fp8",
            "fmt": "e4m3",
            "scale_fmt": "ue8m0",
            "weight_block_size": [128, 128],
            "activation_scheme": "dynamic",
        },
    }
    (directory / "config.json").write_text(json.dumps(config))
    return {**first, **second}


def _stored(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# --- DeepSeek's formulas, written from its reference code's description ---------------------


def _deepseek_fp8_dequantize(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    rows, cols = weight.shape
    expanded = scale.float().repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    return weight.float() * expanded


def _deepseek_fp4_values(packed: torch.Tensor) -> torch.Tensor:
    codes = packed.view(torch.uint8).long()
    pairs = torch.stack((DEEPSEEK_E2M1[codes & 15], DEEPSEEK_E2M1[codes >> 4]), dim=-1)
    return pairs.reshape(packed.shape[0], -1)


def _deepseek_fp4_dequantize(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return _deepseek_fp4_values(packed) * scale.float().repeat_interleave(32, 1)


def _deepseek_fp4_to_fp8(packed: torch.Tensor, scale: torch.Tensor):
    """DeepSeek-V4's lossless cast of FP4 experts to FP8 128x128 blocks: a tile's scale is the
    largest of its 1x32 scales over 2^6; each value is scaled by its block's share of it."""
    values = _deepseek_fp4_values(packed)
    rows, cols = values.shape
    block_scales = scale.float()
    tile = block_scales.reshape(rows // 128, 128, cols // 128, 4).amax(dim=(1, 3)) / 64
    share = block_scales / tile.repeat_interleave(128, 0).repeat_interleave(4, 1)
    fp8 = (values * share.repeat_interleave(32, 1)).to(torch.float8_e4m3fn)
    return fp8, tile.to(torch.float8_e8m0fnu)


# --- tests ---------------------------------------------------------------------------------


def test_v4_files_load_and_rewrite_byte_for_byte(tmp_path):
    source = _write_v4(tmp_path / "v4")
    for shard in (SHARD_1,):  # the shard whose every scale sits beside its weight
        path = tmp_path / "v4" / shard
        loaded, metadata = load_safetensors(path, return_metadata=True)
        fp8 = loaded["layers.0.attn.wq_a.weight"]
        assert isinstance(fp8, breccia.ScaledTensor)
        assert fp8.recipe == breccia.Float8BlockScaling(block_m=128, power_2_scale=True)
        assert fp8.layout == breccia.PerBlockMN(128, 128)
        expert = loaded["layers.0.ffn.experts.0.w1.weight"]
        assert expert.recipe == breccia.MXFP4BlockScaling()
        np.testing.assert_array_equal(
            np.asarray(breccia.dequantize(fp8)),
            _deepseek_fp8_dequantize(
                source["layers.0.attn.wq_a.weight"], source["layers.0.attn.wq_a.scale"]
            ).numpy(),
        )
        np.testing.assert_array_equal(
            np.abs(np.asarray(breccia.dequantize(expert))),  # DeepSeek reads -0 as +0
            np.abs(
                _deepseek_fp4_dequantize(
                    source["layers.0.ffn.experts.0.w1.weight"],
                    source["layers.0.ffn.experts.0.w1.scale"],
                ).numpy()
            ),
        )
        save_safetensors(loaded, tmp_path / "rewritten", metadata, convention="deepseek-v4")
        assert (tmp_path / "rewritten").read_bytes() == path.read_bytes()


def test_v4_to_bf16_matches_deepseeks_formulas(tmp_path):
    source = _write_v4(tmp_path / "v4")
    _run("convert", str(tmp_path / "v4"), str(tmp_path / "bf16"), "--to", "bf16", "--quiet")
    out = _stored(tmp_path / "bf16")
    assert not any(name.endswith(".scale") for name in out)
    for name in ("layers.0.ffn.experts.0.w1", "layers.0.ffn.experts.0.w2"):
        want = _deepseek_fp4_dequantize(source[name + ".weight"], source[name + ".scale"])
        assert torch.equal(out[name + ".weight"].float(), want.to(torch.bfloat16).float())
    want = _deepseek_fp8_dequantize(
        source["layers.0.attn.wq_a.weight"], source["layers.0.attn.wq_a.scale"]
    )
    assert torch.equal(out["layers.0.attn.wq_a.weight"], want.to(torch.bfloat16))
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert "quantization_config" not in config and "expert_dtype" not in config


def test_v4_fp4_experts_re_encode_to_fp8_with_deepseeks_bytes(tmp_path):
    source = _write_v4(tmp_path / "v4")
    _run(
        "convert", str(tmp_path / "v4"), str(tmp_path / "fp8"), "--to", "fp8-block",
        "--convention", "deepseek-v4", "--quiet",
    )  # fmt: skip
    out = _stored(tmp_path / "fp8")
    for name in ("layers.0.ffn.experts.0.w1", "layers.0.ffn.experts.0.w2"):
        packed, scale = source[name + ".weight"], source[name + ".scale"]
        fp8, tile = _deepseek_fp4_to_fp8(packed, scale)
        assert out[name + ".weight"].dtype == torch.float8_e4m3fn
        assert out[name + ".scale"].dtype == torch.float8_e8m0fnu
        assert torch.equal(out[name + ".scale"].view(torch.uint8), tile.view(torch.uint8))
        # The same bytes, but for E2M1's negative zero, which breccia keeps (0x80) and
        # DeepSeek's table turns into +0 (0x00).
        ours, theirs = out[name + ".weight"].view(torch.uint8), fp8.view(torch.uint8)
        negative_zero = _codes(packed) == 8
        assert torch.equal(ours[~negative_zero], theirs[~negative_zero])
        assert bool((ours[negative_zero] == 0x80).all())
        # Lossless: every value is the FP4 value, bit for bit.
        want = _deepseek_fp4_dequantize(packed, scale)
        got = out[name + ".weight"].float() * out[name + ".scale"].float().repeat_interleave(
            128, 0
        ).repeat_interleave(128, 1)
        assert torch.equal(got.abs(), want.abs())
    # What was FP8 or high precision is kept byte for byte; the config drops expert_dtype.
    for name in (
        "layers.0.attn.wq_a.weight",
        "layers.0.attn.wq_a.scale",
        "layers.0.ffn.gate.weight",
        "head.weight",
        "embed.weight",
    ):
        assert torch.equal(out[name].view(torch.uint8), source[name].view(torch.uint8)), name
    config = json.loads((tmp_path / "fp8" / "config.json").read_text())
    assert "expert_dtype" not in config
    assert config["quantization_config"]["scale_fmt"] == "ue8m0"
    _run("verify", str(tmp_path / "fp8"), "--against", str(tmp_path / "v4"), "--min-sqnr", "200")


def _codes(packed: torch.Tensor) -> torch.Tensor:
    nibbles = packed.view(torch.uint8)
    return torch.stack((nibbles & 15, nibbles >> 4), dim=-1).reshape(packed.shape[0], -1)


def test_bf16_to_v4_writes_e8m0_block_scales(tmp_path):
    gen = torch.Generator().manual_seed(3)
    weights = {
        "layers.0.attn.wq_a.weight": torch.randn(256, 384, generator=gen).to(torch.bfloat16),
        "layers.0.ffn.gate.weight": torch.randn(8, 256, generator=gen).to(torch.bfloat16),
    }
    (tmp_path / "src").mkdir()
    save_file(weights, str(tmp_path / "src" / "model.safetensors"), {"format": "pt"})
    (tmp_path / "src" / "config.json").write_text(json.dumps({"model_type": "deepseek_v4"}))
    _run(
        "convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--to", "fp8-block",
        "--convention", "deepseek-v4", "--quiet",
    )  # fmt: skip
    out = _stored(tmp_path / "dst")
    assert out["layers.0.attn.wq_a.scale"].dtype == torch.float8_e8m0fnu
    assert out["layers.0.ffn.gate.weight"].dtype == torch.bfloat16  # a router stays bf16
    want = breccia.cast(
        weights["layers.0.attn.wq_a.weight"],
        breccia.Float8BlockScaling(block_m=128, power_2_scale=True),
    )
    assert torch.equal(
        out["layers.0.attn.wq_a.weight"].view(torch.uint8), want.data.view(torch.uint8)
    )
    assert torch.equal(out["layers.0.attn.wq_a.scale"].float(), want.scale)


def test_reencode_refuses_what_it_cannot_keep():
    data = torch.full((32, 16), 0x11, dtype=torch.uint8)  # every code 0.5
    scale = torch.full((32, 1), 120, dtype=torch.uint8).view(torch.float8_e8m0fnu)
    scale[0, 0] = _e8m0(torch.tensor(140))  # 2^20 above the rest: 0.5 * 2^-14 underflows E4M3
    x = breccia.ScaledTensor(data, scale, breccia.MXFP4BlockScaling(), breccia.PerBlockMN(1, 32))
    with pytest.raises(ValueError, match=r"element \(1, 0\) is not exact in E4M3"):
        breccia.reencode_fp4_as_fp8(x, tile=32)
    even = torch.full((32, 1), 120, dtype=torch.uint8).view(torch.float8_e8m0fnu)
    ok = breccia.reencode_fp4_as_fp8(
        breccia.ScaledTensor(data, even, breccia.MXFP4BlockScaling(), breccia.PerBlockMN(1, 32)),
        tile=32,
    )
    assert torch.equal(ok.data.float(), torch.full((32, 32), 32.0))  # 0.5 * 2^6
