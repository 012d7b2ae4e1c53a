// dequantize() on the GPU: decode(q) * scale (* global_scale) in fp32, rounded to the output
// dtype; eight consecutive elements per thread, loaded and stored as whole vectors.
#include <cstring>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/device_numerics.cuh"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {
namespace {

using cuda_detail::divmod;
using cuda_detail::DivMod;
using cuda_detail::Wide;

constexpr int kThreads = 256;

// The numbers of a ScaleGrid, by value for the kernel.
struct Grid {
  bool per_tensor;
  std::int64_t block_rows, block_cols, rows, cols, scale_rows, scale_cols;
};

enum class ScaleKind : std::uint8_t { kF32, kF16, kBF16, kE8M0, kE4M3 };

struct DequantArgs {
  const std::uint8_t* data;
  const void* scale;
  const float* global_scale;        // NVFP4 only
  const std::uint8_t* zero_point;   // unsigned INT4 only
  ElementFormat format;
  ScaleKind scale_kind;
  bool packed;
  bool vectorized;                  // data and output aligned for whole-vector access
  std::int64_t count;
  Grid grid;
};

__device__ __forceinline__ float scale_at(const DequantArgs& a, std::int64_t s) {
  switch (a.scale_kind) {
    case ScaleKind::kF32:
      return static_cast<const float*>(a.scale)[s];
    case ScaleKind::kF16:
      return formats::F16::decode(static_cast<const std::uint16_t*>(a.scale)[s]);
    case ScaleKind::kBF16:
      return formats::BF16::decode(static_cast<const std::uint16_t*>(a.scale)[s]);
    case ScaleKind::kE8M0:
      return formats::E8M0::decode(static_cast<const std::uint8_t*>(a.scale)[s]);
    case ScaleKind::kE4M3:
      return formats::E4M3::decode(static_cast<const std::uint8_t*>(a.scale)[s]);
  }
  return 0.0f;
}

__device__ __forceinline__ std::uint8_t code_at(const DequantArgs& a, std::int64_t i) {
  return a.packed ? formats::unpack_nibble(a.data[i / 2], i) : a.data[i];
}

template <Wide kWide>
__global__ void __launch_bounds__(kThreads) dequantize_kernel(DequantArgs a, void* out) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  // Every code's value, decoded once per block: the decode rules are general and branchy.
  __shared__ float element_value[256];
  __shared__ float scale_value[256];
  const bool byte_scales = a.scale_kind == ScaleKind::kE8M0 || a.scale_kind == ScaleKind::kE4M3;
  for (int code = threadIdx.x; code < 256; code += kThreads) {
    element_value[code] = decode_element(a.format, static_cast<std::uint8_t>(code));
    if (byte_scales) {
      scale_value[code] = a.scale_kind == ScaleKind::kE8M0 ? formats::E8M0::decode(code)
                                                           : formats::E4M3::decode(code);
    }
  }
  __syncthreads();
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t first = v * 8;
  if (first >= a.count) return;
  const int n = static_cast<int>(a.count - first < 8 ? a.count - first : 8);
  const bool whole = a.vectorized && n == 8;

