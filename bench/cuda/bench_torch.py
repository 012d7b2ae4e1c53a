#!/usr/bin/env python3
"""PyTorch baselines for bench/cuda/bench_cuda.cu, on the same shapes: torch.compile'd
quantizers for each recipe (16384 x 16384 bf16, rowwise), a device-to-device copy (so the two
programs' tables can be put side by side by their copy rows), torch._scaled_mm for the FP8
GEMMs (per-tensor 8192^3; blockwise and rowwise at the DeepSeek shapes, use_fast_accum both
ways) and dequantize + bf16 torch.matmul. torch is used for baselines only;
bench/cuda/bench_gemm.py runs breccia's GEMMs beside cuBLASLt's in one process."""

import torch

torch.backends.cuda.matmul.allow_tf32 = False
dev = "cuda"
E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def median_ms(fn, warmup=3, repeats=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def row(name, ms, rate, unit, ratio):
    print(f"| {name:<46} | {ms:8.3f} | {rate:9.1f} {unit:<7} | {ratio:5.2f} |")


def per_tensor(x):
    amax = x.abs().amax().float()
    s = torch.where((amax == 0) | ~torch.isfinite(amax), 1.0, 448.0 / amax)
    return (x.float() * s).clamp(-448, 448).to(E4M3), 1.0 / s


def delayed(x):
    return per_tensor(x)  # stateless DelayedScaling (margin 0) is current scaling's formula


def block_1x128(x):
    b = x.float().view(x.shape[0], -1, 128)
    amax = b.abs().amax(-1, keepdim=True)
    s = torch.where(amax == 0, 1.0, 448.0 / amax)
    s = torch.exp2(torch.floor(torch.log2(s)))
    return (b * s).clamp(-448, 448).to(E4M3).view(x.shape), (1.0 / s).squeeze(-1)


def block_128x128(x):
    m, k = x.shape
    b = x.float().view(m // 128, 128, k // 128, 128)
    amax = b.abs().amax((1, 3), keepdim=True)
    s = torch.where(amax == 0, 1.0, 448.0 / amax)
    s = torch.exp2(torch.floor(torch.log2(s)))
    return (b * s).clamp(-448, 448).to(E4M3).view(x.shape), (1.0 / s).view(m // 128, k // 128)


def mxfp8_floor(x):
    b = x.float().view(x.shape[0], -1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    e = torch.floor(torch.log2(amax)).clamp(-127, 127) - 8
    return (b * torch.exp2(-e)).clamp(-448, 448).to(E4M3).view(x.shape), (e + 127).to(torch.uint8)


def mxfp8_rceil(x):
    b = x.float().view(x.shape[0], -1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    e = torch.ceil(torch.log2(amax * (1.0 / 448.0))).clamp(-127, 127)
    return (b * torch.exp2(-e)).clamp(-448, 448).to(E4M3).view(x.shape), (e + 127).to(torch.uint8)


def _e2m1_codes(q):
    mag = q.abs()
    code = (
        (mag > 0.25).int()
        + (mag >= 0.75).int()
        + (mag > 1.25).int()
        + (mag >= 1.75).int()
        + (mag > 2.5).int()
        + (mag >= 3.5).int()
        + (mag > 5).int()
    )
    return code | ((q < 0).int() << 3)


def _pack(code, shape):
    code = code.reshape(shape[0], -1, 2)
    return (code[..., 0] | (code[..., 1] << 4)).to(torch.uint8)


def nvfp4(x):
    g = x.abs().amax().float()
    s_enc = 2688.0 / g
    b = x.float().view(x.shape[0], -1, 16)
    sd = (b.abs().amax(-1, keepdim=True) * (s_enc / 6)).clamp(max=448).to(E4M3)
    q = (b * (s_enc / sd.float())).clamp(-6, 6)
    return _pack(_e2m1_codes(q), x.shape), sd


def nvfp4_two_d(x):
    m, k = x.shape
    g = x.abs().amax().float()
    s_enc = 2688.0 / g
    b = x.float().view(m // 16, 16, k // 16, 16)
    sd = (b.abs().amax((1, 3), keepdim=True) * (s_enc / 6)).clamp(max=448).to(E4M3)
    q = (b * (s_enc / sd.float())).clamp(-6, 6)
    return _pack(_e2m1_codes(q).view(m, k), x.shape), sd.expand(-1, 16, -1, 1).reshape(m, k // 16)


def int4_g128(x):
    b = x.float().view(x.shape[0], -1, 128)
    s = (b.abs().amax(-1, keepdim=True) / 7.5).half().float()
    q = torch.round(b / s).clamp(-8, 7).int() & 0xF
    return _pack(q, x.shape), s.half()


def int4_g128_unsigned(x):
    b = x.float().view(x.shape[0], -1, 128)
    lo = b.amin(-1, keepdim=True).clamp(max=0)
    hi = b.amax(-1, keepdim=True).clamp(min=0)
    s = ((hi - lo) / 15).clamp(min=1e-5).half().float()
    z = torch.round(-lo / s).clamp(0, 15)
    q = (torch.round(b / s) + z).clamp(0, 15).int()
    return _pack(q, x.shape), s.half(), z.to(torch.uint8)


def both_axes(rowwise):
    """Rowwise and columnwise (blocks down the columns) from one compiled function."""

    def fn(x):
        return rowwise(x), rowwise(x.t().contiguous())

    return fn


def main():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, PyTorch {torch.__version__}, CUDA {torch.version.cuda}")
    print("| torch baseline | ms | rate | vs copy |\n|---|---|---|---|")
    x = torch.randn(16384, 16384, device=dev, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    copy_ms = median_ms(lambda: y.copy_(x))
    copy_gbs = 2 * x.nbytes / copy_ms / 1e6
    row("device-to-device copy, 16384^2 bf16", copy_ms, copy_gbs, "GB/s", 1.0)
    recipes = [
        ("Float8CurrentScaling E4M3", per_tensor),
        ("DelayedScaling E4M3 (stateless)", delayed),
        ("Float8BlockScaling 1x128", block_1x128),
        ("Float8BlockScaling 128x128", block_128x128),
        ("MXFP8 E4M3 floor", mxfp8_floor),
        ("MXFP8 E4M3 rceil", mxfp8_rceil),
        ("NVFP4", nvfp4),
        ("NVFP4 two_d", nvfp4_two_d),
        ("INT4 g128 signed", int4_g128),
        ("INT4 g128 unsigned", int4_g128_unsigned),
    ]
    cases = [(f"{name} rowwise", fn) for name, fn in recipes]
    cases += [
        (f"{name} both", both_axes(fn))
        for name, fn in recipes
        if name in ("Float8BlockScaling 1x128", "MXFP8 E4M3 floor", "NVFP4")
    ]
    for name, fn in cases:
        compiled = torch.compile(fn)
        outputs = compiled(x)
        ms = median_ms(lambda: compiled(x))  # noqa: B023
        flat = [t for t in torch.utils._pytree.tree_leaves(outputs) if isinstance(t, torch.Tensor)]
        gbs = (x.nbytes + sum(t.nbytes for t in flat)) / ms / 1e6
        row(f"torch.compile {name}", ms, gbs, "GB/s", gbs / copy_gbs)

    gemm_baselines()


def _timed_row(name, fn, flops, warmup=3, repeats=10):
    ms = median_ms(fn, warmup, repeats)
    row(name, ms, flops / ms / 1e9, "TFLOP/s", flops / ms / 1e9 / PEAK)


def gemm_baselines():
    print("| torch GEMM | ms | rate | vs FP8 peak |\n|---|---|---|---|")
    m = n = k = 8192
    a = torch.randn(m, k, device=dev).to(E4M3)
    b = torch.randn(n, k, device=dev).to(E4M3).t()
    one = torch.ones((), device=dev)
    for fast in (False, True):
        _timed_row(
            f"torch._scaled_mm e4m3 fast_accum={fast} 8192^3",
            lambda fast=fast: torch._scaled_mm(
                a, b, one, one, out_dtype=torch.bfloat16, use_fast_accum=fast
            ),
            2 * m * n * k,
        )
    for m, n, k in DEEPSEEK:
        blockwise_baselines(m, n, k)
    for m, n, k in [(8192, 8192, 8192), *DEEPSEEK]:
        emulated_baselines(m, n, k)


DEEPSEEK = [
    (m, n, k)
    for m in (128, 4096)
    for n, k in ((2112, 7168), (7168, 16384), (4096, 7168), (24576, 1536))
]


def blockwise_baselines(m, n, k):
    flops = 2 * m * n * k
    a = torch.randn(m, k, device=dev).to(E4M3)
    w = torch.randn(n, k, device=dev).to(E4M3)
    sa = torch.rand(m, k // 128, device=dev) + 0.5
    sw = torch.rand((n + 127) // 128, k // 128, device=dev) + 0.5

    def dequant_matmul():
        ad = (a.float().view(m, -1, 128) * sa[..., None]).view(m, k).bfloat16()
        wd = w.float().view(n, -1, 128) * sw.repeat_interleave(128, 0)[:n, :, None]
        return ad @ wd.view(n, k).bfloat16().t()

    _timed_row(f"dequant+bf16 matmul {m}x{n}x{k}", dequant_matmul, flops, 2, 5)
    sa_t = sa.t().contiguous().t()  # (M, K/128) M-major, as cuBLASLt's 1x128 mode wants
    sw_t = sw.t()  # (K/128, ceil(N/128)) with strides (1, K/128)
    for fast in (False, True):
        try:
            _timed_row(
                f"torch._scaled_mm blockwise fast_accum={fast} {m}x{n}x{k}",
                lambda fast=fast: torch._scaled_mm(
                    a, w.t(), sa_t, sw_t, out_dtype=torch.bfloat16, use_fast_accum=fast
                ),
                flops,
            )
        except Exception as error:  # this PyTorch or cuBLASLt lacks the mode
            reason = str(error).splitlines()[0][:80]
            print(f"| torch._scaled_mm blockwise fast_accum={fast} {m}x{n}x{k} | {reason} |")
    ra = torch.rand(m, 1, device=dev) + 0.5
    rw = torch.rand(1, n, device=dev) + 0.5
    for fast in (False, True):
        _timed_row(
            f"torch._scaled_mm rowwise fast_accum={fast} {m}x{n}x{k}",
            lambda fast=fast: torch._scaled_mm(
                a, w.t(), ra, rw, out_dtype=torch.bfloat16, use_fast_accum=fast
            ),
            flops,
        )


def _mx_dequant(q, e8m0, rows, cols):
    """(rows, cols) E4M3 codes with one E8M0 scale per 32 along cols -> bf16."""
    scale = torch.exp2(e8m0.float() - 127)
    return (q.float().view(rows, -1, 32) * scale[..., None]).view(rows, cols).bfloat16()


_E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def _nvfp4_dequant(packed, sd, g, rows, cols, table):
    codes = torch.stack((packed & 0xF, packed >> 4), -1).view(rows, cols).long()
    values = table[codes].view(rows, -1, 16) * (sd.float() * g)[..., None]
    return values.view(rows, cols).bfloat16()


def _int4_dequant(packed, scale, rows, cols):
    q = torch.stack((packed & 0xF, packed >> 4), -1).view(rows, cols).to(torch.int8)
    q = torch.where(q > 7, q - 16, q).float()
    return (q.view(rows, -1, 128) * scale.float()[..., None]).view(rows, cols).bfloat16()


def emulated_baselines(m, n, k):
    """Dequantize (eager PyTorch) + bf16 torch.matmul, for the formats breccia emulates. The
    weights are (N, K) with blocks along K, so the product is a @ w.t()."""
    flops = 2 * m * n * k
    qa = torch.randn(m, k, device=dev).to(E4M3)
    qw = torch.randn(n, k, device=dev).to(E4M3)
    ea = torch.randint(120, 130, (m, k // 32), device=dev, dtype=torch.uint8)
    ew = torch.randint(120, 130, (n, k // 32), device=dev, dtype=torch.uint8)
    _timed_row(
        f"dequant+bf16 matmul mxfp8 {m}x{n}x{k}",
        lambda: _mx_dequant(qa, ea, m, k) @ _mx_dequant(qw, ew, n, k).t(),
        flops,
        2,
        5,
    )
    table = torch.tensor(_E2M1, device=dev)
    pa = torch.randint(0, 256, (m, k // 2), device=dev, dtype=torch.uint8)
    pw = torch.randint(0, 256, (n, k // 2), device=dev, dtype=torch.uint8)
    sda = (torch.rand(m, k // 16, device=dev) * 400 + 1).to(E4M3)
    sdw = (torch.rand(n, k // 16, device=dev) * 400 + 1).to(E4M3)
    g = torch.tensor(1e-3, device=dev)
    _timed_row(
        f"dequant+bf16 matmul nvfp4 {m}x{n}x{k}",
        lambda: (
            _nvfp4_dequant(pa, sda, g, m, k, table) @ _nvfp4_dequant(pw, sdw, g, n, k, table).t()
        ),
        flops,
        2,
        5,
    )
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    scale = (torch.rand(n, k // 128, device=dev) + 0.5).half()
    _timed_row(
        f"dequant+bf16 matmul W4A16 int4 g128 {m}x{n}x{k}",
        lambda: x @ _int4_dequant(pw, scale, n, k).t(),
        flops,
        2,
        5,
    )


PEAK = 1979.0  # dense FP8 TFLOP/s of Hopper SXM (H100, H200)


if __name__ == "__main__":
    main()
