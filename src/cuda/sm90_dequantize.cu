// dequantize() on the GPU: decode(q) * scale (* global_scale) in fp32, rounded to the output
// dtype; eight consecutive elements per thread, loaded and stored as whole vectors.
#include <cstring>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "breccia/rules/tile.hpp"
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

// kUnit: a per-tensor scale left out (the emulated GEMM's operands), read as 1.
enum class ScaleKind : std::uint8_t { kF32, kF16, kBF16, kE8M0, kE4M3, kUnit };

struct DequantArgs {
  const std::uint8_t* data;
  const void* scale;
  const float* global_scale;       // NVFP4 only
  const std::uint8_t* zero_point;  // unsigned INT4 only
  ElementFormat format;
  ScaleKind scale_kind;
  bool packed;
  bool vectorized;  // data and output aligned for whole-vector access
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
    case ScaleKind::kUnit:
      return 1.0f;
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
      g.per_tensor
          ? 0
          : (in_batch.quotient * g.scale_rows + divmod(r, g.block_rows).quotient) * g.scale_cols;
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
      if (a.zero_point != nullptr)
        element = __fsub_rn(element, static_cast<float>(a.zero_point[s]));
      // As the reference: NVFP4's whole block factor decode(sd) * global_scale first.
      float factor =
          byte_scales ? scale_value[static_cast<const std::uint8_t*>(a.scale)[s]] : scale_at(a, s);
      if (a.global_scale != nullptr) factor = rules::mul(factor, global);
      values[i] = cuda_detail::from_float<kWide>(rules::mul(element, factor));
      if (++in_block == g.block_cols) in_block = 0, ++col_block;
      if (++c == g.cols) {  // next row (possibly of the next batch)
        c = 0, col_block = 0, in_block = 0;
        const DivMod next = divmod(first + i + 1, per_batch);
        r = divmod(next.remainder, g.cols).quotient;
        if (!g.per_tensor) {
          row_scales =
              (next.quotient * g.scale_rows + divmod(r, g.block_rows).quotient) * g.scale_cols;
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

// --- The fast path: rows of whole 16-element vectors -------------------------------------
// Each thread decodes 16 consecutive elements of one row (16 FP8 bytes or 8 bytes of nibbles)
// under one scale (blocks of a multiple of 16 along the row) or 16 consecutive ones
// (columnwise blocks). Vectors whose codes or factor are not finite take the general rules.

template <ScaleKind kScale>
__device__ __forceinline__ float scale_value(const void* scale, std::int64_t s) {
  if constexpr (kScale == ScaleKind::kF32) return static_cast<const float*>(scale)[s];
  if constexpr (kScale == ScaleKind::kF16)
    return formats::F16::decode(static_cast<const std::uint16_t*>(scale)[s]);
  if constexpr (kScale == ScaleKind::kBF16) {
    return formats::BF16::decode(static_cast<const std::uint16_t*>(scale)[s]);
  }
  if constexpr (kScale == ScaleKind::kE8M0)
    return formats::E8M0::decode(static_cast<const std::uint8_t*>(scale)[s]);
  if constexpr (kScale == ScaleKind::kUnit) return 1.0f;
  return formats::E4M3::decode(static_cast<const std::uint8_t*>(scale)[s]);
}

// True when a word of FP8 codes holds a NaN code.
template <ElementFormat kFormat>
__device__ __forceinline__ bool has_nan_code(std::uint32_t word) {
  const std::uint32_t magnitudes = word & 0x7F7F7F7Fu;
  // A byte's magnitude plus (0x80 - first NaN magnitude) reaches bit 7 exactly for NaN codes.
  constexpr std::uint32_t kToBit7 = kFormat == ElementFormat::kE4M3 ? 0x01010101u : 0x03030303u;
  return ((magnitudes + kToBit7) & 0x80808080u) != 0;
}

// Values of the 16 element codes of a vector (without zero point), exact.
template <ElementFormat kFormat>
__device__ __forceinline__ void decode16(uint4 raw, float (&value)[16]) {
  if constexpr (kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2) {
    constexpr __nv_fp8_interpretation_t kind =
        kFormat == ElementFormat::kE4M3 ? __NV_E4M3 : __NV_E5M2;
    const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const auto pair = static_cast<__nv_fp8x2_storage_t>(words[i / 2] >> (16 * (i % 2)));
      const __half2 halves(__nv_cvt_fp8x2_to_halfraw2(pair, kind));
      const float2 floats = __half22float2(halves);
      value[2 * i] = floats.x;
      value[2 * i + 1] = floats.y;
    }
  } else if constexpr (kFormat == ElementFormat::kE2M3 || kFormat == ElementFormat::kE3M2) {
    // FP6, a code per byte: the format's own decode (no FP6 conversion on Hopper).
    const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      value[i] = Minifloat<kFormat>::decode((words[i / 4] >> (8 * (i % 4))) & 0x3Fu);
    }
  } else {
    const std::uint32_t words[2] = {raw.x, raw.y};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const std::uint32_t nibble = (words[i / 8] >> (4 * (i % 8))) & 0xFu;
      if constexpr (kFormat == ElementFormat::kE2M1) {
        // 0, 0.5, then (1 + m/2) * 2^(e - 1) for exponent field e >= 1, sign in bit 3.
        const std::uint32_t magnitude = nibble & 7u;
        const std::uint32_t bits =
            magnitude >= 2 ? (((magnitude >> 1) + 126u) << 23) | ((magnitude & 1u) << 22)
                           : (magnitude == 1 ? 0x3F000000u : 0u);
        value[i] = __uint_as_float(bits | ((nibble & 8u) << 28));
      } else {
        // 2^23 + n is exact; subtracting 2^23 (signed: and 8, of n ^ 8) leaves the integer.
        const bool is_signed = kFormat == ElementFormat::kInt4Signed;
        const float biased = __uint_as_float(0x4B000000u | (is_signed ? nibble ^ 8u : nibble));
        value[i] = __fsub_rn(biased, is_signed ? 8388616.0f : 8388608.0f);
      }
    }
  }
}

