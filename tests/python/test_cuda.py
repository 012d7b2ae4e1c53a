"""breccia on PyTorch CUDA tensors (skipped without a CUDA build and a GPU): the GPU kernels give
the CPU reference's bytes, outputs are PyTorch CUDA tensors from its allocator, and nothing is
copied to the host behind the caller's back."""

from __future__ import annotations

import numpy as np
import pytest

import breccia
from breccia.kernels import cuda

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not cuda.CUDA_AVAILABLE, reason="needs a CUDA build and a GPU")

RECIPES = [
    breccia.Float8CurrentScaling(),
    breccia.DelayedScaling(fp8_format="E5M2"),
    breccia.Float8BlockScaling(),
    breccia.Float8BlockScaling(block_m=128),
    breccia.MXFP8BlockScaling(),
    breccia.MXFP8BlockScaling(scale_rounding="rceil"),
    breccia.MXFP6BlockScaling(),
    breccia.MXFP6BlockScaling(fp6_format="E3M2", scale_rounding="rceil"),
    breccia.MXFP4BlockScaling(),
    breccia.NVFP4BlockScaling(),
    breccia.NVFP4BlockScaling(two_d=True),
    breccia.INT4Scaling(),
    breccia.INT4Scaling(signed=False, scale_dtype="bf16"),
]


def _bytes(tensor):
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _x(shape=(256, 512), dtype=torch.bfloat16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator) * 3).to(dtype)


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
@pytest.mark.parametrize("axis", [-1, -2])
def test_gpu_cast_gives_the_reference_bytes(recipe, axis):
    x = _x()
    on_gpu = breccia.cast(x.cuda(), recipe, axis=axis)
    on_cpu = breccia.kernels.reference.cast(x, recipe, axis=axis)
    for name in ("data", "scale", "global_scale", "zero_point"):
        got, want = getattr(on_gpu, name), getattr(on_cpu, name)
        assert (got is None) == (want is None), name
        if got is not None:
            assert got.is_cuda, name
            np.testing.assert_array_equal(_bytes(got), _bytes(want), err_msg=name)
    back = breccia.dequantize(on_gpu, torch.float32)
    assert back.is_cuda
    np.testing.assert_array_equal(
        _bytes(back), _bytes(breccia.kernels.reference.dequantize(on_cpu, torch.float32))
    )


def test_outputs_follow_the_current_stream():
    x = _x().cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        st = breccia.cast(x, breccia.MXFP8BlockScaling())
        y = breccia.dequantize(st, torch.bfloat16)
    stream.synchronize()
    reference = breccia.dequantize(
        breccia.cast(x.cpu(), breccia.MXFP8BlockScaling()), torch.bfloat16
    )
    assert torch.equal(y.cpu(), reference)


def test_scaled_matmul_matches_the_dequantized_product():
    a = _x((256, 512), torch.float32, 1).cuda()
    b = _x((512, 384), torch.float32, 2).cuda()
    qa = breccia.cast(a, breccia.Float8CurrentScaling())
    qb = breccia.cast(b, breccia.Float8CurrentScaling(), axis=-2)
    out = cuda.scaled_matmul_cuda(qa, qb, torch.float32)
    want = breccia.dequantize(qa).double() @ breccia.dequantize(qb).double()
    error = 1 - 2 * (out.double() * want).sum() / ((out.double() ** 2).sum() + (want**2).sum())
    assert out.is_cuda and out.shape == (256, 384)
    assert float(error) <= 1e-5
    same = breccia.matmul(qa, qb, torch.float32)
    assert torch.equal(same, out)


def test_mixed_devices_are_refused():
    a = breccia.cast(_x().cuda(), breccia.Float8CurrentScaling())
    with pytest.raises(ValueError, match="cuda"):
        breccia.matmul(a, _x((512, 8), torch.float32))


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
def test_gpu_cast_for_gemm_gives_the_cpu_bytes(recipe):
    x = _x((256, 512))
    swizzle = recipe.spec["scale"] in ("E8M0", "E4M3")  # one-byte block scales
    on_gpu = breccia.cast_for_gemm(x.cuda(), recipe, swizzled_scales=swizzle)
    on_cpu = breccia.cast_for_gemm(x, recipe, swizzled_scales=swizzle)
    for got, want in ((on_gpu.rowwise, on_cpu.rowwise), (on_gpu.columnwise, on_cpu.columnwise)):
        assert got.data.is_cuda
        np.testing.assert_array_equal(_bytes(got.data), _bytes(want.data))
        np.testing.assert_array_equal(_bytes(got.scale), _bytes(want.scale))
    if swizzle:
        for got, want in zip(on_gpu[2:], on_cpu[2:], strict=True):
            np.testing.assert_array_equal(_bytes(got), _bytes(want))


def _relative_mismatch(out, want):
    out = out.double()
    return float(1 - 2 * (out * want).sum() / ((out**2).sum() + (want**2).sum()))


