// Operand preparation for the GEMMs. FP8 tensor cores read both operands K-major, so a
// row-major b (K x N) is transposed once into scratch (a b that is a transposed view of an
// N x K weight, strides (1, K), is used as it is); per-tensor scales fold into one alpha. The
// emulated path dequantizes each quantized operand to bf16 with its block scales and folds
// the per-tensor factors into alpha.
#include <string_view>
#include <variant>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda::gemm {
namespace {

constexpr int kTile = 32;

// out (cols x rows) = in (rows x cols)^T, bytes, through a padded shared-memory tile.
__global__ void transpose_bytes(const std::uint8_t* in, std::uint8_t* out, std::int64_t rows,
                                std::int64_t cols) {
  __shared__ std::uint8_t tile[kTile][kTile + 4];
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * kTile;
  const std::int64_t c0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][i];
  }
}

// alpha = a * b, a missing factor counting as 1.
__global__ void product_of_scales(const float* a, const float* b, float* alpha) {
  *alpha = (a != nullptr ? *a : 1.0f) * (b != nullptr ? *b : 1.0f);
}

// Copies a strided fp32 matrix (rows x cols) into a contiguous row-major one.
__global__ void gather_f32(const float* in, std::int64_t row_stride, std::int64_t col_stride,
                           float* out, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) out[i] = in[(i / cols) * row_stride + (i % cols) * col_stride];
}

bool is_k_major_view(const Array& b) {  // (K, N) data laid out as N rows of K elements
  return b.strides().size() == 2 && b.strides()[0] == 1 && b.strides()[1] == b.shape()[0];
}

// The factor an operand's bf16 values leave out: an FP8 per-tensor scale or NVFP4's
// global_scale (null: none).
const float* tensor_factor(const ScaledTensor& t) {
  if (t.grid().per_tensor) return t.scale().data_as<const float>();
  if (t.global_scale()) return t.global_scale()->data_as<const float>();
  return nullptr;
}

void require_contiguous(const Array& x, std::string_view argument) {
  if (!x.is_contiguous()) {
    fail<ValueError>(argument, ": expected contiguous data for the GPU GEMM, got shape ",
                     shape_str(x.shape()), " with strides ", shape_str(x.strides()));
  }
}

// decode(data) * block scale as bf16, on the GPU.
Array dequantized_bf16(const ScaledTensor& t, std::string_view argument, const Context& context) {
  for (const Array* part : {&t.data(), &t.scale()}) require_contiguous(*part, argument);
  if (t.zero_point()) require_contiguous(*t.zero_point(), argument);
  const QuantPlan plan = plan_of(t);
  Array out = Array::empty(DType::kBF16, plan.logical_shape, t.device(), context.allocator);
  kernels::cuda::dequantize(plan, t.data(), t.scale(), t.global_scale().value_or(Array{}),
                            t.zero_point().value_or(Array{}), out, context,
                            /*tensor_factors=*/false);
  return out;
}

// An operand as the bf16 GEMM reads it: a (M, K) row-major, b (N, K) when `k_major`, else (K, N).
struct Bf16Operand {
  Array values;
  bool k_major = true;
  const float* factor = nullptr;
};

// `weight`: b is given as the (N, K) weight of a linear layer rather than as (K, N).
Bf16Operand bf16_operand(const Operand& operand, bool is_b, bool weight, const Context& context) {
  const std::string_view argument = weight ? "w" : is_b ? "b" : "a";
  if (const auto* plain = std::get_if<Array>(&operand)) {
    if (plain->dtype() != DType::kBF16) {
      fail<TypeError>(argument,
                      ": the GPU GEMM takes plain arrays of bfloat16 (or ScaledTensors), got ",
                      dtype_name(plain->dtype()));
    }
    if (is_b && !weight && is_k_major_view(*plain)) return {plain->transposed(), true, nullptr};
    require_contiguous(*plain, argument);
    return {*plain, !is_b || weight, nullptr};
  }
  const ScaledTensor& scaled = std::get<ScaledTensor>(operand);
  if (is_b && !weight && is_k_major_view(scaled.data())) {
    const ScaledTensor stored = breccia::transpose(scaled);  // the (N, K) tensor b views
    return {dequantized_bf16(stored, argument, context), true, tensor_factor(scaled)};
  }
  return {dequantized_bf16(scaled, argument, context), !is_b || weight, tensor_factor(scaled)};
}

}  // namespace

