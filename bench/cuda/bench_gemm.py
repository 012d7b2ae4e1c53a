#!/usr/bin/env python3
"""breccia's FP8 GEMMs beside cuBLASLt (torch._scaled_mm) in one process, on the same bytes.

For each shape (M, N, K) a bf16 activation x (M, K) and weight w (N, K) are cast once with
breccia; both libraries then multiply those very bytes:
- DeepSeek block FP8 (x 1x128, w 128x128): ``breccia.linear`` against ``torch._scaled_mm``'s
  blockwise mode (A's scales M-major (M, K/128) with strides (1, M); B's (K/128, ceil(N/128))
  with strides (1, K/128), the transposed view of the weight's row-major scales);
- per-tensor FP8 at 8192^3, against ``torch._scaled_mm`` with use_fast_accum both ways;
- rowwise FP8 (torch only, for reference: breccia has no rowwise kernel yet) and bf16
  ``torch.matmul``;
- with ``--triton``, breccia's portable Triton kernel (``breccia.kernels.triton``) on the same
  bytes beside the CUDA kernel and cuBLASLt.
Each case is timed eagerly (what a Python caller pays, host path included) and, where the
library allows capture, as a CUDA-graph replay (the kernel alone). Medians; the ratio is
breccia's speed over cuBLASLt's. Outputs are checked to agree (max relative difference).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_torch import median_ms  # the baselines' timer (this folder)

import breccia

E4M3 = torch.float8_e4m3fn
PEAK = 1979.0  # dense FP8 TFLOP/s of Hopper SXM (H100, H200)
DEEPSEEK_NK = [(2112, 7168), (7168, 16384), (4096, 7168), (24576, 1536), (7168, 2048)]


def graph_ms(fn: Callable[[], object]) -> float | None:
    """The median time of replaying `fn` captured in a CUDA graph (None: capture refused)."""
    try:
        fn()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return median_ms(graph.replay)
    except Exception:  # capture refused: the library synchronizes or allocates outside it
        torch.cuda.synchronize()
        return None


def tflops(m: int, n: int, k: int, ms: float | None) -> str:
    return "-" if ms is None else f"{2 * m * n * k / ms / 1e9:7.1f}"


def ms_text(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.4f}"


def ratio(baseline_ms: float | None, ours_ms: float | None) -> str:
    """breccia's speed over the baseline's."""
    return "-" if baseline_ms is None or ours_ms is None else f"{baseline_ms / ours_ms:.2f}"


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def print_row(
    case: str,
    mnk: tuple[int, int, int],
    eager_ours: float,
    eager_cublas: float | None,
    graph_ours: float | None,
    graph_cublas: float | None,
    diff: str,
) -> None:
    print(
        f"| {case} | {ms_text(eager_ours)} | {ms_text(eager_cublas)} "
        f"| {ratio(eager_cublas, eager_ours)} | {ms_text(graph_ours)} | {ms_text(graph_cublas)} "
        f"| {ratio(graph_cublas, graph_ours)} | {tflops(*mnk, graph_ours or eager_ours)} "
        f"| {diff} |",
        flush=True,
    )


def scaled_mm_operands(qx: breccia.ScaledTensor, qw: breccia.ScaledTensor) -> tuple:
    """(a, b, scale_a, scale_b) of torch._scaled_mm for activation qx (M, K) and weight qw
    (N, K), the very bytes: per-tensor scales as 0-d tensors; DeepSeek blocks in the blockwise
    mode's layouts, A's scales (M, K/128) M-major and B's (K/128, ceil(N/128)) with strides
    (1, K/128), the transposed view of the weight's row-major scales."""
    a, b = qx.data, qw.data.t()
    if isinstance(qx.layout, breccia.PerTensor):
        return a, b, qx.scale.reshape(()), qw.scale.reshape(())
    return a, b, qx.scale.t().contiguous().t(), qw.scale.t()


