"""The `breccia` command line and breccia.checkpoint: whole model directories converted,
inspected, verified and compared, checked against the safetensors package and independent
formulas; interrupted and resumed conversions; hostile directories."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

import breccia
from breccia import checkpoint
from breccia.bridges import load_safetensors
from breccia.cli import main

safetensors_numpy = pytest.importorskip("safetensors.numpy")

BF16 = ml_dtypes.bfloat16
SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"


def write_model(directory: Path, shards: list[dict[str, np.ndarray]], config: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for index, tensors in enumerate(shards):
        name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        safetensors_numpy.save_file(tensors, str(directory / name), {"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    if config:
        (directory / "config.json").write_text(
            json.dumps({"model_type": "llama", "torch_dtype": "bfloat16", "hidden_size": 256})
        )
    (directory / "tokenizer.json").write_text('{"version": "1.0"}')


def bf16_model(directory: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(BF16)

    first = {
        "model.embed_tokens.weight": weight(64, 256),
        "model.layers.0.input_layernorm.weight": np.ones(256, BF16),
        "model.layers.0.self_attn.q_proj.weight": weight(256, 256),
        "model.layers.0.self_attn.k_proj.weight": weight(128, 256),
    }
    second = {
        "model.layers.0.mlp.gate.weight": weight(8, 256),  # a MoE router: stays bf16
        "model.layers.0.mlp.down_proj.weight": weight(256, 512),
        "model.layers.0.mlp.odd_proj.weight": weight(96, 96),  # 96: no block of 128 fits
        "lm_head.weight": weight(64, 256),
    }
    write_model(directory, [first, second])
    return {**first, **second}


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def read_dir(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def stored_tensors(directory: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for path in sorted(directory.glob("*.safetensors")):
        out.update(safetensors_numpy.load_file(str(path)))
    return out


def header(path: Path) -> dict[str, Any]:
    """The safetensors header, read by hand (the safetensors package's NumPy loader has no FP8)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    entries = json.loads(data[8 : 8 + length])
    entries.pop("__metadata__", None)
    return entries


QUANTIZED_WEIGHTS = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
]


@pytest.mark.parametrize(
    ("fmt", "recipe", "convention", "quant_method"),
    [
        ("fp8", breccia.Float8CurrentScaling(), "compressed-tensors", "compressed-tensors"),
        (
            "fp8-block",
            breccia.Float8BlockScaling(block_m=128, block_k=128, power_2_scale=False),
            "deepseek-v3",
            "fp8",
        ),
        ("mxfp8", breccia.MXFP8BlockScaling(), "breccia", "breccia"),
        ("mxfp4", breccia.MXFP4BlockScaling(), "compressed-tensors", "compressed-tensors"),
        ("nvfp4", breccia.NVFP4BlockScaling(), "compressed-tensors", "compressed-tensors"),
        (
            "int4",
            breccia.INT4Scaling(scale_dtype="bf16"),
            "compressed-tensors",
            "compressed-tensors",
        ),
    ],
)
def test_convert_writes_what_cast_gives(
    tmp_path: Path, fmt: str, recipe: Any, convention: str, quant_method: str
) -> None:
    source = bf16_model(tmp_path / "src")
    out = tmp_path / "out"
    result = run(
        "convert", str(tmp_path / "src"), str(out), "--to", fmt, "--max-shard-size", "150KB"
    )
    assert result.exit_code == 0, result.output

    # A directory any safetensors loader reads: an index naming exactly what each shard holds.
    index = json.loads((out / "model.safetensors.index.json").read_text())
    for path in out.glob("*.safetensors"):
        assert {n for n, f in index["weight_map"].items() if f == path.name} == set(header(path))
    assert len(set(index["weight_map"].values())) > 1  # the shard size was honoured
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == quant_method
    assert config["model_type"] == "llama"
    assert (out / "tokenizer.json").read_text() == '{"version": "1.0"}'

    # Each weight is what breccia.cast gives for the source values; the rest is unchanged.
    tensors = breccia.checkpoint.load(out)
    loaded = {}
    for path in sorted(out.glob("*.safetensors")):
        loaded.update(load_safetensors(path))
    fused = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"]
    amaxes = {name: float(np.abs(source[name].astype(np.float32)).max()) for name in fused}
    for name in QUANTIZED_WEIGHTS:
        expected = breccia.cast(source[name].astype(np.float32), recipe)
        got = loaded[name]
        # breccia.checkpoint.load reads the whole directory as load_safetensors reads one file.
        assert isinstance(tensors[name], breccia.ScaledTensor)
        np.testing.assert_array_equal(np.asarray(tensors[name].data), np.asarray(got.data))
        if fmt == "nvfp4" and name in fused and amaxes[name] < max(amaxes.values()):
            # q and k are fused into one GEMM: both take the global scale of the larger amax,
            # so the smaller one's bytes differ from its own cast (test_fused_nvfp4_...).
            continue
        assert isinstance(got, breccia.ScaledTensor), name
        np.testing.assert_array_equal(np.asarray(got.data), np.asarray(expected.data))
        np.testing.assert_array_equal(
            np.asarray(got.scale).astype(np.float32).ravel(),
            np.asarray(expected.scale).astype(np.float32).ravel(),
        )
    for name in ["model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.gate.weight"]:
        assert isinstance(tensors[name], np.ndarray)  # kept high precision: a plain array
        np.testing.assert_array_equal(
            np.asarray(loaded[name]).view(np.uint16), source[name].view(np.uint16)
        )
    ignored = config["quantization_config"].get(
        "ignore", config["quantization_config"].get("modules_to_not_convert")
    )
    assert "lm_head" in ignored and "model.layers.0.mlp.gate" in ignored
    assert result.output.count("quantized") >= 1 and convention in result.output


