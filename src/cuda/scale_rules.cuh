// One scaling unit's rule on the device: statistics of a tile (amax, and lo/hi for INT4), the
// scale they give, and how each element of the tile is encoded under it. The arithmetic is
// numerics.hpp's; this file only arranges it per tile, as the reference's per-recipe files do.
#pragma once

#include <cstdint>

#include "cuda/device_numerics.cuh"

namespace breccia::cuda_detail {

enum class Rule : std::uint8_t {
  kFp8Current,   // Float8CurrentScaling and Float8BlockScaling: fmax / amax
  kFp8Delayed,   // stateless DelayedScaling: (fmax * 2^-margin) / amax
  kFp8Fixed,     // stateful DelayedScaling: the state's encode factor
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
  float fixed_encode = 1.0f;          // kFp8Fixed
  const float* tensor_amax = nullptr;  // per-tensor FP8 and NVFP4: amax on the device
  DType scale_dtype = DType::kF32;     // INT4: where the scale is rounded
};

// Per-tile statistics, combinable in any order with the same result (lo/hi never take a NaN
// and start at +0, so -0 never replaces them).
struct TileStats {
  float amax = 0.0f;
  float lo = 0.0f;
  float hi = 0.0f;
  bool finite = true;

  __device__ __forceinline__ void add(float x) {
    amax = numerics::nan_max(amax, numerics::abs_value(x));
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
    finite = finite && numerics::is_finite(x);
  }
  __device__ __forceinline__ void merge(const TileStats& other) {
    amax = numerics::nan_max(amax, other.amax);
    lo = other.lo < lo ? other.lo : lo;
    hi = other.hi > hi ? other.hi : hi;
    finite = finite && other.finite;
  }
  // Merges the stats of the `width` lanes (a power of two <= 32) holding one tile.
  __device__ __forceinline__ void reduce_lanes(int width) {
    for (int offset = width / 2; offset > 0; offset /= 2) {
      TileStats other;
      other.amax = __shfl_xor_sync(0xFFFFFFFFu, amax, offset);
      other.lo = __shfl_xor_sync(0xFFFFFFFFu, lo, offset);
      other.hi = __shfl_xor_sync(0xFFFFFFFFu, hi, offset);
      other.finite = __shfl_xor_sync(0xFFFFFFFFu, static_cast<int>(finite), offset) != 0;
      merge(other);
    }
  }
};

// A tile's scale as stored and as applied to its elements.
struct TileScale {
  float factor = 1.0f;         // FP8/NVFP4: multiply; INT4: the stored scale (divide by it)
  std::uint32_t stored = 0;    // the scale's bytes: fp32 bits, an 8-bit code, or fp16/bf16 bits
  bool nan_block = false;      // every element takes the block-NaN code
  std::uint8_t zero_point = 0;
};

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
  if (p.rule == Rule::kFp8Delayed) return numerics::delayed_encode_scale(amax, fmax, p.margin, 1.0f);
  const float encode = numerics::fp8_encode_scale(amax, fmax);
  return p.power_2_scale ? numerics::pow2_floor(encode) : encode;
}

__device__ __forceinline__ TileScale tile_scale(const RuleParams& p, const TileStats& s) {
  TileScale t;
  switch (p.rule) {
    case Rule::kFp8Current:
    case Rule::kFp8Delayed:
    case Rule::kFp8Fixed:
      t.factor = fp8_tensor_encode(p, s.amax);
      t.stored = __float_as_uint(numerics::decode_scale(t.factor));
      break;
    case Rule::kMxFloor:
    case Rule::kMxRceil: {
      const bool e4m3 = p.format == ElementFormat::kE4M3;
      const std::uint8_t code = p.rule == Rule::kMxFloor
                                    ? numerics::mx_scale_floor(s.amax, e4m3 ? 8 : 15)
                                    : numerics::mx_scale_rceil(s.amax, fp8_max(p.format));
      t.stored = code;
      t.nan_block = code == numerics::kE8M0Nan;
      t.factor = t.nan_block ? 1.0f : numerics::mx_encode_factor(code);
      break;
    }
    case Rule::kNvfp4: {
      const float tensor_encode = numerics::nvfp4_tensor_encode_scale(*p.tensor_amax);
      const std::uint8_t code = numerics::nvfp4_block_scale_code(s.amax, tensor_encode);
      t.stored = code;
      t.nan_block = formats::E4M3::is_nan(code);
      t.factor = t.nan_block ? 1.0f : numerics::nvfp4_block_encode_factor(code, tensor_encode);
      break;
    }
    case Rule::kInt4Signed:
    case Rule::kInt4Unsigned: {
      const bool is_signed = p.rule == Rule::kInt4Signed;
      float raw = __uint_as_float(0x7FC00000u);  // quiet NaN, as the reference
      if (s.finite) {
        raw = is_signed ? numerics::int4_symmetric_scale(s.amax)
                        : numerics::int4_asymmetric_scale(s.lo, s.hi);
      }
      t.factor = round_to_scale_dtype(raw, p.scale_dtype, t.stored);
      t.nan_block = !s.finite;
      if (!is_signed && s.finite) {
        t.zero_point = static_cast<std::uint8_t>(numerics::int4_zero_point(s.lo, t.factor));
      }
      break;
    }
  }
  return t;
}

// The code of one element of a tile (a 4-bit code in the low nibble for packed formats).
__device__ __forceinline__ std::uint8_t encode_element(const RuleParams& p, const TileScale& t,
                                                       float x) {
  switch (p.format) {
    case ElementFormat::kE4M3:
      return t.nan_block ? formats::E4M3::kNanCode : encode_fp8<ElementFormat::kE4M3>(mul(x, t.factor));
    case ElementFormat::kE5M2:
      return t.nan_block ? formats::E5M2::kNanCode : encode_fp8<ElementFormat::kE5M2>(mul(x, t.factor));
    case ElementFormat::kE2M1:
      return t.nan_block ? 0 : encode_e2m1(mul(x, t.factor));
    case ElementFormat::kInt4Signed:
      return t.nan_block ? 0 : formats::int4_to_nibble(numerics::int4_quantize_symmetric(x, t.factor));
    case ElementFormat::kInt4Unsigned:
      return t.nan_block ? 0
                         : formats::int4_to_nibble(
                               numerics::int4_quantize_asymmetric(x, t.factor, t.zero_point));
  }
  return 0;
}

}  // namespace breccia::cuda_detail
