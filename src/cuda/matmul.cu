// matmul on the GPU: picks the tensor-core GEMM for a pair of operands and checks what it
// needs; the CUTLASS kernels themselves live in src/cuda/gemm/ (built when CUTLASS is found).
#include <optional>
#include <string_view>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "breccia/ops.hpp"
#include "cuda/device_numerics.cuh"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {

using cuda_detail::divmod;
using cuda_detail::from_float;
using cuda_detail::to_float;
using cuda_detail::Wide;
using cuda_detail::WideStorage;
using cuda_detail::with_wide;
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

void require_gemm_out(DType out_dtype) {
  if (out_dtype != DType::kF32 && out_dtype != DType::kBF16 && out_dtype != DType::kF16) {
    fail<TypeError>("out_dtype: expected float32, bfloat16 or float16 for the GPU GEMM, got ",
                    dtype_name(out_dtype));
  }
}

std::string_view a_name(bool b_is_weight) {
  return b_is_weight ? "x" : "a";
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

namespace {

// out = round(acc + bias) per element of an M x N fp32 accumulator, bias broadcast over rows.
template <Wide kBias, Wide kOut>
__global__ void add_bias(const float* acc, const typename WideStorage<kBias>::type* bias,
                         typename WideStorage<kOut>::type* out, std::int64_t rows,
                         std::int64_t cols) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  out[i] = from_float<kOut>(acc[i] + to_float<kBias>(bias[divmod(i, cols).remainder]));
}

// c = a @ b on the tensor cores, b given as (K, N) or, with b_is_weight, as the (N, K) weight of
// a linear layer; `operation` names the op the user called in messages.
Array multiply(std::string_view operation, const Operand& a, const Operand& b, bool b_is_weight,
               DType out_dtype, const Context& context) {
  const std::string_view b_name = b_is_weight ? "w" : "b";
  detail::require_cuda(data_of(a), a_name(b_is_weight));
  detail::require_cuda(data_of(b), b_name);
  if (data_of(a).device() != data_of(b).device()) {
    fail<DeviceError>(b_name, ": expected an array on ", data_of(a).device(), " like ",
                      a_name(b_is_weight), ", got ", data_of(b).device());
  }
  require_gemm_out(out_dtype);
  const Shape a_shape = logical_shape_of(a), b_shape = logical_shape_of(b);
  if (a_shape.size() != 2 || b_shape.size() != 2) {
    fail<UnsupportedError>(operation, ": the GPU GEMM takes 2-D operands, got ",
                           a_name(b_is_weight), " ", shape_str(a_shape), " and ", b_name, " ",
                           shape_str(b_shape), "; loop over the batch, or multiply on the CPU");
  }
  const std::int64_t m = a_shape[0], k = a_shape[1];
  const std::int64_t n = b_is_weight ? b_shape[0] : b_shape[1];
  if ((b_is_weight ? b_shape[1] : b_shape[0]) != k) {
    fail<ValueError>(operation, ": the K of ", a_name(b_is_weight), " ", shape_str(a_shape),
                     " and ", b_name, " ", shape_str(b_shape), " differ");
  }
  const auto* scaled_a = std::get_if<ScaledTensor>(&a);
  const auto* scaled_b = std::get_if<ScaledTensor>(&b);
  // b as the FP8 GEMMs take it, (K, N): an (N, K) weight as a transposed view (K-major, no
  // copy) where it has one; a packed or per-channel weight is left to the emulated path.
  std::optional<ScaledTensor> b_view;
  if (scaled_a != nullptr && scaled_b != nullptr) {
    if (!b_is_weight) {
      b_view = *scaled_b;
    } else if (!scaled_b->spec().packed &&
               !std::holds_alternative<PerChannel>(scaled_b->layout())) {
      b_view = breccia::transpose(*scaled_b);
    }
  }
  GemmKind kind = b_view ? gemm_kind(*scaled_a, *b_view) : GemmKind::kEmulated;
  // The FP8 kernels read 16-byte rows of K (and of N for the output); the bf16 path needs 8
  // elements.
  if (kind != GemmKind::kEmulated && (k % 16 != 0 || n % 16 != 0)) kind = GemmKind::kEmulated;
  if (kind == GemmKind::kEmulated && (k % 8 != 0 || n % 8 != 0)) {
    fail<UnsupportedError>(
        operation, ": the GPU GEMMs need K and N to be multiples of 8 (16-byte rows), got K=", k,
        " N=", n, "; dequantize and multiply on another path");
  }
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) {
    fail<UnsupportedError>(operation, ": the GPU GEMMs take M, N and K below 2^31, got M=", m,
                           " N=", n, " K=", k);
  }
  detail::DeviceGuard guard(data_of(a).device());
  if (context.allocator == nullptr) {
    fail<DeviceError>("allocator: the GPU ", operation, " needs the caller's allocator, got none");
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
    gemm::run_emulated(a, b, b_is_weight, out, context);
  } else {
    gemm::run(kind, *scaled_a, *b_view, out, context);
  }
  return out;
}

}  // namespace

Array matmul(const Operand& a, const Operand& b, DType out_dtype, const Context& context) {
  return multiply("matmul", a, b, /*b_is_weight=*/false, out_dtype, context);
}

Array linear(const Operand& x, const Operand& w, const std::optional<Array>& bias, DType out_dtype,
             const Context& context) {
  require_gemm_out(out_dtype);
  if (!bias) return multiply("linear", x, w, /*b_is_weight=*/true, out_dtype, context);
  detail::require_cuda(*bias, "bias");
  if (!bias->is_contiguous()) {
    fail<ValueError>("bias: expected a contiguous array on the GPU, got strides ",
                     shape_str(bias->strides()));
  }
  // The bias joins the fp32 accumulator before the one rounding to out_dtype.
  const Array acc = multiply("linear", x, w, /*b_is_weight=*/true, DType::kF32, context);
  Array out = Array::empty(out_dtype, acc.shape(), acc.device(), context.allocator);
  const std::int64_t rows = acc.shape()[0], cols = acc.shape()[1];
  if (rows * cols == 0) return out;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>((rows * cols + kThreads - 1) / kThreads);
  with_wide(bias->dtype(), "bias", [&]<Wide kBias>() {
    with_wide(out_dtype, "out_dtype", [&]<Wide kOut>() {
      add_bias<kBias, kOut><<<blocks, kThreads, 0, detail::stream_of(context)>>>(
          acc.data_as<const float>(), bias->data_as<const typename WideStorage<kBias>::type>(),
          out.data_as<typename WideStorage<kOut>::type>(), rows, cols);
    });
  });
  detail::check_launch("add_bias");
  return out;
}

}  // namespace breccia::kernels::cuda
