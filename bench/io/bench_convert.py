#!/usr/bin/env python3
"""``breccia convert`` of a multi-GB synthetic checkpoint beside ``cp`` and the script people use.

Writes (once) a bf16 model directory of ``--gb`` gigabytes in shards of about 2 GB: DeepSeek-like
MLP and attention weight matrices (7168-wide, random normal), a norm, an embedding and a
config.json, and its FP8 128x128 conversion. Then, with the page cache warm (each input read
once before each timed run), in one process on one machine, every job ``--repeats`` times,
interleaved so that drifts of the machine touch them all alike:

- ``cp -r`` of the directory, then ``sync`` of the files it wrote (breccia flushes each shard
  before renaming it): the disk-bound floor;
- ``breccia.checkpoint.convert`` to FP8 128x128 blocks (DeepSeek-V3 convention), and back from
  those blocks to bf16;
- the bf16 -> FP8 128x128 job as people do it today: the ``safetensors`` package and PyTorch
  CPU (amax per block, scale = amax / 448, ``.to(float8_e4m3fn)``), and, with
  ``--llmcompressor PYTHON``, llm-compressor's ``model_free_ptq`` with its FP8_BLOCK scheme (run
  in that Python's own environment, bench/io/llmcompressor-env.sh makes one; on a CPU it takes
  the shards one after another whatever its ``max_workers``, PyTorch's threads doing the work);
- the FP8 -> bf16 job as people do it today without a GPU: DeepSeek's ``weight_dequant``
  formula per 128x128 block (``fp8_cast_bf16.py`` ported to the CPU) with ``safetensors`` and
  PyTorch, every shard loaded, dequantized and saved.

Prints a Markdown table: median and range of seconds, bytes read and written, their rate over
cp's (a conversion reads and writes different amounts; cp moves its input twice), and
breccia's speed over each other tool's. docs/performance.md records it, with the machine.

    python bench/io/bench_convert.py [--gb 4] [--dir build/bench-convert] [--threads N]
        [--device cuda] [--repeats 3] [--llmcompressor build/llmcompressor-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
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


# Runs llm-compressor's model-free PTQ (FP8 128 x 128 blocks) in its own environment and prints
# the seconds of the call alone (its import takes several seconds more).
LLMCOMPRESSOR_JOB = """
import sys, time
from llmcompressor import model_free_ptq
started = time.perf_counter()
model_free_ptq(model_stub=sys.argv[1], save_directory=sys.argv[2], scheme="FP8_BLOCK",
               ignore=["lm_head", "model.embed_tokens"], max_workers=1, device="cpu")
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--dir", type=Path, default=Path("build/bench-convert"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each job; medians shown")
    parser.add_argument("--device", default="cpu", help="where breccia casts: cpu, cuda, cuda:N")
    parser.add_argument(
        "--llmcompressor",
        metavar="PYTHON",
        help="a Python with llmcompressor installed (bench/io/llmcompressor-env.sh makes one)",
    )
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
        f"{args.threads} threads, breccia on {args.device}; breccia {breccia.__version__}, "
        f"torch {torch.__version__}; "
        f"median of {args.repeats} runs, jobs interleaved"
    )
    fp8 = work / "fp8-block"
    if not (fp8 / "config.json").exists():  # written last: an interrupted one is redone
        checkpoint.convert(source, fp8, "fp8-block", overwrite=True)

    def copy(path: Path) -> Callable[[], float]:
        def run() -> None:
            target = fresh(work / "out")
            subprocess.run(["cp", "-r", str(path), str(target)], check=True)
            # Flushed to the disk, as breccia flushes each shard before renaming it.
            subprocess.run(["sync", *map(str, target.iterdir())], check=True)

        return lambda: timed(run)

    def in_process(run: Callable[[Path], object]) -> Callable[[], float]:
        return lambda: timed(lambda: run(fresh(work / "out")))

    def llmcompressor() -> float:
        job = [args.llmcompressor, "-c", LLMCOMPRESSOR_JOB, str(source), str(fresh(work / "out"))]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(job, check=True, capture_output=True, text=True, env=env)
        return float(done.stdout.split()[-1])

    # (label, source, timed run); each run writes work/out, measured before the next run.
    jobs: list[tuple[str, Path, Callable[[], float]]] = [
        ("cp -r + sync (bf16 source)", source, copy(source)),
        (
            "breccia convert --to fp8-block (bf16 -> FP8 128x128)",
            source,
            in_process(
                lambda out: checkpoint.convert(source, out, "fp8-block", device=args.device)
            ),
        ),
        (
            "safetensors + PyTorch script (bf16 -> FP8 128x128)",
            source,
            in_process(lambda out: script_quantize(source, out)),
        ),
    ]
    if args.llmcompressor:
        jobs.append(
            ("llm-compressor model_free_ptq FP8_BLOCK (bf16 -> FP8 128x128)", source, llmcompressor)
        )
    jobs += [
        ("cp -r + sync (FP8 source)", fp8, copy(fp8)),
        (
            "breccia convert --to bf16 (FP8 128x128 -> bf16)",
            fp8,
            in_process(lambda out: checkpoint.convert(fp8, out, "bf16", device=args.device)),
        ),
        (
            "DeepSeek's weight_dequant, safetensors + PyTorch script (FP8 128x128 -> bf16)",
            fp8,
            in_process(lambda out: script_dequantize(fp8, out)),
        ),
    ]
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in jobs}
    written: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, job_source, run in jobs:
            warm(job_source)
            seconds[label].append(run())
            written[label] = directory_bytes(work / "out")
            shutil.rmtree(work / "out")

    def median(label: str) -> float:
        return statistics.median(seconds[label])

    def rate(label: str, job_source: Path) -> float:
        return (directory_bytes(job_source) + written[label]) / median(label) / 1e9

    print(
        f"\nsource {directory_bytes(source) / 1e9:.2f} GB bf16, "
        f"{directory_bytes(fp8) / 1e9:.2f} GB as FP8 blocks\n"
    )
    print(
        "| job | s (median) | s (range) | GB read | GB written | GB/s read + written "
        "| vs cp | breccia's speed-up over it |"
    )
    print("|---|---|---|---|---|---|---|---|")
    cp_rate = 0.0
    ours = 0.0
    for label, job_source, _ in jobs:
        if label.startswith("cp -r"):
            cp_rate = rate(label, job_source)
        if label.startswith("breccia"):
            ours = median(label)
        versus = f"{median(label) / ours:.1f}x" if not label.startswith(("cp", "breccia")) else ""
        print(
            f"| {label} | {median(label):.2f} | {min(seconds[label]):.2f}-"
            f"{max(seconds[label]):.2f} | {directory_bytes(job_source) / 1e9:.2f} "
            f"| {written[label] / 1e9:.2f} | {rate(label, job_source):.2f} "
            f"| {rate(label, job_source) / cp_rate:.2f} | {versus} |"
        )


if __name__ == "__main__":
    main()