def test_fused_nvfp4_projections_share_one_global_scale(tmp_path: Path) -> None:
    """vLLM and TensorRT-LLM multiply q/k/v (and gate/up) as one GEMM with one global scale:
    each member is cast with the largest amax of its group, in every NVFP4 convention."""
    rng = np.random.default_rng(11)
    shards = [
        {
            f"model.layers.0.self_attn.{p}_proj.weight": (
                rng.standard_normal((128, 256)) * scale
            ).astype(BF16)
            for p, scale in (("q", 0.02), ("k", 0.2), ("v", 0.05))
        },
        {
            f"model.layers.0.mlp.{p}_proj.weight": (rng.standard_normal((256, 256)) * s).astype(
                BF16
            )
            for p, s in (("gate", 0.3), ("up", 0.01), ("down", 0.1))
        },
    ]
    write_model(tmp_path / "src", shards)
    for convention in ("compressed-tensors", "modelopt"):
        out = tmp_path / convention
        result = run(
            "convert", str(tmp_path / "src"), str(out), "--to", "nvfp4",
            "--convention", convention,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        loaded = {}
        for path in sorted(out.glob("*.safetensors")):
            loaded.update(load_safetensors(path))
        prefix = "model.layers.0."

        def global_scale(module: str, loaded: dict[str, Any] = loaded) -> bytes:
            return np.asarray(loaded[f"model.layers.0.{module}.weight"].global_scale).tobytes()

        qkv = {global_scale(f"self_attn.{p}_proj") for p in "qkv"}
        gate_up = {global_scale(f"mlp.{p}_proj") for p in ("gate", "up")}
        assert len(qkv) == 1 and len(gate_up) == 1
        assert qkv != gate_up
        assert global_scale("mlp.down_proj") not in (qkv | gate_up)  # its own GEMM
        # The member with the largest amax is cast exactly as on its own; the others stay
        # accurate under the shared scale.
        k = shards[0][f"{prefix}self_attn.k_proj.weight"].astype(np.float32)
        np.testing.assert_array_equal(
            np.asarray(loaded[f"{prefix}self_attn.k_proj.weight"].data),
            np.asarray(breccia.cast(k, breccia.NVFP4BlockScaling()).data),
        )
        for p in "qv":
            x = shards[0][f"{prefix}self_attn.{p}_proj.weight"].astype(np.float32)
            y = np.asarray(breccia.dequantize(loaded[f"{prefix}self_attn.{p}_proj.weight"]))
            assert 10 * np.log10((x**2).sum() / ((x - y) ** 2).sum()) > 15


def test_fp8_block_to_bf16_matches_deepseeks_formula(tmp_path: Path) -> None:
    """DeepSeek-V3 weights (E4M3 + weight_scale_inv per 128 x 128 tile, scale in another shard)
    dequantized by the command equal weight * scale_inv per tile, rounded once to bf16."""
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((300, 256)) * 100).astype(ml_dtypes.float8_e4m3fn)
    scale = rng.uniform(1e-4, 1e-2, (3, 2)).astype(np.float32)
    write_model(
        tmp_path / "ds",
        [
            {"model.layers.0.mlp.up_proj.weight": weight},
            {"model.layers.0.mlp.up_proj.weight_scale_inv": scale},
        ],
    )
    result = run("convert", str(tmp_path / "ds"), str(tmp_path / "bf16"), "--to", "bf16")
    assert result.exit_code == 0, result.output
    got = stored_tensors(tmp_path / "bf16")["model.layers.0.mlp.up_proj.weight"]
    got = got.view(BF16) if got.dtype != BF16 else got
    tiles = np.repeat(np.repeat(scale, 128, axis=0), 128, axis=1)[:300, :256]
    expected = (weight.astype(np.float32) * tiles).astype(BF16)
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert "quantization_config" not in config and config["torch_dtype"] == "bfloat16"


