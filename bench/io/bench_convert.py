#!/usr/bin/env python3
"""``breccia convert`` of a multi-GB synthetic checkpoint beside ``cp`` and the script people use.

Writes (once) a bf16 model directory of ``--gb`` gigabytes in shards of about 2 GB: DeepSeek-like
MLP and attention weight matrices (7168-wide, random normal), a norm, an embedding and a
config.json. Then, with the page cache warm (each input read once before it is timed), in one
process on one machine:

- ``cp -r`` of the directory: the disk-bound floor;
- ``breccia.checkpoint.convert`` to FP8 128x128 blocks (DeepSeek-V3 convention), and back from
  those blocks to bf16;
- the FP8 -> bf16 job as people do it today without a GPU: the ``safetensors`` package and
  PyTorch CPU, DeepSeek's ``weight_dequant`` formula per 128x128 block (``fp8_cast_bf16.py``
  ported to the CPU), every shard loaded, dequantized and saved;
- the bf16 -> FP8 128x128 job written the same way (amax per block, scale = amax / 448,
  ``.to(float8_e4m3fn)``).

Prints a Markdown table: seconds, bytes read and written, their rate over cp's (a conversion
reads and writes different amounts; cp moves its input twice), and breccia's speed over the
script's. docs/performance.md records it, with the machine.

    python bench/io/bench_convert.py [--gb 4] [--dir build/bench-convert] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import breccia
from breccia import checkpoint

HIDDEN = 7168
SHAPES = {  # one layer's weight matrices, DeepSeek-V3-like (dense MLP)
    "self_attn.q_a_proj.weight": (1536, HIDDEN),
    "self_attn.kv_a_proj_with_mqa.weight": (576, HIDDEN),
    "self_attn.o_proj.weight": (HIDDEN, 2048),
    "mlp.gate_proj.weight": (4096, HIDDEN),
    "mlp.up_proj.weight": (4096, HIDDEN),
    "mlp.down_proj.weight": (HIDDEN, 4096),
}


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def write_source(path: Path, gigabytes: float) -> None:
    """A bf16 model directory of about `gigabytes` GB, shards of about 2 GB, and its index."""
    layer_bytes = sum(2 * n * k for n, k in SHAPES.values())
    layers = max(1, round(gigabytes * 1e9 / layer_bytes))
    path.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": torch.randn(4096, HIDDEN, generator=generator).bfloat16()
    }
    shards: list[dict[str, torch.Tensor]] = []
    for layer in range(layers):
        for name, shape in SHAPES.items():
            weight = torch.randn(shape, generator=generator) * 0.02
            shard[f"model.layers.{layer}.{name}"] = weight.bfloat16()
        shard[f"model.layers.{layer}.input_layernorm.weight"] = torch.ones(HIDDEN).bfloat16()
        if sum(t.nbytes for t in shard.values()) >= 2e9:
            shards.append(shard)
            shard = {}
    if shard:
        shards.append(shard)
    weight_map = {}
    for index, tensors in enumerate(shards):
        name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(path / name))
        weight_map.update(dict.fromkeys(tensors, name))
    total = sum(t.nbytes for s in shards for t in s.values())
    index_document = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index_document))
    (path / "config.json").write_text(json.dumps({"model_type": "deepseek_v3"}))


def warm(path: Path) -> None:
    """Reads every file once so the timed runs find them in the page cache."""
    for file in path.iterdir():
        with open(file, "rb") as stream:
            while stream.read(1 << 24):
                pass


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def script_dequantize(source: Path, destination: Path) -> None:
    """DeepSeek's fp8_cast_bf16.py on the CPU: weight_dequant per 128 x 128 block."""
    destination.mkdir(parents=True)
    for file in sorted(source.glob("*.safetensors")):
        tensors = {}
        with safe_open(str(file), framework="pt") as stream:
            names = list(stream.keys())
            for name in names:
                if name.endswith("_scale_inv"):
                    continue
                tensor = stream.get_tensor(name)
                if tensor.dtype == torch.float8_e4m3fn:
                    # The scale of each element's 128 x 128 block (edge blocks included).
                    scale = stream.get_tensor(name + "_scale_inv")
                    n, k = tensor.shape
                    factors = scale.repeat_interleave(128, 0)[:n].repeat_interleave(128, 1)[:, :k]
                    tensor = (tensor.float() * factors).bfloat16()
                tensors[name] = tensor
        save_file(tensors, str(destination / file.name))