@pytest.mark.parametrize(
    "recipe", [breccia.MXFP8BlockScaling(), breccia.NVFP4BlockScaling()], ids=repr
)
def test_block_formats_multiply_on_the_gpu(recipe):
    qa = breccia.cast(_x((128, 512), torch.float32, 1).cuda(), recipe)
    qb = breccia.cast(_x((512, 256), torch.float32, 2).cuda(), recipe, axis=-2)
    out = breccia.matmul(qa, qb, torch.bfloat16)
    want = breccia.dequantize(qa).double() @ breccia.dequantize(qb).double()
    assert out.is_cuda and out.dtype == torch.bfloat16
    assert _relative_mismatch(out, want) <= 1e-5


def test_int4_weights_with_bf16_activations():
    x = _x((16, 1024), torch.bfloat16, 3).cuda()
    w = breccia.cast(_x((1024, 512), torch.float32, 4).cuda(), breccia.INT4Scaling(), axis=-2)
    out = breccia.matmul(x, w, torch.bfloat16)
    want = x.double() @ breccia.dequantize(w).double()
    assert _relative_mismatch(out, want) <= 1e-5


# Weights stored (N, K), blocked along K: FP8 ones reach the FP8 GEMMs as transposed views,
# the rest are dequantized as stored; the activation's recipe is the weight's row-wise one.
LINEAR_CASES = [
    (breccia.Float8CurrentScaling(), breccia.Float8CurrentScaling()),
    (breccia.Float8BlockScaling(), breccia.Float8BlockScaling(block_m=128)),
    (breccia.MXFP8BlockScaling(), breccia.MXFP8BlockScaling()),
    (breccia.NVFP4BlockScaling(), breccia.NVFP4BlockScaling()),
    (None, breccia.INT4Scaling()),
    (None, breccia.MXFP4BlockScaling()),
]


@pytest.mark.parametrize("x_recipe,w_recipe", LINEAR_CASES, ids=repr)
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_on_the_gpu_matches_the_cpu(x_recipe, w_recipe, with_bias):
    x = _x((64, 512), torch.float32, 5)
    x = x.to(torch.bfloat16) if x_recipe is None else x
    w = _x((384, 512), torch.float32, 6)
    bias = _x((384,), torch.float32, 7) if with_bias else None
    qx = x if x_recipe is None else breccia.cast(x, x_recipe)
    qw = breccia.cast(w, w_recipe)
    on_cpu = breccia.linear(qx, qw, bias).double()
    gx = x.cuda() if x_recipe is None else breccia.cast(x.cuda(), x_recipe)
    gw = breccia.cast(w.cuda(), w_recipe)
    out = breccia.linear(gx, gw, None if bias is None else bias.cuda(), torch.bfloat16)
    assert out.is_cuda and out.dtype == torch.bfloat16 and out.shape == (64, 384)
    assert _relative_mismatch(out.cpu(), on_cpu) <= 1e-4


# `breccia convert --device cuda`: every tensor cast (and dequantized) by the GPU kernels gives
# the files the CPU conversion writes, byte for byte; q/k_proj share an NVFP4 global scale.
@pytest.mark.parametrize(
    "args",
    [
        ["fp8"],
        ["fp8-channel"],
        ["fp8-block"],
        ["mxfp8"],
        ["mxfp4"],
        ["nvfp4"],
        ["nvfp4", "--convention", "modelopt"],
        ["int4"],
        ["int4", "--asymmetric"],
    ],
    ids=" ".join,
)
def test_convert_on_the_gpu_writes_the_cpu_conversions_bytes(tmp_path, args):
    from test_cli import bf16_model, read_dir, run

    bf16_model(tmp_path / "src")
    for device in ("cpu", "cuda"):
        result = run(
            "convert",
            str(tmp_path / "src"),
            str(tmp_path / device),
            "--to",
            *args,
            "--device",
            device,
        )
        assert result.exit_code == 0, result.output
    assert read_dir(tmp_path / "cuda") == read_dir(tmp_path / "cpu")
    # The GPU path is the one taken: a device the machine lacks is refused before any work.
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match=r"this machine has \d+ CUDA device\(s\), got cuda"):
        breccia.checkpoint.convert(tmp_path / "src", tmp_path / "missing", "fp8", device=missing)
    assert not (tmp_path / "missing").exists()
    # Back to bf16 (dequantize), and to NVFP4 from this format (requantize), on each device.
    for target in ("bf16", "nvfp4"):
        for device in ("cpu", "cuda"):
            result = run(
                "convert",
                str(tmp_path / "cpu"),
                str(tmp_path / f"{target}-{device}"),
                "--to",
                target,
                "--device",
                device,
            )
            assert result.exit_code == 0, result.output
        assert read_dir(tmp_path / f"{target}-cuda") == read_dir(tmp_path / f"{target}-cpu")


def test_nvfp4_given_tensor_amax_on_the_gpu_gives_the_cpus_bytes():
    x = _x((256, 512), torch.float32, 9)
    recipe = breccia.NVFP4BlockScaling()
    for amax in (float(x.abs().max()) * 3, 0.0, float("nan")):
        on_cpu = breccia.cast(x, recipe, tensor_amax=amax)
        on_gpu = breccia.cast(x.cuda(), recipe, tensor_amax=amax)
        for part in ("data", "scale", "global_scale"):
            got, want = _bytes(getattr(on_gpu, part)), _bytes(getattr(on_cpu, part))
            assert got.tobytes() == want.tobytes(), (amax, part)