// Stores 16 output values (16-byte aligned).
template <Wide kWide>
__device__ __forceinline__ void store16(void* out, std::int64_t v, const float (&value)[16]) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  auto* destination = reinterpret_cast<uint4*>(static_cast<Storage*>(out) + v * 16);
  if constexpr (kWide == Wide::kBF16 || kWide == Wide::kF16) {
    std::uint32_t words[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (kWide == Wide::kBF16) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(value[2 * i], value[2 * i + 1]);
        words[i] = *reinterpret_cast<const std::uint32_t*>(&pair);
      } else {
        const __half2 pair = __floats2half2_rn(value[2 * i], value[2 * i + 1]);
        words[i] = *reinterpret_cast<const std::uint32_t*>(&pair);
      }
    }
    destination[0] = make_uint4(words[0], words[1], words[2], words[3]);
    destination[1] = make_uint4(words[4], words[5], words[6], words[7]);
  } else if constexpr (kWide == Wide::kF32) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      destination[i] =
          make_uint4(__float_as_uint(value[4 * i]), __float_as_uint(value[4 * i + 1]),
                     __float_as_uint(value[4 * i + 2]), __float_as_uint(value[4 * i + 3]));
    }
  } else {
    auto* doubles = reinterpret_cast<double2*>(destination);
#pragma unroll
    for (int i = 0; i < 8; ++i) doubles[i] = make_double2(value[2 * i], value[2 * i + 1]);
  }
}

template <Wide kWide, ElementFormat kFormat, ScaleKind kScale, bool kColumnScales>
__global__ void __launch_bounds__(kThreads)
    dequantize16_kernel(DequantArgs a, void* out, std::int64_t vectors) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  constexpr bool kPacked = is_packed(kFormat);
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (v >= vectors) return;
  const Grid& g = a.grid;
  uint4 raw;
  if constexpr (kPacked) {
    const uint2 half = reinterpret_cast<const uint2*>(a.data)[v];
    raw = make_uint4(half.x, half.y, 0, 0);
  } else {
    raw = reinterpret_cast<const uint4*>(a.data)[v];
  }
  // Row (over the batch) and column of the vector's first element, then its scale row.
  const DivMod at = divmod(v, g.cols / 16);
  const std::int64_t c = at.remainder * 16;
  std::int64_t scale_row = 0;
  if (!g.per_tensor) {
    if (g.block_rows == 1) {
      scale_row = at.quotient;
    } else {
      const DivMod in_batch = divmod(at.quotient, g.rows);
      scale_row =
          in_batch.quotient * g.scale_rows + divmod(in_batch.remainder, g.block_rows).quotient;
    }
  }
  const std::int64_t first_scale =
      g.per_tensor ? 0 : scale_row * g.scale_cols + (kColumnScales ? c : c / g.block_cols);
  const float global = a.global_scale != nullptr ? *a.global_scale : 1.0f;

  float factor[kColumnScales ? 16 : 1];
  bool finite = true;