def test_conversions_are_deterministic_and_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    bf16_model(tmp_path / "src")
    args = ["--to", "nvfp4", "--max-shard-size", "100KB"]
    assert run("convert", str(tmp_path / "src"), str(tmp_path / "a"), *args).exit_code == 0
    assert run("convert", str(tmp_path / "src"), str(tmp_path / "b"), *args).exit_code == 0
    reference = read_dir(tmp_path / "a")
    assert read_dir(tmp_path / "b") == reference

    # Interrupted in the middle: complete shards only, no index, no config.
    calls = []

    def stop_after_a_shard(done: int, total: int, tensors: int, count: int, current: str) -> None:
        calls.append(current)
        # The third shard's end: the first two are committed, the third is not yet.
        if sum(c.endswith(".safetensors") for c in calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.convert(
            tmp_path / "src",
            tmp_path / "c",
            "nvfp4",
            max_shard_bytes=100_000,
            progress=stop_after_a_shard,
        )
    left = read_dir(tmp_path / "c")
    assert "model.safetensors.index.json" not in left and "config.json" not in left
    assert "model-00001-of-00003.safetensors" in left
    assert "model-00002-of-00003.safetensors" in left
    assert "model-00003-of-00003.safetensors" not in left
    for name, data in left.items():
        assert not name.startswith(".")  # no temporary file is left behind
        assert data == reference[name]  # whatever has a final name is complete
    result = run("convert", str(tmp_path / "src"), str(tmp_path / "c"), *args, "--resume")
    assert result.exit_code == 0, result.output
    assert "kept from an earlier run" in result.output
    assert read_dir(tmp_path / "c") == reference


def test_round_trip_through_every_convention_is_byte_exact(tmp_path: Path) -> None:
    bf16_model(tmp_path / "src")
    for fmt, convention in [
        ("fp8-block", "compressed-tensors"),
        ("nvfp4", "modelopt"),
        ("fp8", "modelopt"),
        ("fp8-channel", "modelopt"),
        ("fp8-block", "modelopt"),
        ("mxfp8", "modelopt"),
        ("fp8-block", "deepseek-v4"),
        ("int4", "breccia"),
        ("mxfp4", "gpt-oss"),
    ]:
        first, second = tmp_path / f"{fmt}-{convention}", tmp_path / f"{fmt}-{convention}-again"
        args = ["--to", fmt, "--convention", convention]
        assert run("convert", str(tmp_path / "src"), str(first), *args).exit_code == 0
        # Converting a checkpoint to the format it holds keeps every tensor's bytes.
        result = run("convert", str(first), str(second), *args)
        assert result.exit_code == 0, result.output
        assert "requantized" not in result.output
        assert read_dir(first).keys() == read_dir(second).keys()
        for name in read_dir(first):
            if name.endswith(".safetensors"):
                a, b = header(first / name), header(second / name)
                assert a.keys() == b.keys()
                for key in a:
                    assert a[key]["dtype"] == b[key]["dtype"] and a[key]["shape"] == b[key]["shape"]
                    begin, end = a[key]["data_offsets"]
                    a_bytes = (first / name).read_bytes()
                    b_bytes = (second / name).read_bytes()
                    a_start = 8 + int.from_bytes(a_bytes[:8], "little")
                    b_start = 8 + int.from_bytes(b_bytes[:8], "little")
                    b_begin, b_end = b[key]["data_offsets"]
                    assert (
                        a_bytes[a_start + begin : a_start + end]
                        == (b_bytes[b_start + b_begin : b_start + b_end])
                    ), key
        assert run("diff", str(first), str(second)).exit_code == 0
        if convention == "modelopt":
            algorithm = json.loads((first / "hf_quant_config.json").read_text())["quantization"]
            assert (
                algorithm["quant_algo"]
                == {
                    "nvfp4": "NVFP4",
                    "fp8": "FP8",
                    "fp8-channel": "FP8_PER_CHANNEL_PER_TOKEN",
                    "fp8-block": "FP8_PB_WO",
                    "mxfp8": "MXFP8",
                }[fmt]
            )


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def test_gpt_oss_experts_to_bf16_match_gpt_oss_formula(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    blocks = rng.integers(0, 256, (4, 64, 8, 16), dtype=np.uint8)  # [E, N, K/32, 16]
    scales = rng.integers(110, 135, (4, 64, 8), dtype=np.uint8)  # E8M0, bias 127
    attention = (rng.standard_normal((256, 256)) * 0.05).astype(BF16)
    write_model(
        tmp_path / "src",
        [
            {
                "model.layers.0.mlp.experts.down_proj_blocks": blocks,
                "model.layers.0.mlp.experts.down_proj_scales": scales,
            },
            {"model.layers.0.self_attn.o_proj.weight": attention},
        ],
    )
    infos = {info.name: info for info in checkpoint.inspect(tmp_path / "src")}
    expert = infos["model.layers.0.mlp.experts.down_proj"]
    assert expert.convention == "gpt-oss" and expert.shape == (4, 64, 256)
    assert not expert.problems
    result = run("convert", str(tmp_path / "src"), str(tmp_path / "bf16"), "--to", "bf16")
    assert result.exit_code == 0, result.output
    got = stored_tensors(tmp_path / "bf16")
    # gpt-oss's decode: LUT[low nibble], LUT[high nibble] interleaved, times 2^(scale - 127).
    values = np.stack((E2M1[blocks & 0xF], E2M1[blocks >> 4]), axis=-1).reshape(4, 64, 8, 32)
    want = np.ldexp(values, scales.astype(np.int32)[..., None] - 127).reshape(4, 64, 256)
    assert got["model.layers.0.mlp.experts.down_proj"].dtype == BF16
    np.testing.assert_array_equal(
        got["model.layers.0.mlp.experts.down_proj"].view(np.uint16),
        want.astype(BF16).view(np.uint16),
    )
    assert set(got) == {
        "model.layers.0.mlp.experts.down_proj",
        "model.layers.0.self_attn.o_proj.weight",
    }


def test_inspect_verify_and_diff(tmp_path: Path) -> None:
    source = bf16_model(tmp_path / "src")
    assert (
        run("convert", str(tmp_path / "src"), str(tmp_path / "fp8"), "--to", "fp8-block").exit_code
        == 0
    )
    result = run("inspect", str(tmp_path / "fp8"), "--json")
    document = json.loads(result.output)
    by_name = {t["name"]: t for t in document["tensors"]}
    q = by_name["model.layers.0.self_attn.q_proj.weight"]
    assert q["convention"] == "deepseek-v3" and q["shape"] == [256, 256]
    assert q["scale_shape"] == [2, 2] and document["problems"] == 0
    assert by_name["lm_head.weight"]["convention"] == "plain"

    result = run(
        "verify", str(tmp_path / "fp8"), "--against", str(tmp_path / "src"), "--min-sqnr", "25"
    )
    assert result.exit_code == 0, result.output
    assert (
        run(
            "verify", str(tmp_path / "fp8"), "--against", str(tmp_path / "src"), "--min-sqnr", "60"
        ).exit_code
        == 1
    )
    assert run("diff", str(tmp_path / "src"), str(tmp_path / "src")).exit_code == 0
    different = run("diff", str(tmp_path / "src"), str(tmp_path / "fp8"))
    assert different.exit_code == 1
    assert "model.layers.0.self_attn.q_proj.weight" in different.output
    assert len(source) == len(by_name)
    # The same comparison from Python, against arrays of the caller's own.
    name = "model.layers.0.self_attn.q_proj.weight"
    fp8 = breccia.checkpoint.load(tmp_path / "fp8", framework="torch")
    assert isinstance(fp8[name], breccia.ScaledTensor) and fp8[name].backend == "torch"
    [comparison] = breccia.checkpoint.compare(fp8, {name: source[name].astype(np.float32)})
    assert comparison.name == name and 25 < comparison.sqnr_db < 60


def test_hostile_directories_fail_clearly_and_write_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((128, 128)).astype(np.float32)

    def check(directory: Path, message: str) -> None:
        out = tmp_path / (directory.name + "-out")
        result = CliRunner().invoke(main, ["convert", str(directory), str(out), "--to", "fp8"])
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert not out.exists() or not any(out.iterdir())

    # The index names a tensor that its shard does not hold.
    absent = tmp_path / "absent"
    write_model(absent, [{"a.weight": weight}])
    index = json.loads((absent / "model.safetensors.index.json").read_text())
    index["weight_map"]["b.weight"] = SHARD_1.replace("00002", "00001")
    (absent / "model.safetensors.index.json").write_text(json.dumps(index))
    check(absent, "b.weight")
    # A shard the index does not name, and one it names that is missing.
    stray = tmp_path / "stray"
    write_model(stray, [{"a.weight": weight}, {"b.weight": weight}])
    index = json.loads((stray / "model.safetensors.index.json").read_text())
    del index["weight_map"]["b.weight"]
    (stray / "model.safetensors.index.json").write_text(json.dumps(index))
    check(stray, SHARD_2)
    missing = tmp_path / "missing"
    write_model(missing, [{"a.weight": weight}, {"b.weight": weight}])
    os.remove(missing / SHARD_2)
    check(missing, SHARD_2)
    # A tensor in two shards.
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in (SHARD_1, SHARD_2):
        safetensors_numpy.save_file({"a.weight": weight}, str(twice / name))
    check(twice, "a.weight")
    # An index that escapes the directory.
    escape = tmp_path / "escape"
    write_model(escape, [{"a.weight": weight}])
    (escape / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a.weight": "../absent/" + SHARD_1.replace("00002", "00001")}})
    )
    check(escape, "expected a file name in the model directory")
    # A DeepSeek scale of NaN is refused under --validate error (the default).
    nan = tmp_path / "nan"
    write_model(
        nan,
        [
            {
                "w.weight": weight.astype(ml_dtypes.float8_e4m3fn),
                "w.weight_scale_inv": np.full((1, 1), np.nan, np.float32),
            }
        ],
    )
    check(nan, "w.weight")


def test_inspect_and_verify_report_orphans(tmp_path: Path) -> None:
    weight = np.ones((128, 128), ml_dtypes.float8_e4m3fn)
    write_model(
        tmp_path / "m", [{"a.weight": weight, "b.weight_scale_inv": np.ones((1, 1), np.float32)}]
    )
    infos = {i.name: i for i in checkpoint.inspect(tmp_path / "m")}
    assert any("no scale" in p for p in infos["a.weight"].problems)
    assert any("companion" in p for p in infos["b.weight_scale_inv"].problems)
    result = run("verify", str(tmp_path / "m"))
    assert result.exit_code == 1 and "FAIL" in result.output


def test_destination_rules(tmp_path: Path) -> None:
    bf16_model(tmp_path / "src")
    inside = run("convert", str(tmp_path / "src"), str(tmp_path / "src" / "out"), "--to", "fp8")
    assert inside.exit_code == 1 and "inside" in inside.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    full = run("convert", str(tmp_path / "src"), str(tmp_path / "full"), "--to", "fp8")
    assert full.exit_code == 1 and "--overwrite" in full.output
    assert (
        run(
            "convert", str(tmp_path / "src"), str(tmp_path / "full"), "--to", "fp8", "--overwrite"
        ).exit_code
        == 0
    )
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"  # not ours: left alone
    wrong = run(
        "convert",
        str(tmp_path / "src"),
        str(tmp_path / "x"),
        "--to",
        "nvfp4",
        "--convention",
        "deepseek-v3",
    )
    assert wrong.exit_code == 1 and "deepseek-v3" in wrong.output
    assert not (tmp_path / "x").exists()
    bad = run("convert", str(tmp_path / "src"), str(tmp_path / "y"), "--to", "fp8", "--ignore", "(")
    assert bad.exit_code == 1 and "regular expression" in bad.output
    device = run(
        "convert", str(tmp_path / "src"), str(tmp_path / "z"), "--to", "fp8", "--device", "gpu"
    )
    assert (
        device.exit_code == 1 and "expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'" in device.output
    )
    assert not (tmp_path / "z").exists()
    for spelling in ("cuda:", "cuda:-1", "cuda:01", " cuda", "cuda:0x1"):
        with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda' or 'cuda:N'"):
            checkpoint.convert(tmp_path / "src", tmp_path / "z", "fp8", device=spelling)
    assert not (tmp_path / "z").exists()
    if not breccia._core.CUDA_BUILT:
        cuda = run(
            "convert",
            str(tmp_path / "src"),
            str(tmp_path / "z"),
            "--to",
            "fp8",
            "--device",
            "cuda:0",
        )
        assert cuda.exit_code == 1 and "no CUDA kernels" in cuda.output
        assert not (tmp_path / "z").exists()


def test_mixed_precision_modelopt_and_compressed_tensors(tmp_path: Path) -> None:
    """--format-for: attention in FP8, the MLP in NVFP4, as ModelOpt's MIXED_PRECISION and as
    compressed-tensors config groups; each weight is what breccia.cast gives in its format."""
    source = bf16_model(tmp_path / "src")
    attention = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"]
    for convention in ("modelopt", "compressed-tensors"):
        out = tmp_path / convention
        result = run(
            "convert", str(tmp_path / "src"), str(out), "--to", "nvfp4",
            "--format-for", "self_attn=fp8", "--convention", convention,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        loaded = breccia.checkpoint.load(out)
        for module in attention:
            assert loaded[module + ".weight"].recipe == breccia.Float8CurrentScaling()
        down = "model.layers.0.mlp.down_proj.weight"
        assert loaded[down].recipe == breccia.NVFP4BlockScaling()
        np.testing.assert_array_equal(
            np.asarray(loaded[down].data),
            np.asarray(
                breccia.cast(source[down].astype(np.float32), breccia.NVFP4BlockScaling()).data
            ),
        )
        config = json.loads((out / "config.json").read_text())["quantization_config"]
        if convention == "modelopt":
            hf = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
            for document in (config, hf):
                assert document["quant_algo"] == "MIXED_PRECISION"
                layers = document["quantized_layers"]
                assert {layers[m]["quant_algo"] for m in attention} == {"FP8"}
                assert layers["model.layers.0.mlp.down_proj"] == {
                    "quant_algo": "NVFP4",
                    "group_size": 16,
                }
                assert "lm_head" in document["exclude_modules"]
                assert "moe_quant_algo" not in document  # this model has no routed experts
        else:
            assert config["format"] == "mixed-precision"
            groups = list(config["config_groups"].values())
            by_format = {group["format"]: group for group in groups}
            assert sorted(by_format["float-quantized"]["targets"]) == sorted(attention)
            assert "model.layers.0.mlp.down_proj" in by_format["nvfp4-pack-quantized"]["targets"]
    # Routed experts in one format: ModelOpt names it moe_quant_algo (DeepSeek-V4 NVFP4 style,
    # FP8 elsewhere); experts in two formats, or some left high precision, have no one
    # algorithm to name.
    rng = np.random.default_rng(3)
    experts = {
        f"model.layers.0.mlp.experts.{e}.{p}.weight": (
            rng.standard_normal((128, 256)) * 0.05
        ).astype(BF16)
        for e in range(2)
        for p in ("gate_proj", "up_proj")
    }
    write_model(tmp_path / "moe", [{**source, **experts}])
    for format_for, moe_algorithm in (
        (["--format-for", "experts=nvfp4"], "NVFP4"),
        (["--format-for", r"experts\.0=nvfp4", "--format-for", "self_attn=fp8"], None),
        (["--format-for", "experts=nvfp4", "--ignore", r"experts\.1\."], "kept"),
    ):
        out = tmp_path / f"moe-{moe_algorithm}"
        result = run(
            "convert", str(tmp_path / "moe"), str(out), "--to", "fp8-block",
            *format_for, "--convention", "modelopt",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        config = json.loads((out / "config.json").read_text())["quantization_config"]
        hf = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
        for document in (config, hf):
            assert document["quant_algo"] == "MIXED_PRECISION"
            assert document.get("moe_quant_algo") == (
                None if moe_algorithm == "kept" else moe_algorithm
            )
        loaded = breccia.checkpoint.load(out)
        assert loaded["model.layers.0.mlp.experts.0.up_proj.weight"].recipe == (
            breccia.NVFP4BlockScaling()
        )
    for args, message in (
        (["--to", "bf16", "--format-for", "mlp=fp8"], "mixed formats need a quantized target"),
        (["--to", "nvfp4", "--format-for", "mlp=bf16"], "expected a quantized format"),
        (["--to", "fp8-block", "--format-for", "mlp=nvfp4"], "cannot hold nvfp4"),
        (["--to", "nvfp4", "--format-for", "(=fp8"], "not a valid regular expression"),
        (["--to", "nvfp4", "--format-for", "mlp"], "REGEX=FORMAT"),
    ):
        result = CliRunner().invoke(
            main, ["convert", str(tmp_path / "src"), str(tmp_path / "x"), *args]
        )
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert not (tmp_path / "x").exists()