def block_case(m: int, n: int, k: int) -> None:
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.05
    qx = breccia.cast(x, breccia.Float8BlockScaling())
    qw = breccia.cast(w, breccia.Float8BlockScaling(block_m=128))
    a, b, scale_a, scale_b = scaled_mm_operands(qx, qw)

    def ours() -> torch.Tensor:
        return breccia.linear(qx, qw, out_dtype=torch.bfloat16)

    def cublas() -> torch.Tensor:
        return torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=torch.bfloat16)

    try:
        diff = f"{rel_diff(ours(), cublas()):.1e}"
        eager_cublas: float | None = median_ms(cublas)
        graph_cublas = graph_ms(cublas)
    except RuntimeError as error:  # cuBLASLt refuses some shapes (M = 1, ...)
        diff, eager_cublas, graph_cublas = str(error).split(" when ")[0][:40], None, None
    eager_ours, graph_ours = median_ms(ours), graph_ms(ours)
    print_row(
        f"block 1x128 x 128x128 {m}x{n}x{k}",
        (m, n, k),
        eager_ours,
        eager_cublas,
        graph_ours,
        graph_cublas,
        diff,
    )


def per_tensor_case(m: int, n: int, k: int) -> None:
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.05
    qx = breccia.cast(x, breccia.Float8CurrentScaling())
    qw = breccia.cast(w, breccia.Float8CurrentScaling())
    a, b, sa, sb = scaled_mm_operands(qx, qw)

    def ours() -> torch.Tensor:
        return breccia.linear(qx, qw, out_dtype=torch.bfloat16)

    for fast in (False, True):

        def cublas(fast: bool = fast) -> torch.Tensor:
            return torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16, use_fast_accum=fast)

        diff = f"{rel_diff(ours(), cublas()):.1e}"
        eager_ours, eager_cublas = median_ms(ours), median_ms(cublas)
        graph_ours, graph_cublas = graph_ms(ours), graph_ms(cublas)
        print_row(
            f"per-tensor (cuBLAS fast_accum={fast}) {m}x{n}x{k}",
            (m, n, k),
            eager_ours,
            eager_cublas,
            graph_ours,
            graph_cublas,
            diff,
        )


def reference_rows(m: int, n: int, k: int) -> None:
    """cuBLASLt's rowwise FP8 and bf16 matmul at the shape: what else a user could pick."""
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    a, b = x.to(E4M3), w.to(E4M3).t()
    sa = torch.rand(m, 1, device="cuda") + 0.5
    sb = torch.rand(1, n, device="cuda") + 0.5
    cells = []
    for fast in (False, True):
        try:
            ms = median_ms(
                lambda fast=fast: torch._scaled_mm(
                    a, b, sa, sb, out_dtype=torch.bfloat16, use_fast_accum=fast
                )
            )
            cells.append(f"rowwise fast_accum={fast} {ms:.4f} ms ({tflops(m, n, k, ms)} TFLOP/s)")
        except Exception as error:  # this PyTorch or cuBLASLt lacks rowwise scaling
            cells.append(f"rowwise fast_accum={fast}: {str(error).splitlines()[0][:60]}")
    ms = median_ms(lambda: x @ w.t())
    cells.append(f"bf16 {ms:.4f} ms ({tflops(m, n, k, ms)} TFLOP/s)")
    print(f"| cuBLASLt at {m}x{n}x{k} | " + "; ".join(cells) + " |", flush=True)


def triton_rows(m: int, n: int, k: int) -> None:
    """breccia.kernels.triton beside the CUDA kernel and cuBLASLt, kernels alone (graph replay;
    eager where capture is refused), block FP8 and per-tensor FP8 on the same bytes."""
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.05
    block = breccia.Float8BlockScaling()
    triton_row("block 1x128 x 128x128", x, w, block, breccia.Float8BlockScaling(block_m=128))
    per_tensor = breccia.Float8CurrentScaling()
    triton_row("per-tensor", x, w, per_tensor, per_tensor)


