#!/usr/bin/env python3
"""PyTorch baselines for bench/cuda/bench_cuda.cu, on the same shapes: torch.compile'd
quantizers for each recipe (16384 x 16384 bf16, rowwise), a device-to-device copy (so the two
programs' tables can be put side by side by their copy rows), torch._scaled_mm for the FP8
GEMMs (per-tensor 8192^3; block-wise where this PyTorch supports it) and dequantize + bf16
torch.matmul. torch is used for baselines only."""
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


def block_1x128(x):
    b = x.float().view(x.shape[0], -1, 128)
    amax = b.abs().amax(-1, keepdim=True)
    s = torch.where(amax == 0, 1.0, 448.0 / amax)
    s = torch.exp2(torch.floor(torch.log2(s)))
    return (b * s).clamp(-448, 448).to(E4M3).view(x.shape), (1.0 / s).squeeze(-1)


def mxfp8_floor(x):
    b = x.float().view(x.shape[0], -1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    e = torch.floor(torch.log2(amax)).clamp(-127, 127) - 8
    return (b * torch.exp2(-e)).clamp(-448, 448).to(E4M3).view(x.shape), (e + 127).to(torch.uint8)


def nvfp4(x):
    g = x.abs().amax().float()
    s_enc = 2688.0 / g
    b = x.float().view(x.shape[0], -1, 16)
    sd = (b.abs().amax(-1, keepdim=True) * (s_enc / 6)).clamp(max=448).to(E4M3)
    q = (b * (s_enc / sd.float())).clamp(-6, 6)
    mag = q.abs()
    code = (mag > 0.25).int() + (mag >= 0.75).int() + (mag > 1.25).int() + (mag >= 1.75).int() \
        + (mag > 2.5).int() + (mag >= 3.5).int() + (mag > 5).int()
    code = code | ((q < 0).int() << 3)
    code = code.view(x.shape[0], -1, 2)
    return (code[..., 0] | (code[..., 1] << 4)).to(torch.uint8), sd


def int4_g128(x):
    b = x.float().view(x.shape[0], -1, 128)
    s = (b.abs().amax(-1, keepdim=True) / 7.5).half().float()
    q = torch.round(b / s).clamp(-8, 7).int() & 0xF
    q = q.view(x.shape[0], -1, 2)
    return (q[..., 0] | (q[..., 1] << 4)).to(torch.uint8), s.half()


def main():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, PyTorch {torch.__version__}, CUDA {torch.version.cuda}")
    print("| torch baseline | ms | rate | vs copy |\n|---|---|---|---|")
    x = torch.randn(16384, 16384, device=dev, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    copy_ms = median_ms(lambda: y.copy_(x))
    copy_gbs = 2 * x.nbytes / copy_ms / 1e6
    row("device-to-device copy, 16384^2 bf16", copy_ms, copy_gbs, "GB/s", 1.0)
    for name, fn in [("Float8CurrentScaling E4M3", per_tensor), ("Float8BlockScaling 1x128", block_1x128),
                     ("MXFP8 E4M3 floor", mxfp8_floor), ("NVFP4", nvfp4), ("INT4 g128 signed", int4_g128)]:
        compiled = torch.compile(fn)
        q, s = compiled(x)
        ms = median_ms(lambda: compiled(x))
        gbs = (x.nbytes + q.nbytes + s.nbytes) / ms / 1e6
        row(f"torch.compile {name} rowwise", ms, gbs, "GB/s", gbs / copy_gbs)

    print("| torch GEMM | ms | rate | vs FP8 peak |\n|---|---|---|---|")
    peak = 1979.0
    m = n = k = 8192
    a = torch.randn(m, k, device=dev).to(E4M3)
    b = torch.randn(n, k, device=dev).to(E4M3).t()
    one = torch.ones((), device=dev)
    for fast in (False, True):
        ms = median_ms(lambda: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16, use_fast_accum=fast), 3, 10)
        row(f"torch._scaled_mm e4m3 fast_accum={fast} 8192^3", ms, 2 * m * n * k / ms / 1e9, "TFLOP/s",
            2 * m * n * k / ms / 1e9 / peak)
    for m in (128, 4096):
        for n, k in ((2112, 7168), (7168, 16384), (4096, 7168), (24576, 1536)):
            flops = 2 * m * n * k
            a = torch.randn(m, k, device=dev).to(E4M3)
            w = torch.randn(n, k, device=dev).to(E4M3)
            sa = torch.rand(m, k // 128, device=dev) + 0.5
            sw = torch.rand((n + 127) // 128, k // 128, device=dev) + 0.5

            def dequant_matmul():
                ad = (a.float().view(m, -1, 128) * sa[..., None]).view(m, k).bfloat16()
                wd = (w.float().view((n + 127) // 128 * 0 + n, -1, 128)
                      * sw.repeat_interleave(128, 0)[:n, :, None]).view(n, k).bfloat16()
                return ad @ wd.t()
            ms = median_ms(dequant_matmul, 2, 5)
            row(f"dequant+bf16 matmul {m}x{n}x{k}", ms, flops / ms / 1e9, "TFLOP/s", flops / ms / 1e9 / peak)
            try:
                sa_t = sa.t().contiguous().t()  # M-major, as cuBLASLt's 1x128 mode wants
                ms = median_ms(lambda: torch._scaled_mm(a, w.t(), sa_t, sw, out_dtype=torch.bfloat16), 3, 10)
                row(f"torch._scaled_mm blockwise {m}x{n}x{k}", ms, flops / ms / 1e9, "TFLOP/s", flops / ms / 1e9 / peak)
            except Exception as error:  # this PyTorch or cuBLASLt lacks the block-wise mode
                print(f"| torch._scaled_mm blockwise {m}x{n}x{k} | unsupported: {str(error).splitlines()[0][:80]} |")


if __name__ == "__main__":
    main()
