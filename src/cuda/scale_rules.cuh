// The recipes' rules (rules/) on the device: a tile's statistics gathered as bits across
// lanes, the rule's scale for them, and the element encoders. The scale and the general
// element code are the rule's own (the same code the reference kernels run); this file adds
// only the fast, vectorised encoders for tiles that hold no NaN, which are separate code tested
// against the rule.
#pragma once

#include <cstdint>

#include "breccia/rules/rules.hpp"
#include "cuda/device_numerics.cuh"

namespace breccia::cuda_detail {

inline constexpr std::uint32_t kInfinityBits = 0x7F800000u;

// An amax held as the bits of |x|: for non-negative floats unsigned order is float order, and
// every NaN sorts above inf, so max over bits is the NaN-propagating max in any order.
__device__ __forceinline__ float amax_from_bits(std::uint32_t bits) {
  return bits > kInfinityBits ? __uint_as_float(numerics::kCanonicalNanBits)
                              : __uint_as_float(bits);
}

// Per-tile statistics, combinable in any order with the same result (lo/hi never take a NaN
// and start at +0, so -0 never replaces them).
struct TileStats {
  std::uint32_t amax_bits = 0;
  float lo = 0.0f;
  float hi = 0.0f;

  __device__ __forceinline__ void add(float x) {
    amax_bits = max(amax_bits, __float_as_uint(x) & 0x7FFFFFFFu);
    add_range(x);
  }
  // lo/hi only, for kernels that take the amax from packed words.
  __device__ __forceinline__ void add_range(float x) {
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  __device__ __forceinline__ void merge(const TileStats& other) {
    amax_bits = max(amax_bits, other.amax_bits);
    lo = other.lo < lo ? other.lo : lo;
    hi = other.hi > hi ? other.hi : hi;
  }
  __device__ __forceinline__ float amax() const { return amax_from_bits(amax_bits); }
  // As the rules read them.
  __device__ __forceinline__ rules::TileStats stats() const { return {amax(), lo, hi}; }
  // Neither NaN nor inf in the tile (INT4's condition for a real scale).
  __device__ __forceinline__ bool finite() const { return amax_bits < kInfinityBits; }
  // No NaN in the tile: its elements can take the fast encoders.
  __device__ __forceinline__ bool nan_free() const { return amax_bits <= kInfinityBits; }

  // Merges the stats of aligned groups of `width` lanes (a power of two <= 32); lo/hi only
  // when the rule reads them.
  template <bool kWithRange>
  __device__ __forceinline__ void reduce_lanes(int width) {
    for (int offset = width / 2; offset > 0; offset /= 2) {
      amax_bits = max(amax_bits, __shfl_xor_sync(0xFFFFFFFFu, amax_bits, offset));
      if constexpr (kWithRange) {
        const float other_lo = __shfl_xor_sync(0xFFFFFFFFu, lo, offset);
        const float other_hi = __shfl_xor_sync(0xFFFFFFFFu, hi, offset);
        lo = other_lo < lo ? other_lo : lo;
        hi = other_hi > hi ? other_hi : hi;
      }
    }
  }
};

// A tile's scale, and whether its elements may take the fast encoders.
struct TileScale : rules::TileScale {
  bool fast = false;  // no NaN element and no NaN scale
};

template <class Rule>
__device__ __forceinline__ TileScale tile_scale(const Rule& rule, const TileStats& s) {
  TileScale t;
  static_cast<rules::TileScale&>(t) = rule.scale(s.stats());
  t.fast = s.nan_free() && !t.nan_block;
  return t;
}

// The rule's code of one element (tiles holding a NaN, and the general kernels), out of line:
// it is rare in the tile kernels, and inlined into every instance it would dominate compile
// time.
// Everything by value: a reference to the kernel's rule would move it out of parameter space.
template <class Rule>
__device__ __noinline__ std::uint32_t encode_general(Rule rule, float x, rules::TileScale t) {
  return rule.encode(x, t);
}

// --- Fast encoders: the same codes for a tile with no NaN element and no NaN scale ---------
// There x * factor is never NaN (the factor is finite and non-zero), so the x86 NaN rules of
// mul() and the NaN branches of the general encoders fall away.

// Four FP8 codes (low byte: a) from the hardware's RNE satfinite conversion. The conversion
// keeps the sign of every input except an fp32 subnormal, which it flushes to +0; the result of
// a negative input always has its sign bit set, so OR-ing in the inputs' signs fixes the
// subnormals and changes no other code.
template <ElementFormat kFormat>
__device__ __forceinline__ std::uint32_t fast_fp8_quad(float a, float b, float c, float d) {
  constexpr __nv_fp8_interpretation_t kind =
      kFormat == ElementFormat::kE4M3 ? __NV_E4M3 : __NV_E5M2;
  const std::uint32_t low = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, kind);
  const std::uint32_t high = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, kind);
  // The top byte of each input, in its code's place.
  const std::uint32_t signs =
      __byte_perm(__byte_perm(__float_as_uint(a), __float_as_uint(b), 0x0073u),
                  __byte_perm(__float_as_uint(c), __float_as_uint(d), 0x7300u), 0x7610u);
  return __byte_perm(low, high, 0x5410u) | (signs & 0x80808080u);
}

