// matmul on the GPU: picks the tensor-core GEMM for a pair of operands and checks what it
// needs; the CUTLASS kernels themselves live in src/cuda/gemm/ (built when CUTLASS is found).
#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {
namespace {

bool is_fp8_per_tensor(const RecipeSpec& spec) {
  return spec.family == RuleFamily::kFp8 && spec.per_tensor;
}

bool is_fp8_block(const RecipeSpec& spec) {
  return spec.family == RuleFamily::kFp8 && !spec.per_tensor;
}

const Array& data_of(const Operand& operand) {
  const auto* scaled = std::get_if<ScaledTensor>(&operand);
  return scaled != nullptr ? scaled->data() : std::get<Array>(operand);
}

Shape logical_shape_of(const Operand& operand) {
  const auto* scaled = std::get_if<ScaledTensor>(&operand);
  return scaled != nullptr ? scaled->logical_shape() : std::get<Array>(operand).shape();
}

}  // namespace

GemmKind gemm_kind(const ScaledTensor& a, const ScaledTensor& b) {
  if (a.ndim() != 2 || b.ndim() != 2) return GemmKind::kNone;
  if (a.data_dtype() == DType::kE4M3 && is_fp8_per_tensor(a.spec()) &&
      is_fp8_per_tensor(b.spec()) &&
      (b.data_dtype() == DType::kE4M3 || b.data_dtype() == DType::kE5M2)) {
    return GemmKind::kFp8PerTensor;
  }
  if (is_fp8_block(a.spec()) && is_fp8_block(b.spec()) && a.data_dtype() == DType::kE4M3 &&
      b.data_dtype() == DType::kE4M3 && a.layout() == Layout{PerBlockK{128}} &&
      b.layout() == Layout{PerBlockMN{128, 128}}) {
    return GemmKind::kFp8Blockwise;
  }
  return GemmKind::kEmulated;
}

Array matmul(const Operand& a, const Operand& b, DType out_dtype, const Context& context) {
  detail::require_cuda(data_of(a), "a");
  detail::require_cuda(data_of(b), "b");
  if (data_of(a).device() != data_of(b).device()) {
    fail<DeviceError>("b: expected an array on ", data_of(a).device(), " like a, got ",
                      data_of(b).device());
  }
  if (out_dtype != DType::kF32 && out_dtype != DType::kBF16 && out_dtype != DType::kF16) {
    fail<TypeError>("out_dtype: expected float32, bfloat16 or float16 for the GPU GEMM, got ",
                    dtype_name(out_dtype));
  }
  const Shape a_shape = logical_shape_of(a), b_shape = logical_shape_of(b);
  if (a_shape.size() != 2 || b_shape.size() != 2) {
    fail<UnsupportedError>("matmul: the GPU GEMM takes 2-D operands, got a ", shape_str(a_shape),
                           " and b ", shape_str(b_shape),
                           "; loop over the batch, or multiply on the CPU");
  }
  const std::int64_t m = a_shape[0], k = a_shape[1], n = b_shape[1];
  if (b_shape[0] != k) {
    fail<ValueError>("matmul: a's last dimension (K=", k, ") must equal b's first (got ",
                     b_shape[0], ")");
  }
  const auto* scaled_a = std::get_if<ScaledTensor>(&a);
  const auto* scaled_b = std::get_if<ScaledTensor>(&b);
  GemmKind kind = scaled_a != nullptr && scaled_b != nullptr ? gemm_kind(*scaled_a, *scaled_b)
                                                             : GemmKind::kEmulated;
  // The FP8 kernels read 16-byte rows of K (and of N for the output); the bf16 path needs 8
  // elements.
  if (kind != GemmKind::kEmulated && (k % 16 != 0 || n % 16 != 0)) kind = GemmKind::kEmulated;
  if (kind == GemmKind::kEmulated && (k % 8 != 0 || n % 8 != 0)) {
    fail<UnsupportedError>(
        "matmul: the GPU GEMMs need K and N to be multiples of 8 (16-byte rows), got K=", k,
        " N=", n, "; dequantize and multiply on another path");
  }
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) {
    fail<UnsupportedError>("matmul: the GPU GEMMs take M, N and K below 2^31, got M=", m, " N=", n,
                           " K=", k);
  }
  detail::DeviceGuard guard(data_of(a).device());
  if (context.allocator == nullptr) {
    fail<DeviceError>("allocator: the GPU matmul needs the caller's allocator, got none");
  }
  Array out = Array::empty(out_dtype, {m, n}, data_of(a).device(), context.allocator);
  if (m == 0 || n == 0) return out;
  if (k == 0) {
    detail::check(cudaMemsetAsync(out.data(), 0, static_cast<std::size_t>(out.nbytes()),
                                  detail::stream_of(context)),
                  "cudaMemsetAsync");
    return out;
  }
  if (kind == GemmKind::kEmulated) {
    gemm::run_emulated(a, b, out, context);
  } else {
    gemm::run(kind, *scaled_a, *scaled_b, out, context);
  }
  return out;
}

}  // namespace breccia::kernels::cuda
