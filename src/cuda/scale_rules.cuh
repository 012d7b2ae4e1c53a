// One scaling unit's rule on the device: statistics of a tile (amax, and lo/hi for unsigned
// INT4), the scale they give, and how each element of the tile is encoded under it. The
// arithmetic is numerics.hpp's; this file only arranges it per tile, as the reference's
// per-recipe files do, plus fast element encoders for tiles that hold no NaN.
#pragma once

#include <cstdint>

#include "cuda/device_numerics.cuh"

namespace breccia::cuda_detail {

enum class Rule : std::uint8_t {
  kFp8Current,  // Float8CurrentScaling and Float8BlockScaling: fmax / amax
  kFp8Delayed,  // stateless DelayedScaling: (fmax * 2^-margin) / amax
  kFp8Fixed,    // stateful DelayedScaling: the state's encode factor
  kMxFloor,
  kMxRceil,
  kNvfp4,
  kInt4Signed,
  kInt4Unsigned,
};

// Everything a kernel needs to know about the recipe, by value.
struct RuleParams {
  Rule rule = Rule::kFp8Current;
  ElementFormat format = ElementFormat::kE4M3;
  bool power_2_scale = false;
  int margin = 0;
  float fixed_encode = 1.0f;                   // kFp8Fixed
  const std::uint32_t* tensor_amax = nullptr;  // per-tensor FP8 and NVFP4: amax bits on the device
  DType scale_dtype = DType::kF32;             // INT4: where the scale is rounded
};

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

// A tile's scale as stored and as applied to its elements.
struct TileScale {
  float factor = 1.0f;       // FP8/NVFP4: multiply; INT4: the stored scale (divide by it)
  float inverse = 1.0f;      // INT4: 1 / factor, rounded (the fast quotient's multiplier)
  std::uint32_t stored = 0;  // the scale's bytes: fp32 bits, an 8-bit code, or fp16/bf16 bits
  bool nan_block = false;    // every element takes the block-NaN code
  bool fast = false;         // no NaN element: the fast encoders apply
  std::uint8_t zero_point = 0;
};

// What every tile of one cast shares, computed once per thread (NVFP4's tensor-level factor).
struct TensorContext {
  float nvfp4_encode = 1.0f;  // S_enc
};

__device__ __forceinline__ TensorContext tensor_context(const RuleParams& p) {
  TensorContext c;
  if (p.rule == Rule::kNvfp4)
    c.nvfp4_encode = numerics::nvfp4_tensor_encode_scale(amax_from_bits(*p.tensor_amax));
  return c;
}

__device__ __forceinline__ float fp8_max(ElementFormat format) {
  return format == ElementFormat::kE4M3 ? numerics::kE4M3Max : numerics::kE5M2Max;
}

// The INT4 scale rounded to its dtype and read back, as the reference's write_wide/read_wide.
__device__ __forceinline__ float round_to_scale_dtype(float raw, DType dtype, std::uint32_t& bits) {
  if (dtype == DType::kF16) {
    bits = formats::F16::encode(raw, formats::Overflow::kInfinity);
    return formats::F16::decode(bits);
  }
  if (dtype == DType::kBF16) {
    bits = formats::BF16::encode(raw, formats::Overflow::kInfinity);
    return formats::BF16::decode(bits);
  }
  bits = __float_as_uint(raw);
  return raw;
}

__device__ __forceinline__ float fp8_tensor_encode(const RuleParams& p, float amax) {
  const float fmax = fp8_max(p.format);
  if (p.rule == Rule::kFp8Fixed) return p.fixed_encode;
  if (p.rule == Rule::kFp8Delayed)
    return numerics::delayed_encode_scale(amax, fmax, p.margin, 1.0f);
  const float encode = numerics::fp8_encode_scale(amax, fmax);
  return p.power_2_scale ? numerics::pow2_floor(encode) : encode;
}

// A tile's scale. kFormat, where the caller knows it at compile time, leaves out the rules of
// other element formats (kernels instantiated per format compile only their own).
template <ElementFormat kFormat = ElementFormat::kE4M3, bool kAnyFormat = true>
__device__ __forceinline__ TileScale tile_scale(const RuleParams& p, const TensorContext& c,
                                                const TileStats& s) {
  constexpr bool kFp8 =
      kAnyFormat || kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2;
  constexpr bool kE2M1 = kAnyFormat || kFormat == ElementFormat::kE2M1;
  constexpr bool kInt4 = kAnyFormat || kFormat == ElementFormat::kInt4Signed ||
                         kFormat == ElementFormat::kInt4Unsigned;
  TileScale t;
  const float amax = s.amax();
  switch (p.rule) {
    case Rule::kFp8Current:
    case Rule::kFp8Delayed:
    case Rule::kFp8Fixed:
      if constexpr (kFp8) {
        t.factor = fp8_tensor_encode(p, amax);
        t.stored = __float_as_uint(numerics::decode_scale(t.factor));
      }
      break;
    case Rule::kMxFloor:
    case Rule::kMxRceil:
      if constexpr (kFp8) {
        const bool e4m3 = p.format == ElementFormat::kE4M3;
        const std::uint8_t code = p.rule == Rule::kMxFloor
                                      ? numerics::mx_scale_floor(amax, e4m3 ? 8 : 15)
                                      : numerics::mx_scale_rceil(amax, fp8_max(p.format));
        t.stored = code;
        t.nan_block = code == numerics::kE8M0Nan;
        t.factor = t.nan_block ? 1.0f : numerics::mx_encode_factor(code);
      }
      break;
    case Rule::kNvfp4:
      if constexpr (kE2M1) {
        // E4M3(amax * (S_enc / 6)) through the same conversion as the elements (the amax is
        // never negative, so a NaN product gives 0x7F as on the CPU).
        const std::uint8_t code = encode_fp8<ElementFormat::kE4M3>(
            mul(amax, c.nvfp4_encode * (1.0f / numerics::kE2M1Max)));
        t.stored = code;
        t.nan_block = formats::E4M3::is_nan(code);
        t.factor = t.nan_block ? 1.0f : numerics::nvfp4_block_encode_factor(code, c.nvfp4_encode);
      }
      break;
    case Rule::kInt4Signed:
    case Rule::kInt4Unsigned:
      if constexpr (kInt4) {
        const bool is_signed = p.rule == Rule::kInt4Signed;
        float raw = __uint_as_float(numerics::kCanonicalNanBits);  // a quiet NaN, as the reference
        if (s.finite()) {
          raw = is_signed ? numerics::int4_symmetric_scale(amax)
                          : numerics::int4_asymmetric_scale(s.lo, s.hi);
        }
        t.factor = round_to_scale_dtype(raw, p.scale_dtype, t.stored);
        t.inverse = __frcp_rn(t.factor);
        t.nan_block = !s.finite();
        if (!is_signed && s.finite()) {
          t.zero_point = static_cast<std::uint8_t>(numerics::int4_zero_point(s.lo, t.factor));
        }
      }
      break;
  }
  t.fast = s.nan_free() && !t.nan_block;
  return t;
}

// The code of one element of a tile (a 4-bit code in the low nibble for packed formats), with
// every NaN rule: the general path, for tiles that hold a NaN.
__device__ __forceinline__ std::uint8_t encode_element(const RuleParams& p, const TileScale& t,
                                                       float x) {
  switch (p.format) {
    case ElementFormat::kE4M3:
      return t.nan_block ? formats::E4M3::kNanCode
                         : encode_fp8<ElementFormat::kE4M3>(mul(x, t.factor));
    case ElementFormat::kE5M2:
      return t.nan_block ? formats::E5M2::kNanCode
                         : encode_fp8<ElementFormat::kE5M2>(mul(x, t.factor));
    case ElementFormat::kE2M1:
      return t.nan_block ? 0 : encode_e2m1(mul(x, t.factor));
    case ElementFormat::kInt4Signed:
      return t.nan_block ? 0
                         : formats::int4_to_nibble(numerics::int4_quantize_symmetric(x, t.factor));
    case ElementFormat::kInt4Unsigned:
      return t.nan_block ? 0
                         : formats::int4_to_nibble(
                               numerics::int4_quantize_asymmetric(x, t.factor, t.zero_point));
  }
  return 0;
}

// The general code of one element for a compile-time format (tiles holding a NaN), out of
// line: it is rare, and inlined into every kernel instance it would dominate compile time.
template <ElementFormat kFormat>
__device__ __noinline__ std::uint32_t encode_general(float x, float factor, bool nan_block) {
  if constexpr (kFormat == ElementFormat::kE2M1) {
    return nan_block ? 0 : encode_e2m1(mul(x, factor));
  } else {
    constexpr std::uint32_t kNan =
        kFormat == ElementFormat::kE4M3 ? formats::E4M3::kNanCode : formats::E5M2::kNanCode;
    return nan_block ? kNan : encode_fp8<kFormat>(mul(x, factor));
  }
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
template <ElementFormat kFormat, class ScaleOf>
__device__ __forceinline__ uint2 encode8(const float (&x)[8], bool fast, ScaleOf scale_of) {
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
        const TileScale low = scale_of(i), high = scale_of(4 + i);
        out.x |= encode_general<kFormat>(x[i], low.factor, low.nan_block) << (8 * i);
        out.y |= encode_general<kFormat>(x[4 + i], high.factor, high.nan_block) << (8 * i);
      }
    }
  } else if constexpr (kFormat == ElementFormat::kE2M1) {
    if (fast) {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        out.x |= fast_e2m1(__fmul_rn(x[i], scale_of(i).factor)) << (4 * i);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const TileScale t = scale_of(i);
        out.x |= (encode_general<kFormat>(x[i], t.factor, t.nan_block) & 0xF) << (4 * i);
      }
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