void run(GemmKind kind, const ScaledTensor& a, const ScaledTensor& b, const Array& out,
         const Context& context) {
  const Device device = a.device();
  const cudaStream_t stream = detail::stream_of(context);
  Problem p;
  p.m = static_cast<int>(a.shape()[0]);
  p.k = static_cast<int>(a.shape()[1]);
  p.n = static_cast<int>(b.shape()[1]);
  p.d = out.data();
  const Launcher launch =
      kind == GemmKind::kFp8PerTensor
          ? per_tensor_launcher(b.data_dtype(), out.dtype(),
                                per_tensor_schedule(p.m, p.n, p.k, detail::sm_count(device)))
          : blockwise_launcher(out.dtype(),
                               blockwise_schedule(p.m, p.n, p.k, detail::sm_count(device)));
  if (launch == nullptr) {
    fail<UnsupportedError>(
        "scaled_matmul: this build has no CUTLASS GEMM (CUTLASS headers were "
        "not found at configure time; see cmake/BrecciaCuda.cmake)");
  }
  if (!a.data().is_contiguous()) {
    fail<ValueError>("a: expected contiguous (row-major) data for the GPU GEMM, got strides ",
                     shape_str(a.data().strides()));
  }
  p.a = a.data().data();

  std::shared_ptr<void> b_k_major;
  if (is_k_major_view(b.data())) {
    p.b = b.data().data();
  } else if (b.data().is_contiguous()) {
    b_k_major = detail::scratch(context, b.data().nbytes(), device);
    const dim3 blocks(static_cast<unsigned>((p.n + kTile - 1) / kTile),
                      static_cast<unsigned>((p.k + kTile - 1) / kTile));
    transpose_bytes<<<blocks, dim3(kTile, 8), 0, stream>>>(
        b.data().data_as<const std::uint8_t>(), static_cast<std::uint8_t*>(b_k_major.get()), p.k,
        p.n);
    detail::check_launch("transpose_bytes");
    p.b = b_k_major.get();
  } else {
    fail<ValueError>(
        "b: expected row-major (K, N) data or a transposed view of (N, K) data, got "
        "strides ",
        shape_str(b.data().strides()));
  }

  std::shared_ptr<void> alpha, scale_b;
  if (kind == GemmKind::kFp8PerTensor) {
    alpha = detail::scratch(context, sizeof(float), device);
    product_of_scales<<<1, 1, 0, stream>>>(a.scale().data_as<const float>(),
                                           b.scale().data_as<const float>(),
                                           static_cast<float*>(alpha.get()));
    detail::check_launch("product_of_scales");
    p.alpha = static_cast<const float*>(alpha.get());
  } else {
    if (!a.scale().is_contiguous()) fail<ValueError>("a: expected a contiguous scale tensor");
    p.scale_a = a.scale().data_as<const float>();
    // b's scales are (ceil(K/128), ceil(N/128)); the kernel reads them K-major, as the
    // transposed view of a weight's row-major (ceil(N/128), ceil(K/128)) scales lies.
    const Array scales_nk = b.scale().transposed();
    if (scales_nk.is_contiguous()) {
      p.scale_b = scales_nk.data_as<const float>();
    } else {
      const std::int64_t rows = scales_nk.shape()[0], cols = scales_nk.shape()[1];
      scale_b = detail::scratch(context, rows * cols * 4, device);
      gather_f32<<<static_cast<unsigned>((rows * cols + 255) / 256), 256, 0, stream>>>(
          scales_nk.data_as<const float>(), scales_nk.strides()[0], scales_nk.strides()[1],
          static_cast<float*>(scale_b.get()), rows, cols);
      detail::check_launch("gather_f32");
      p.scale_b = static_cast<const float*>(scale_b.get());
    }
  }
  launch(p, context, device);
}

void run_emulated(const Operand& a, const Operand& b, bool b_is_weight, const Array& out,
                  const Context& context) {
  const Device device = out.device();
  const cudaStream_t stream = detail::stream_of(context);
  const Bf16Operand a16 = bf16_operand(a, false, false, context);
  const Bf16Operand b16 = bf16_operand(b, true, b_is_weight, context);
  Problem p;
  p.m = static_cast<int>(out.shape()[0]);
  p.n = static_cast<int>(out.shape()[1]);
  p.k = static_cast<int>(a16.values.shape()[1]);
  p.a = a16.values.data();
  p.b = b16.values.data();
  p.d = out.data();
  const Launcher launch = bf16_launcher(out.dtype(), b16.k_major);
  if (launch == nullptr) {
    fail<UnsupportedError>(
        "matmul: this build has no CUTLASS GEMM (CUTLASS headers were not found at "
        "configure time; see cmake/BrecciaCuda.cmake)");
  }
  const std::shared_ptr<void> alpha = detail::scratch(context, sizeof(float), device);
  product_of_scales<<<1, 1, 0, stream>>>(a16.factor, b16.factor, static_cast<float*>(alpha.get()));
  detail::check_launch("product_of_scales");
  p.alpha = static_cast<const float*>(alpha.get());
  launch(p, context, device);
}

TileSchedule blockwise_schedule(int m, int n, int k, int sms) {
  const std::int64_t tiles = std::int64_t{(m + 127) / 128} * ((n + 127) / 128);
  return k >= kStreamKMinK && tiles < std::int64_t{kStreamKWaves} * sms ? TileSchedule::kStreamK
                                                                        : TileSchedule::kPersistent;
}

TileSchedule per_tensor_schedule(int m, int n, int, int sms) {
  const std::int64_t large_tiles = std::int64_t{(m + 127) / 128} * ((n + 255) / 256);
  return 2 * large_tiles <= sms ? TileSchedule::kStreamK : TileSchedule::kPersistent;
}

#if !defined(BRECCIA_CUTLASS)
Launcher per_tensor_launcher(DType, DType, TileSchedule) {
  return nullptr;
}
Launcher blockwise_launcher(DType, TileSchedule) {
  return nullptr;
}
Launcher bf16_launcher(DType, bool) {
  return nullptr;
}
#endif

}  // namespace breccia::kernels::cuda::gemm
