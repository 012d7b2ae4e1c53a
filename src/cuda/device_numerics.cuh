// Device-side element I/O: wide floats in and out exactly as the reference reads and writes
// them. Where the GPU's IEEE arithmetic differs from the CPU's in NaN handling (the GPU returns
// a canonical NaN, x86 the quieted first NaN operand, and numerics.md makes a NaN's sign
// observable), NaNs are handled explicitly here and in rules::mul.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <string_view>

#include "breccia/dtype.hpp"
#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/numerics.hpp"
#include "breccia/plan.hpp"

namespace breccia::cuda_detail {

// Wide float dtypes a kernel reads or writes, as template tags.
enum class Wide : std::uint8_t { kF32, kBF16, kF16, kF64 };

// The tag of a wide float dtype; TypeError naming `argument` for any other.
inline Wide wide_of(DType dtype, std::string_view argument) {
  switch (dtype) {
    case DType::kF32:
      return Wide::kF32;
    case DType::kBF16:
      return Wide::kBF16;
    case DType::kF16:
      return Wide::kF16;
    case DType::kF64:
      return Wide::kF64;
    default:
      fail<TypeError>(argument, ": expected float32, float16, bfloat16 or float64 on the GPU, got ",
                      dtype_name(dtype));
  }
}

// Calls f.template operator()<kWide>() for the runtime dtype.
template <class F>
void with_wide(DType dtype, std::string_view argument, F&& f) {
  switch (wide_of(dtype, argument)) {
    case Wide::kF32:
      return f.template operator()<Wide::kF32>();
    case Wide::kBF16:
      return f.template operator()<Wide::kBF16>();
    case Wide::kF16:
      return f.template operator()<Wide::kF16>();
    case Wide::kF64:
      return f.template operator()<Wide::kF64>();
  }
}

template <Wide kWide>
struct WideStorage;
template <>
struct WideStorage<Wide::kF32> {
  using type = float;
};
template <>
struct WideStorage<Wide::kBF16> {
  using type = std::uint16_t;
};
template <>
struct WideStorage<Wide::kF16> {
  using type = std::uint16_t;
};
template <>
struct WideStorage<Wide::kF64> {
  using type = double;
};

__device__ __forceinline__ bool is_nan(float x) {
  return x != x;
}

// q / d and q % d, in 32-bit arithmetic when both fit (64-bit division is a long software
// sequence on the GPU).
struct DivMod {
  std::int64_t quotient, remainder;
};
__device__ __forceinline__ DivMod divmod(std::int64_t q, std::int64_t d) {
  if (((q | d) >> 31) == 0) {
    const auto q32 = static_cast<std::uint32_t>(q), d32 = static_cast<std::uint32_t>(d);
    return {q32 / d32, q32 % d32};
  }
  return {q / d, q % d};
}

// One element as fp32, exactly as reference::detail::read_wide decodes it.
template <Wide kWide>
__device__ __forceinline__ float to_float(typename WideStorage<kWide>::type raw) {
  if constexpr (kWide == Wide::kF32) {
    return raw;
  } else if constexpr (kWide == Wide::kBF16) {
    if ((raw & 0x7FFFu) > 0x7F80u) return formats::BF16::decode(raw);  // canonical NaN
    return __uint_as_float(static_cast<std::uint32_t>(raw) << 16);
  } else if constexpr (kWide == Wide::kF16) {
    if ((raw & 0x7FFFu) > 0x7C00u) return formats::F16::decode(raw);
    return __half2float(__ushort_as_half(raw));
  } else {
    const auto bits = static_cast<std::uint64_t>(__double_as_longlong(raw));
    if ((bits & 0x7FFFFFFFFFFFFFFFull) >
        0x7FF0000000000000ull) {  // x86 cvtsd2ss: keep sign, top payload
      return __uint_as_float(static_cast<std::uint32_t>(bits >> 32 & 0x80000000u) | 0x7FC00000u |
                             static_cast<std::uint32_t>(bits >> 29 & 0x3FFFFFu));
    }
    return __double2float_rn(raw);
  }
}

// fp32 into a wide dtype, exactly as reference::detail::write_wide rounds it (RNE, overflow to
// inf, NaN payload kept).
template <Wide kWide>
__device__ __forceinline__ typename WideStorage<kWide>::type from_float(float value) {
  if constexpr (kWide == Wide::kF32) {
    return value;
  } else if constexpr (kWide == Wide::kBF16) {
    if (is_nan(value))
      return static_cast<std::uint16_t>(formats::BF16::encode(value, formats::Overflow::kInfinity));
    return __bfloat16_as_ushort(__float2bfloat16_rn(value));
  } else if constexpr (kWide == Wide::kF16) {
    if (is_nan(value))
      return static_cast<std::uint16_t>(formats::F16::encode(value, formats::Overflow::kInfinity));
    return __half_as_ushort(__float2half_rn(value));
  } else {
    if (is_nan(value)) {  // x86 cvtss2sd: quieted, payload shifted into the top mantissa bits
      const std::uint32_t bits = __float_as_uint(value) | 0x400000u;
      const std::uint64_t wide = (static_cast<std::uint64_t>(bits & 0x80000000u) << 32) |
                                 0x7FF0000000000000ull |
                                 (static_cast<std::uint64_t>(bits & 0x7FFFFFu) << 29);
      return __longlong_as_double(static_cast<long long>(wide));
    }
    return static_cast<double>(value);
  }
}

}  // namespace breccia::cuda_detail