def script_quantize(source: Path, destination: Path) -> None:
    """bf16 -> FP8 128 x 128 blocks (DeepSeek-V3's layout) with safetensors and PyTorch."""
    destination.mkdir(parents=True)
    for file in sorted(source.glob("*.safetensors")):
        tensors = {}
        with safe_open(str(file), framework="pt") as stream:
            for name in stream.keys():  # noqa: SIM118 (safe_open has no __iter__)
                tensor = stream.get_tensor(name)
                if tensor.ndim == 2 and "layers" in name and tensor.shape[0] % 128 == 0:
                    # (rows that 128 does not divide stay bf16 here; breccia pads the edge block)
                    n, k = tensor.shape
                    blocks = tensor.float().view(n // 128, 128, k // 128, 128)
                    amax = blocks.abs().amax(dim=(1, 3), keepdim=True).clamp(min=1e-12)
                    scale = amax / 448.0
                    codes = (blocks / scale).clamp(-448, 448).to(torch.float8_e4m3fn)
                    tensors[name] = codes.view(n, k)
                    tensors[name + "_scale_inv"] = scale.view(n // 128, k // 128)
                else:
                    tensors[name] = tensor
        save_file(tensors, str(destination / file.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--dir", type=Path, default=Path("build/bench-convert"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    breccia.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    work: Path = args.dir
    source = work / "bf16"
    if not source.exists():
        print(f"writing a {args.gb:g} GB bf16 checkpoint to {source} ...", flush=True)
        write_source(source, args.gb)
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads; breccia {breccia.__version__}, torch {torch.__version__}"
    )
    rows = []

    def row(job: str, seconds: float, read: int, written: int, note: str = "") -> None:
        rate = (read + written) / seconds / 1e9
        rows.append(
            f"| {job} | {seconds:.2f} | {read / 1e9:.2f} | {written / 1e9:.2f} | {rate:.2f} "
            f"| {rate / cp_rate:.2f} | {note} |"
        )

    def copy_seconds(path: Path) -> float:
        warm(path)
        target = fresh(work / "cp")
        seconds = timed(lambda: subprocess.run(["cp", "-r", str(path), str(target)], check=True))
        shutil.rmtree(target)
        return seconds

    fp8 = fresh(work / "fp8-block")
    source_bytes = directory_bytes(source)
    cp_bf16 = copy_seconds(source)
    cp_rate = 2 * source_bytes / cp_bf16 / 1e9  # bytes read + written per second
    row("cp -r (bf16 source)", cp_bf16, source_bytes, source_bytes)
    warm(source)
    quantize = timed(lambda: checkpoint.convert(source, fp8, "fp8-block"))
    warm(source)
    script_q = timed(lambda: script_quantize(source, fresh(work / "script-fp8")))
    fp8_bytes = directory_bytes(fp8)
    row(
        "breccia convert --to fp8-block (bf16 -> FP8 128x128)",
        quantize,
        source_bytes,
        fp8_bytes,
        f"{script_q / quantize:.1f}x the safetensors + PyTorch script ({script_q:.2f} s)",
    )
    cp_fp8 = copy_seconds(fp8)
    row("cp -r (FP8 source)", cp_fp8, fp8_bytes, fp8_bytes)
    warm(fp8)
    dequantize = timed(lambda: checkpoint.convert(fp8, fresh(work / "bf16-again"), "bf16"))
    bf16_bytes = directory_bytes(work / "bf16-again")
    warm(fp8)
    script_dq = timed(lambda: script_dequantize(fp8, fresh(work / "script-bf16")))
    row(
        "breccia convert --to bf16 (FP8 128x128 -> bf16)",
        dequantize,
        fp8_bytes,
        bf16_bytes,
        f"{script_dq / dequantize:.1f}x DeepSeek's weight_dequant with safetensors + PyTorch "
        f"({script_dq:.2f} s)",
    )
    print(f"\nsource {source_bytes / 1e9:.2f} GB bf16, {fp8_bytes / 1e9:.2f} GB as FP8 blocks\n")
    print(f"cp -r of the bf16 source: {cp_rate:.2f} GB/s read + written\n")
    print("| job | s | GB read | GB written | GB/s read + written | vs cp | vs the script |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for name in ("fp8-block", "bf16-again", "script-fp8", "script-bf16"):
        shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    main()