// E2M1 of a non-NaN value, round to nearest even, sign kept. Below 1 the codes are the
// multiples of 0.5 (rne(2|v|), from the low bits of 2|v| + 2^23); from 1 up they are the fp32
// exponent and top mantissa bit after rounding off the other 22 bits, saturating at 6 (code 7).
__device__ __forceinline__ std::uint32_t fast_e2m1(float v) {
  const float m = fabsf(v);
  const std::uint32_t bits = __float_as_uint(m);
  const std::uint32_t small = __float_as_uint(__fmaf_rn(m, 2.0f, 0x1p23f)) - 0x4B000000u;
  // (biased exponent * 2 + mantissa bit) - 252 is the code: 1.0 (0x3F800000) gives 2.
  const std::uint32_t rounded = bits + 0x1FFFFFu + ((bits >> 22) & 1u) - (252u << 22);
  const std::uint32_t code = m < 1.0f ? small : min(rounded >> 22, 7u);
  return code | ((__float_as_uint(v) >> 28) & 0x8u);
}

// rne(x / s) as numerics::int4_rounded_quotient (0 for the 0/0 of a scale rounded to zero),
// with the hardware's round-to-nearest-even instruction. Out of line: the fast path below
// needs it only near half-integers.
static __device__ __noinline__ float int4_rounded_quotient(float x, float scale) {
  const float quotient = __fdiv_rn(x, scale);
  return quotient != quotient ? 0.0f : rintf(quotient);
}

// The same rne(fl(x / s)) from a multiply: for |x / s| <= 16.5, t = x * fl(1 / s) and fl(x / s)
// differ by less than 2^-18, so unless t lies that close to a half-integer both round to the
// same integer; beyond, both clamp alike. Near a half-integer (about one element in 10^5),
// and for a scale that rounded to zero (t not finite), the exact quotient decides.
__device__ __forceinline__ float int4_level(float x, const TileScale& t) {
  const float quotient = __fmul_rn(x, t.inverse);
  const float level = rintf(quotient);
  const float from_half = fabsf(__fsub_rn(fabsf(__fsub_rn(quotient, level)), 0.5f));
  return from_half > 0x1p-18f ? level : int4_rounded_quotient(x, t.factor);
}

// The codes of 8 consecutive elements of a row, packed as the data stores them: 8 bytes
// (FP8, two words) or 8 nibbles (4-bit formats, one word). Element j is encoded under
// scale_of(j); `fast` says every one of those scales allows the fast encoders.
template <class Rule, class ScaleOf>
__device__ __forceinline__ uint2 encode8(const Rule& rule, const float (&x)[8], bool fast,
                                         ScaleOf scale_of) {
  constexpr ElementFormat kFormat = Rule::kElement;
  uint2 out{0, 0};
  if constexpr (kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2) {
    if (fast) {
      float scaled[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) scaled[i] = __fmul_rn(x[i], scale_of(i).factor);
      out.x = fast_fp8_quad<kFormat>(scaled[0], scaled[1], scaled[2], scaled[3]);
      out.y = fast_fp8_quad<kFormat>(scaled[4], scaled[5], scaled[6], scaled[7]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        out.x |= encode_general(rule, x[i], scale_of(i)) << (8 * i);
        out.y |= encode_general(rule, x[4 + i], scale_of(4 + i)) << (8 * i);
      }
    }
  } else if constexpr (kFormat == ElementFormat::kE2M3 || kFormat == ElementFormat::kE3M2) {
    // FP6, one code per byte. Hopper has no FP6 conversion: the rule's encoder on every path.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out.x |= std::uint32_t{rule.encode(x[i], scale_of(i))} << (8 * i);
      out.y |= std::uint32_t{rule.encode(x[4 + i], scale_of(4 + i))} << (8 * i);
    }
  } else if constexpr (kFormat == ElementFormat::kE2M1) {
    if (fast) {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        out.x |= fast_e2m1(__fmul_rn(x[i], scale_of(i).factor)) << (4 * i);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        out.x |= (encode_general(rule, x[i], scale_of(i)) & 0xF) << (4 * i);
    }
  } else {  // INT4: the same arithmetic on either path; a non-finite group keeps codes 0
    constexpr bool kSigned = kFormat == ElementFormat::kInt4Signed;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const TileScale t = scale_of(i);
      if (t.nan_block) continue;
      const float level = int4_level(x[i], t);
      // Unsigned: clamp(rne(x / s) + z, 0, 15); the sum is fp32, as in the reference.
      const float code =
          kSigned ? fminf(fmaxf(level, -8.0f), 7.0f)
                  : fminf(fmaxf(__fadd_rn(level, static_cast<float>(t.zero_point)), 0.0f), 15.0f);
      // 2^23 + 16 + code is exact and its low four bits are the code's two's-complement nibble.
      out.x |= (__float_as_uint(__fadd_rn(code, 8388624.0f)) & 0xFu) << (4 * i);
    }
  }
  return out;
}

}  // namespace breccia::cuda_detail
