// What every scale rule works with: a unit's statistics, the scale it gets, the product of an
// element and its encode factor, and an element's code. Host and device.
#pragma once

#include <cstdint>

#include "breccia/formats/element_format.hpp"
#include "breccia/numerics.hpp"

#if defined(__CUDACC__)
#include <cuda_fp8.h>
#endif

namespace breccia::rules {

// Statistics of one scaling unit (a block, a tile or the whole tensor): amax with NaN winning
// (numerics.md §3), and for asymmetric INT4 the range [min(x, 0), max(x, 0)].
struct TileStats {
  float amax = 0.0f;
  float lo = 0.0f;
  float hi = 0.0f;

  BRECCIA_HD constexpr void add(float x) {
    amax = numerics::nan_max(amax, numerics::abs_value(x));
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  // Neither NaN nor inf in the unit.
  BRECCIA_HD constexpr bool finite() const { return numerics::is_finite(amax); }
  // No NaN in the unit.
  BRECCIA_HD constexpr bool nan_free() const { return !numerics::is_nan(amax); }
};

// A unit's scale: as stored, and as applied to its elements.
struct TileScale {
  float factor = 1.0f;       // FP8, MX, NVFP4: the encode multiplier; INT4: the stored scale
  float inverse = 1.0f;      // INT4: 1 / factor, rounded (fast kernels' multiplier)
  std::uint32_t stored = 0;  // the scale entry's bits in the spec's ScaleFormat
  bool nan_block = false;    // every element takes the block-NaN code
  std::uint8_t zero_point = 0;
};

// a * b rounded to nearest even, never fused, with x86's NaN results on every device: the
// first NaN operand, quieted, keeps its sign; an invalid product is 0xFFC00000. numerics.md
// makes a NaN's sign observable (FP8 0x7F / 0xFF); the GPU would return its canonical NaN.
BRECCIA_HD inline float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  if (a != a) return __uint_as_float(__float_as_uint(a) | 0x400000u);
  if (b != b) return __uint_as_float(__float_as_uint(b) | 0x400000u);
  const float product = __fmul_rn(a, b);
  return product != product ? __uint_as_float(0xFFC00000u) : product;
#else
  return a * b;
#endif
}

// 1 / x rounded to nearest even (the hardware's IEEE reciprocal on the GPU: one instruction
// instead of a division sequence, the same result).
BRECCIA_HD inline float reciprocal(float x) {
#if defined(__CUDA_ARCH__)
  return __frcp_rn(x);
#else
  return 1.0f / x;
#endif
}

// The code of one element value (numerics.md §1: RNE, saturating, NaN by format). On the
// GPU, FP8 uses the hardware conversion with NaN and fp32-subnormal inputs fixed up (tested
// equal to the Minifloat encoder over all 2^32 inputs); everything else is the Minifloat rule.
template <ElementFormat kFormat>
BRECCIA_HD inline std::uint8_t encode_element(float value) {
#if defined(__CUDA_ARCH__)
  if constexpr (kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2) {
    const std::uint32_t bits = __float_as_uint(value);
    if (value != value) return (bits >> 31) != 0 ? 0xFF : 0x7F;
    // fp32 zeros and subnormals round to a zero of their sign (the conversion drops the sign
    // of a subnormal input).
    if ((bits & 0x7F800000u) == 0) return static_cast<std::uint8_t>((bits >> 24) & 0x80u);
    constexpr __nv_fp8_interpretation_t kind =
        kFormat == ElementFormat::kE4M3 ? __NV_E4M3 : __NV_E5M2;
    return static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(value, __NV_SATFINITE, kind));
  }
#endif
  return static_cast<std::uint8_t>(Minifloat<kFormat>::encode(value));
}

}  // namespace breccia::rules
