"""CPU kernels beside their baselines, in one process on one machine.

For every recipe: cast (fp32 and bf16 in) and dequantize (to fp32 and bf16), as effective
bandwidth (bytes read + bytes written) over a same-run copy of the input; per-tensor FP8 also
beside the same job in ml_dtypes (amax, scale, astype) and PyTorch CPU (all threads); the block
recipes beside a NumPy + ml_dtypes implementation of the recipe; ``breccia.linear`` of 1 and 16
rows against a 4096 x 4096 quantized weight (the decoding kernel) beside NumPy's fp32 product
with the dequantized weight (BLAS GEMV/GEMM; the weight held in fp32, 4-8x the bytes) and
PyTorch's ``F.linear`` of it. All threads, then one.

    python bench/cpu/bench_cpu.py [--rows 8192] [--cols 4096] [--repeats 7]

Prints Markdown tables (docs/performance.md records them, with the machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import torch

import breccia


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up: page faults, first-touch of the outputs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def nbytes(value: Any) -> int:
    if isinstance(value, breccia.ScaledTensor):
        total = value.data.nbytes + value.scale.nbytes
        for extra in (value.global_scale, value.zero_point):
            if extra is not None:
                total += extra.nbytes
        return total
    return int(value.nbytes)


def copy_seconds(x: np.ndarray, repeats: int, threads: int) -> float:
    """The faster of NumPy's copy and PyTorch's (threaded) copy of x."""
    out = np.empty_like(x)
    numpy_copy = median_seconds(lambda: np.copyto(out, x), repeats)
    torch.set_num_threads(threads)
    tx, tout = torch.from_numpy(x), torch.from_numpy(out)
    torch_copy = median_seconds(lambda: tout.copy_(tx), repeats)
    return min(numpy_copy, torch_copy)


def numpy_block_fp8(x: np.ndarray, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Float8BlockScaling 1 x 128 written with NumPy and ml_dtypes."""
    blocks = x.reshape(x.shape[0], -1, block)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    scale = np.where(amax > 0, np.float32(448.0) / amax, np.float32(1.0)).astype(np.float32)
    codes = (blocks * scale).astype(ml_dtypes.float8_e4m3fn)
    return codes.reshape(x.shape), (1.0 / scale[..., 0]).astype(np.float32)