  std::uint8_t codes[8];
  if (whole && !a.packed) {
    const uint2 raw = reinterpret_cast<const uint2*>(a.data)[v];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      codes[i] = static_cast<std::uint8_t>(raw.x >> (8 * i));
      codes[4 + i] = static_cast<std::uint8_t>(raw.y >> (8 * i));
    }
  } else if (whole) {
    const std::uint32_t raw = reinterpret_cast<const std::uint32_t*>(a.data)[v];
#pragma unroll
    for (int i = 0; i < 8; ++i) codes[i] = static_cast<std::uint8_t>(raw >> (4 * i)) & 0xF;
  } else {
    for (int i = 0; i < n; ++i) codes[i] = code_at(a, first + i);
  }

  // Coordinates of the first element by division, then stepped: 64-bit divisions per element
  // would cost more than the memory traffic.
  const Grid& g = a.grid;
  const std::int64_t per_batch = g.rows * g.cols;
  const DivMod in_batch = divmod(first, per_batch);
  const DivMod in_row = divmod(in_batch.remainder, g.cols);
  std::int64_t r = in_row.quotient;
  std::int64_t c = in_row.remainder;
  std::int64_t row_scales =
      g.per_tensor ? 0 : (in_batch.quotient * g.scale_rows + divmod(r, g.block_rows).quotient) * g.scale_cols;
  const DivMod in_block_cols = divmod(c, g.block_cols);
  std::int64_t col_block = in_block_cols.quotient;
  std::int64_t in_block = in_block_cols.remainder;
  const float global = a.global_scale != nullptr ? *a.global_scale : 1.0f;
  Storage values[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (i < n) {
      const std::int64_t s = g.per_tensor ? 0 : row_scales + col_block;
      float element = element_value[codes[i]];
      if (a.zero_point != nullptr) element = __fsub_rn(element, static_cast<float>(a.zero_point[s]));
      // As the reference: NVFP4's whole block factor decode(sd) * global_scale first.
      float factor = byte_scales ? scale_value[static_cast<const std::uint8_t*>(a.scale)[s]] : scale_at(a, s);
      if (a.global_scale != nullptr) factor = cuda_detail::mul(factor, global);
      values[i] = cuda_detail::from_float<kWide>(cuda_detail::mul(element, factor));
      if (++in_block == g.block_cols) in_block = 0, ++col_block;
      if (++c == g.cols) {  // next row (possibly of the next batch)
        c = 0, col_block = 0, in_block = 0;
        const DivMod next = divmod(first + i + 1, per_batch);
        r = divmod(next.remainder, g.cols).quotient;
        if (!g.per_tensor) {
          row_scales = (next.quotient * g.scale_rows + divmod(r, g.block_rows).quotient) * g.scale_cols;
        }
      }
    }
  }
  auto* destination = static_cast<Storage*>(out) + first;
  if (whole) {
    constexpr int kWords = static_cast<int>(sizeof(Storage) * 8 / sizeof(uint4));
    uint4 words[kWords];
    memcpy(words, values, sizeof(values));
#pragma unroll
    for (int w = 0; w < kWords; ++w) reinterpret_cast<uint4*>(destination)[w] = words[w];
  } else {
    for (int i = 0; i < n; ++i) destination[i] = values[i];
  }
}

ScaleKind scale_kind_of(const QuantPlan& plan, DType scale_dtype) {
  if (plan.format == ElementFormat::kE2M1) return ScaleKind::kE4M3;
  if (std::holds_alternative<MXFP8BlockScaling>(plan.recipe)) return ScaleKind::kE8M0;
  switch (scale_dtype) {
    case DType::kF16:
      return ScaleKind::kF16;
    case DType::kBF16:
      return ScaleKind::kBF16;
    case DType::kF32:
      return ScaleKind::kF32;
    default:
      fail<TypeError>("scale: expected float32, float16 or bfloat16 scales for ",
                      recipe_name(plan.recipe), ", got ", dtype_name(scale_dtype));
  }
}

bool aligned(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

}  // namespace

void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out,
                const Context& context) {
  detail::require_cuda(data, "data");
  detail::require_cuda(scale, "scale");
  detail::require_cuda(out, "out");
  detail::DeviceGuard guard(data.device());
  DequantArgs a{};
  a.data = data.data_as<const std::uint8_t>();
  a.scale = scale.data();
  a.global_scale = plan.has_global_scale ? global_scale.data_as<const float>() : nullptr;
  a.zero_point = plan.has_zero_point ? zero_point.data_as<const std::uint8_t>() : nullptr;
  a.format = plan.format;
  a.scale_kind = scale_kind_of(plan, scale.dtype());
  a.packed = is_packed(plan.format);
  a.count = out.numel();
  const ScaleGrid& grid = plan.grid;
  a.grid = {grid.per_tensor, grid.block_rows, grid.block_cols, grid.rows,
            grid.cols, grid.scale_rows, grid.scale_cols};
  a.vectorized = aligned(data.data(), a.packed ? 4 : 8) && aligned(out.data(), 16);
  if (a.count == 0) return;
  const std::int64_t threads = (a.count + 7) / 8;
  const auto blocks = static_cast<unsigned>((threads + kThreads - 1) / kThreads);
  const cudaStream_t stream = detail::stream_of(context);
  switch (out.dtype()) {
    case DType::kF32:
      dequantize_kernel<Wide::kF32><<<blocks, kThreads, 0, stream>>>(a, out.data());
      break;
    case DType::kBF16:
      dequantize_kernel<Wide::kBF16><<<blocks, kThreads, 0, stream>>>(a, out.data());
      break;
    case DType::kF16:
      dequantize_kernel<Wide::kF16><<<blocks, kThreads, 0, stream>>>(a, out.data());
      break;
    case DType::kF64:
      dequantize_kernel<Wide::kF64><<<blocks, kThreads, 0, stream>>>(a, out.data());
      break;
    default:
      fail<TypeError>("out_dtype: expected float32, float16, bfloat16 or float64, got ",
                      dtype_name(out.dtype()));
  }
  detail::check_launch("dequantize");
}

}  // namespace breccia::kernels::cuda