#pragma unroll
  for (int j = 0; j < (kColumnScales ? 16 : 1); ++j) {
    // NVFP4: the block's whole factor decode(sd) * global_scale first, as the reference.
    float f = scale_value<kScale>(a.scale, first_scale + j);
    if (a.global_scale != nullptr) f = rules::mul(f, global);
    factor[j] = f;
    finite = finite && numerics::is_finite(f);
  }
  float zero[kColumnScales ? 16 : 1] = {};
  if (a.zero_point != nullptr) {
#pragma unroll
    for (int j = 0; j < (kColumnScales ? 16 : 1); ++j)
      zero[j] = static_cast<float>(a.zero_point[first_scale + j]);
  }
  if constexpr (kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2) {
    finite = finite && !has_nan_code<kFormat>(raw.x) && !has_nan_code<kFormat>(raw.y) &&
             !has_nan_code<kFormat>(raw.z) && !has_nan_code<kFormat>(raw.w);
  }

  float value[16];
  decode16<kFormat>(raw, value);
  if (finite) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const int j = kColumnScales ? i : 0;
      value[i] =
          __fmul_rn(a.zero_point != nullptr ? __fsub_rn(value[i], zero[j]) : value[i], factor[j]);
    }
    store16<kWide>(out, v, value);
    return;
  }
  // The general rules: NaN codes, NaN or infinite factors (x86's NaN results).
  Storage* destination = static_cast<Storage*>(out) + v * 16;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int j = kColumnScales ? i : 0;
    float element = 0.0f;
    if constexpr (kPacked) {
      const std::uint32_t word = i < 8 ? raw.x : raw.y;
      element = decode_element(kFormat, static_cast<std::uint8_t>((word >> (4 * (i % 8))) & 0xFu));
    } else {
      const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
      element = decode_element(kFormat, static_cast<std::uint8_t>(words[i / 4] >> (8 * (i % 4))));
    }
    if (a.zero_point != nullptr) element = __fsub_rn(element, zero[j]);
    destination[i] = cuda_detail::from_float<kWide>(rules::mul(element, factor[j]));
  }
}

// The scale's logical format (the spec's, whatever dtype holds the bytes).
ScaleKind scale_kind_of(const QuantPlan& plan) {
  switch (plan.spec.scale) {
    case ScaleFormat::kE8M0:
      return ScaleKind::kE8M0;
    case ScaleFormat::kE4M3:
      return ScaleKind::kE4M3;
    case ScaleFormat::kF16:
      return ScaleKind::kF16;
    case ScaleFormat::kBF16:
      return ScaleKind::kBF16;
    case ScaleFormat::kF32:
      break;
  }
  return ScaleKind::kF32;
}