def triton_row(case: str, x: torch.Tensor, w: torch.Tensor, act: object, weight: object) -> None:
    from breccia.kernels import triton as triton_kernels

    (m, k), n = x.shape, w.shape[0]
    qx, qw = breccia.cast(x, act), breccia.cast(w, weight)
    a, b, sa, sb = scaled_mm_operands(qx, qw)

    def ours_triton() -> torch.Tensor:
        return triton_kernels.scaled_matmul_triton(qx, qw.T, out_dtype=torch.bfloat16)

    def ours_cuda() -> torch.Tensor:
        return breccia.linear(qx, qw, out_dtype=torch.bfloat16)

    def cublas() -> torch.Tensor:
        fast = case == "per-tensor"  # cuBLASLt's blockwise mode refuses fast accumulation
        return torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16, use_fast_accum=fast)

    times: list[float | None] = []
    for fn in (ours_triton, ours_cuda, cublas):
        try:
            times.append(graph_ms(fn) or median_ms(fn))
        except RuntimeError:  # cuBLASLt refuses some shapes (blockwise M = 1)
            times.append(None)
    diff = f"{rel_diff(ours_triton(), ours_cuda()):.1e}"
    print(
        f"| Triton {case} {m}x{n}x{k} | {ms_text(times[0])} | {ms_text(times[1])} "
        f"| {ms_text(times[2])} | {ratio(times[2], times[0])} | {ratio(times[1], times[0])} "
        f"| {tflops(m, n, k, times[0])} | {diff} |",
        flush=True,
    )


def profile_host(m: int = 128, n: int = 2112, k: int = 7168, calls: int = 2000) -> None:
    """Where an eager breccia.linear call spends its host time: cProfile over `calls` calls."""
    import cProfile
    import pstats

    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    qx = breccia.cast(x, breccia.Float8BlockScaling())
    qw = breccia.cast(w, breccia.Float8BlockScaling(block_m=128))
    for _ in range(100):
        breccia.linear(qx, qw, out_dtype=torch.bfloat16)
    torch.cuda.synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        breccia.linear(qx, qw, out_dtype=torch.bfloat16)
    profiler.disable()
    torch.cuda.synchronize()
    print(f"\nhost profile of {calls} eager breccia.linear calls at {m}x{n}x{k}:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, nargs="*", default=[1, 16, 64, 128, 512, 4096])
    parser.add_argument("--no-reference", action="store_true", help="skip rowwise and bf16 rows")
    parser.add_argument("--profile", action="store_true", help="only profile the host path")
    parser.add_argument("--triton", action="store_true", help="only the Triton kernel's rows")
    args = parser.parse_args()
    if args.profile:
        profile_host()
        return
    props = torch.cuda.get_device_properties(0)
    print(f"GPU 0: {props.name}, PyTorch {torch.__version__}, CUDA {torch.version.cuda}")
    if args.triton:
        print(
            "| case | Triton ms | breccia CUDA ms | cuBLASLt ms | Triton / cuBLASLt "
            "| Triton / CUDA | Triton TFLOP/s | max rel diff to CUDA |\n"
            "|---|---|---|---|---|---|---|---|"
        )
        for m in args.m:
            for n, k in DEEPSEEK_NK:
                triton_rows(m, n, k)
        triton_rows(8192, 8192, 8192)
        return
    print(
        "| case | breccia ms | cuBLASLt ms | ratio | breccia graph ms | cuBLASLt graph ms "
        "| graph ratio | breccia TFLOP/s | max rel diff |\n|---|---|---|---|---|---|---|---|---|"
    )
    per_tensor_case(8192, 8192, 8192)
    for m in args.m:
        for n, k in DEEPSEEK_NK:
            block_case(m, n, k)
    if not args.no_reference:
        print("\n| baseline | result |\n|---|---|")
        for m in (128, 4096):
            for n, k in DEEPSEEK_NK:
                reference_rows(m, n, k)
        reference_rows(8192, 8192, 8192)


if __name__ == "__main__":
    main()