def numpy_mxfp8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MXFP8 (E4M3, floor) written with NumPy and ml_dtypes."""
    blocks = x.reshape(x.shape[0], -1, 32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    exponent = np.floor(np.log2(np.maximum(amax, np.float32(2.0**-126)))) - 8
    factor = np.exp2(-exponent).astype(np.float32)
    codes = (blocks * factor).astype(ml_dtypes.float8_e4m3fn)
    return codes.reshape(x.shape), (exponent[..., 0] + 127).astype(np.uint8)


def per_tensor_ml_dtypes(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max()
    return (x * np.float32(448.0 / amax)).astype(ml_dtypes.float8_e4m3fn)


def per_tensor_torch(x: torch.Tensor) -> torch.Tensor:
    amax = x.abs().max()
    return (x * (448.0 / amax)).to(torch.float8_e4m3fn)


RECIPES: list[tuple[str, breccia.ScalingRecipe]] = [
    ("Float8CurrentScaling E4M3", breccia.Float8CurrentScaling()),
    ("Float8BlockScaling 1x128", breccia.Float8BlockScaling()),
    ("Float8BlockScaling 128x128", breccia.Float8BlockScaling(block_m=128)),
    ("MXFP8 E4M3", breccia.MXFP8BlockScaling()),
    ("MXFP6 E2M3", breccia.MXFP6BlockScaling()),
    ("MXFP4", breccia.MXFP4BlockScaling()),
    ("NVFP4", breccia.NVFP4BlockScaling()),
    ("INT4 g128 signed", breccia.INT4Scaling()),
    ("INT4 g128 unsigned", breccia.INT4Scaling(signed=False)),
]


def row(name: str, seconds: float, moved: int, copy_rate: float, extra: str = "") -> None:
    rate = moved / seconds / 1e9
    print(f"| {name} | {seconds * 1e3:.1f} | {rate:.2f} | {rate / copy_rate:.2f} | {extra} |")


def run(rows: int, cols: int, repeats: int, threads: int) -> None:
    breccia.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((rows, cols), dtype=np.float32)
    xbf = x32.astype(ml_dtypes.bfloat16)
    copy = copy_seconds(x32, repeats, threads)
    copy_rate = 2 * x32.nbytes / copy / 1e9
    print(f"\n### {threads} thread(s): {rows} x {cols}, copy {copy_rate:.2f} GB/s (read + write)\n")
    print("| case | ms | GB/s | vs copy | vs baseline |")
    print("|---|---|---|---|---|")
    elements = x32.size
    for name, recipe in RECIPES:
        for label, x in (("fp32", x32), ("bf16", xbf)):
            st = breccia.cast(x, recipe)
            seconds = median_seconds(lambda x=x, recipe=recipe: breccia.cast(x, recipe), repeats)
            extra = f"{elements / seconds / 1e9:.2f} Gelem/s"
            if label == "fp32" and name == "Float8CurrentScaling E4M3":
                ml = median_seconds(lambda: per_tensor_ml_dtypes(x32), repeats)
                tx = torch.from_numpy(x32)
                pt = median_seconds(lambda tx=tx: per_tensor_torch(tx), repeats)
                extra += f"; {ml / seconds:.1f}x ml_dtypes, {pt / seconds:.1f}x PyTorch"
            elif label == "fp32" and name == "Float8BlockScaling 1x128":
                ml = median_seconds(lambda: numpy_block_fp8(x32), repeats)
                extra += f"; {ml / seconds:.1f}x NumPy+ml_dtypes"
            elif label == "fp32" and name == "MXFP8 E4M3":
                ml = median_seconds(lambda: numpy_mxfp8(x32), repeats)
                extra += f"; {ml / seconds:.1f}x NumPy+ml_dtypes"
            row(f"cast {name} ({label} in)", seconds, x.nbytes + nbytes(st), copy_rate, extra)
        st = breccia.cast(x32, recipe)
        for out in (np.float32, ml_dtypes.bfloat16):
            result = breccia.dequantize(st, out)
            seconds = median_seconds(lambda st=st, out=out: breccia.dequantize(st, out), repeats)
            label = np.dtype(out).name
            row(
                f"dequantize {name} (to {label})",
                seconds,
                nbytes(st) + result.nbytes,
                copy_rate,
                f"{elements / seconds / 1e9:.2f} Gelem/s",
            )


def linear_rows(threads: int, repeats: int) -> None:
    """Decoding: a few rows of x through a quantized (N, K) weight."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    print(f"\n#### linear, weight 4096 x 4096, {threads} thread(s)\n")
    print("| case | rows | breccia ms | NumPy fp32 ms | PyTorch fp32 ms | vs NumPy | vs PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for name, recipe in LINEAR_RECIPES:
        qw = breccia.cast(w, recipe)
        wd = breccia.dequantize(qw)
        twd = torch.from_numpy(wd)
        for rows in (1, 16):
            x = rng.standard_normal((rows, 4096), dtype=np.float32)
            tx = torch.from_numpy(x)
            # BLAS threads spin for a while after a call; let them sleep before timing breccia.
            ours = median_seconds(lambda x=x, qw=qw: breccia.linear(x, qw), repeats)
            time.sleep(0.3)
            blas = median_seconds(lambda x=x, wd=wd: x @ wd.T, repeats)
            time.sleep(0.3)
            with torch.inference_mode():
                pt = median_seconds(
                    lambda tx=tx, twd=twd: torch.nn.functional.linear(tx, twd), repeats
                )
            time.sleep(0.3)
            print(
                f"| {name} | {rows} | {ours * 1e3:.2f} | {blas * 1e3:.2f} | {pt * 1e3:.2f} "
                f"| {blas / ours:.2f} | {pt / ours:.2f} |"
            )


LINEAR_RECIPES = [
    ("FP8 per tensor", breccia.Float8CurrentScaling()),
    ("FP8 128x128", breccia.Float8BlockScaling(block_m=128)),
    ("MXFP8", breccia.MXFP8BlockScaling()),
    ("MXFP4", breccia.MXFP4BlockScaling()),
    ("NVFP4", breccia.NVFP4BlockScaling()),
    ("INT4 g128 signed", breccia.INT4Scaling()),
    ("INT4 g128 unsigned", breccia.INT4Scaling(signed=False)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--linear-only", action="store_true", help="only the linear rows")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"CPU: {platform.processor() or platform.machine()}, {cores} cores")
    print(f"breccia SIMD target: {breccia._core.simd_target()}, torch {torch.__version__}")
    for threads in (cores, 1) if cores > 1 else (1,):
        breccia.set_num_threads(threads)
        torch.set_num_threads(threads)
        if not args.linear_only:
            run(args.rows, args.cols, args.repeats, threads)
        linear_rows(threads, 4 * args.repeats)


if __name__ == "__main__":
    main()