bool aligned(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

// Runs dequantize16_kernel when the geometry allows (rows of whole 16-element vectors, one
// scale per vector or one per column, aligned buffers, fp32/fp16/bf16 out); false otherwise.
bool launch_fast(const DequantArgs& a, const Array& out, cudaStream_t stream) {
  const Grid& g = a.grid;
  const bool column_scales = !g.per_tensor && g.block_cols == 1 && g.block_rows > 1;
  const bool row_scales = g.per_tensor || g.block_cols % 16 == 0;
  if (g.cols % 16 != 0 || !(column_scales || row_scales) || out.dtype() == DType::kF64 ||
      !aligned(a.data, 16) || !aligned(out.data(), 16)) {
    return false;
  }
  const std::int64_t vectors = a.count / 16;
  const auto blocks = static_cast<unsigned>((vectors + kThreads - 1) / kThreads);
  bool launched = false;
  auto launch = [&]<Wide kWide, ElementFormat kFormat, ScaleKind kScale>() {
    if (column_scales) {
      dequantize16_kernel<kWide, kFormat, kScale, true>
          <<<blocks, kThreads, 0, stream>>>(a, out.data(), vectors);
    } else {
      dequantize16_kernel<kWide, kFormat, kScale, false>
          <<<blocks, kThreads, 0, stream>>>(a, out.data(), vectors);
    }
    launched = true;
  };
  auto by_format = [&]<Wide kWide>() {
    switch (a.format) {
      case ElementFormat::kE4M3:
      case ElementFormat::kE5M2: {
        const bool e4m3 = a.format == ElementFormat::kE4M3;
        if (a.scale_kind == ScaleKind::kF32) {
          e4m3 ? launch.template operator()<kWide, ElementFormat::kE4M3, ScaleKind::kF32>()
               : launch.template operator()<kWide, ElementFormat::kE5M2, ScaleKind::kF32>();
        } else if (a.scale_kind == ScaleKind::kE8M0) {
          e4m3 ? launch.template operator()<kWide, ElementFormat::kE4M3, ScaleKind::kE8M0>()
               : launch.template operator()<kWide, ElementFormat::kE5M2, ScaleKind::kE8M0>();
        } else if (a.scale_kind == ScaleKind::kUnit) {
          e4m3 ? launch.template operator()<kWide, ElementFormat::kE4M3, ScaleKind::kUnit>()
               : launch.template operator()<kWide, ElementFormat::kE5M2, ScaleKind::kUnit>();
        }
        break;
      }
      case ElementFormat::kE2M1:
        if (a.scale_kind == ScaleKind::kE4M3)
          launch.template operator()<kWide, ElementFormat::kE2M1, ScaleKind::kE4M3>();
        if (a.scale_kind == ScaleKind::kE8M0)
          launch.template operator()<kWide, ElementFormat::kE2M1, ScaleKind::kE8M0>();
        break;
      case ElementFormat::kE2M3:
        if (a.scale_kind == ScaleKind::kE8M0)
          launch.template operator()<kWide, ElementFormat::kE2M3, ScaleKind::kE8M0>();
        break;
      case ElementFormat::kE3M2:
        if (a.scale_kind == ScaleKind::kE8M0)
          launch.template operator()<kWide, ElementFormat::kE3M2, ScaleKind::kE8M0>();
        break;
      case ElementFormat::kInt4Signed:
      case ElementFormat::kInt4Unsigned: {
        const bool is_signed = a.format == ElementFormat::kInt4Signed;
        auto int4 = [&]<ScaleKind kScale>() {
          is_signed ? launch.template operator()<kWide, ElementFormat::kInt4Signed, kScale>()
                    : launch.template operator()<kWide, ElementFormat::kInt4Unsigned, kScale>();
        };
        if (a.scale_kind == ScaleKind::kF16) int4.template operator()<ScaleKind::kF16>();
        if (a.scale_kind == ScaleKind::kBF16) int4.template operator()<ScaleKind::kBF16>();
        if (a.scale_kind == ScaleKind::kF32) int4.template operator()<ScaleKind::kF32>();
        break;
      }
    }
  };
  switch (out.dtype()) {
    case DType::kF32:
      by_format.template operator()<Wide::kF32>();
      break;
    case DType::kBF16:
      by_format.template operator()<Wide::kBF16>();
      break;
    default:
      by_format.template operator()<Wide::kF16>();
  }
  return launched;
}

}  // namespace

void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out,
                const Context& context, bool tensor_factors) {
  detail::require_cuda(data, "data");
  detail::require_cuda(scale, "scale");
  detail::require_cuda(out, "out");
  detail::DeviceGuard guard(data.device());
  DequantArgs a{};
  a.data = data.data_as<const std::uint8_t>();
  a.scale = scale.data();
  a.global_scale =
      plan.has_global_scale && tensor_factors ? global_scale.data_as<const float>() : nullptr;
  a.zero_point = plan.has_zero_point ? zero_point.data_as<const std::uint8_t>() : nullptr;
  a.format = plan.spec.element;
  a.scale_kind = plan.grid.per_tensor && !tensor_factors ? ScaleKind::kUnit : scale_kind_of(plan);
  a.packed = plan.spec.packed;
  a.count = out.numel();
  const ScaleGrid& grid = plan.grid;
  a.grid = {grid.per_tensor, grid.block_rows, grid.block_cols, grid.rows,
            grid.cols,       grid.scale_rows, grid.scale_cols};
  a.vectorized = aligned(data.data(), a.packed ? 4 : 8) && aligned(out.data(), 16);
  if (a.count == 0) return;
  const cudaStream_t stream = detail::stream_of(context);
  if (launch_fast(a, out, stream)) {
    detail::check_launch("dequantize (16-element vectors)");
    return;
  }
  const std::int64_t threads = (a.count + 7) / 8;
  const auto blocks = static_cast<unsigned>((threads + kThreads - 1) / kThreads);
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
