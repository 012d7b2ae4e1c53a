// scaled_matmul: picks the tensor-core GEMM for a pair of ScaledTensors and checks what it
// needs; the CUTLASS kernels themselves live in src/cuda/gemm/ (built when CUTLASS is found).
#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {
namespace {

bool is_fp8_per_tensor(const Recipe& recipe) {
  return std::holds_alternative<Float8CurrentScaling>(recipe) ||
         std::holds_alternative<DelayedScaling>(recipe);
}

}  // namespace

GemmKind gemm_kind(const ScaledTensor& a, const ScaledTensor& b) {
  if (a.ndim() != 2 || b.ndim() != 2) return GemmKind::kNone;
  if (a.data_dtype() != DType::kE4M3) return GemmKind::kNone;
  if (is_fp8_per_tensor(a.recipe()) && is_fp8_per_tensor(b.recipe())) {
    return b.data_dtype() == DType::kE4M3 || b.data_dtype() == DType::kE5M2 ? GemmKind::kFp8PerTensor
                                                                           : GemmKind::kNone;
  }
  const auto* block_a = std::get_if<Float8BlockScaling>(&a.recipe());
  const auto* block_b = std::get_if<Float8BlockScaling>(&b.recipe());
  if (block_a != nullptr && block_b != nullptr && b.data_dtype() == DType::kE4M3 &&
      a.layout() == Layout{PerBlockK{128}} && b.layout() == Layout{PerBlockMN{128, 128}}) {
    return GemmKind::kFp8Blockwise;
  }
  return GemmKind::kNone;
}

Array scaled_matmul(const ScaledTensor& a, const ScaledTensor& b, DType out_dtype,
                    const Context& context) {
  detail::require_cuda(a.data(), "a");
  detail::require_cuda(b.data(), "b");
  if (a.device() != b.device()) {
    fail<DeviceError>("b: expected an array on ", a.device(), " like a, got ", b.device());
  }
  const GemmKind kind = gemm_kind(a, b);
  if (kind == GemmKind::kNone) {
    fail<UnsupportedError>(
        "scaled_matmul: no tensor-core GEMM for a (", recipe_repr(a.recipe()), ", ",
        layout_repr(a.layout()), ", ", dtype_name(a.data_dtype()), ", rank ", a.ndim(), ") x b (",
        recipe_repr(b.recipe()), ", ", layout_repr(b.layout()), ", ", dtype_name(b.data_dtype()),
        ", rank ", b.ndim(), "); supported: 2-D E4M3 x E4M3/E5M2 with per-tensor scales, and "
        "E4M3 1x128 (a) x 128x128 (b) Float8BlockScaling");
  }
  if (out_dtype != DType::kF32 && out_dtype != DType::kBF16 && out_dtype != DType::kF16) {
    fail<TypeError>("out_dtype: expected float32, bfloat16 or float16 for the GPU GEMM, got ",
                    dtype_name(out_dtype));
  }
  const std::int64_t m = a.shape()[0];
  const std::int64_t k = a.shape()[1];
  const std::int64_t n = b.shape()[1];
  if (b.shape()[0] != k) {
    fail<ValueError>("scaled_matmul: a's last dimension (K=", k, ") must equal b's first (got ",
                     b.shape()[0], ")");
  }
  if (k % 16 != 0 || n % 16 != 0) {
    fail<UnsupportedError>("scaled_matmul: the FP8 tensor-core GEMM needs K and N to be multiples "
                           "of 16 (16-byte TMA rows), got K=", k, " N=", n,
                           "; dequantize and multiply on another path");
  }
  detail::DeviceGuard guard(a.device());
  if (context.allocator == nullptr) {
    fail<DeviceError>("allocator: scaled_matmul needs the caller's allocator, got none");
  }
  Array out = Array::empty(out_dtype, {m, n}, a.device(), context.allocator);
  if (m == 0 || n == 0) return out;
  gemm::run(kind, a, b, out, context);
  return out;
}

}  // namespace breccia::kernels::cuda
