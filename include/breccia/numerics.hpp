// The scalar arithmetic of breccia's numerics contract (docs/numerics.md): how an amax turns
// into a scale, and how one element is quantized. The per-family rule objects in rules/
// compose these for every kernel, so each formula lives in exactly one place. All fp32,
// round-to-nearest-even.
#pragma once

#include <cstdint>

#include "breccia/formats/element_format.hpp"
#include "breccia/formats/formats.hpp"

namespace breccia::numerics {

inline constexpr float kFloatMax = 3.40282346638528859812e+38f;
inline constexpr float kE4M3Max = kElementMax<ElementFormat::kE4M3>;
inline constexpr float kE5M2Max = kElementMax<ElementFormat::kE5M2>;
inline constexpr float kE2M1Max = kElementMax<ElementFormat::kE2M1>;
inline constexpr float kNvfp4GlobalRange = kE2M1Max * kE4M3Max;  // 2688

BRECCIA_HD constexpr bool is_nan(float x) {
  return x != x;
}
BRECCIA_HD constexpr bool is_finite(float x) {
  return (formats::detail::float_bits(x) & 0x7F800000u) != 0x7F800000u;
}
BRECCIA_HD constexpr float abs_value(float x) {
  return formats::detail::bits_float(formats::detail::float_bits(x) & 0x7FFFFFFFu);
}
inline constexpr std::uint32_t kCanonicalNanBits = 0x7FC00000u;

// max that lets a NaN win: amax of a unit holding a NaN is NaN, always the canonical quiet
// NaN, so that the result (and a global_scale or amax history made from it) does not depend
// on which NaN came first, and parallel reductions in any order give the same bytes.
BRECCIA_HD constexpr float nan_max(float a, float b) {
  if (is_nan(a) || is_nan(b)) return formats::detail::bits_float(kCanonicalNanBits);
  return a > b ? a : b;
}

// --- FP8 per-tensor and per-block scaling (TransformerEngine's rule) -----------------------

// Encode factor fmax / amax; 1 for amax 0, inf or NaN; FLT_MAX when the quotient overflows.
BRECCIA_HD constexpr float fp8_encode_scale(float amax, float fmax) {
  if (amax == 0.0f || !is_finite(amax)) return 1.0f;
  const float scale = fmax / amax;
  return is_finite(scale) ? scale : kFloatMax;
}

// 2^floor(log2 s): the fp32 mantissa bits cleared.
BRECCIA_HD constexpr float pow2_floor(float scale) {
  return formats::detail::bits_float(formats::detail::float_bits(scale) & 0xFF800000u);
}

// DelayedScaling's encode factor from a reference amax: (fmax * 2^-margin) / ref, or `previous`
// when ref is not a positive finite number.
BRECCIA_HD constexpr float delayed_encode_scale(float reference_amax, float fmax, int margin,
                                                float previous) {
  if (!(reference_amax > 0.0f) || !is_finite(reference_amax)) return previous;
  float target = fmax;
  for (int i = 0; i < margin; ++i) target *= 0.5f;
  for (int i = 0; i > margin; --i) target *= 2.0f;
  const float scale = target / reference_amax;
  return is_finite(scale) ? scale : kFloatMax;
}

// Decode multiplier stored in ScaledTensor.scale for an encode factor.
BRECCIA_HD constexpr float decode_scale(float encode_scale) {
  return 1.0f / encode_scale;
}

// --- OCP MX v1.0 (MXFP8, MXFP6, MXFP4) ----------------------------------------------

inline constexpr std::uint8_t kE8M0Nan = 0xFF;

// OCP rule: floor(log2 amax) - emax_elem from amax's fp32 exponent field, clamped to E8M0.
BRECCIA_HD constexpr std::uint8_t mx_scale_floor(float amax, int emax_elem) {
  if (!is_finite(amax)) return kE8M0Nan;
  const int exponent_field = static_cast<int>((formats::detail::float_bits(amax) >> 23) & 0xFF);
  int exponent = exponent_field - 127 - emax_elem;
  exponent = exponent < -127 ? -127 : exponent > 127 ? 127 : exponent;
  return static_cast<std::uint8_t>(exponent + 127);
}

// TransformerEngine / Blackwell rule: round amax * (1/fmax) up to a power of two.
BRECCIA_HD constexpr std::uint8_t mx_scale_rceil(float amax, float fmax) {
  if (!is_finite(amax)) return kE8M0Nan;
  const float ratio = amax * (1.0f / fmax);
  const std::uint32_t bits = formats::detail::float_bits(ratio);
  const std::uint32_t exponent_field = (bits >> 23) & 0xFF;
  const std::uint32_t mantissa = bits & 0x7FFFFFu;
  if (exponent_field == 0) return mantissa > 0x400000u ? 1 : 0;
  if (mantissa != 0 && exponent_field < 0xFE) return static_cast<std::uint8_t>(exponent_field + 1);
  return static_cast<std::uint8_t>(exponent_field);
}

// Element encode factor 2^(127 - code) of an E8M0 scale code (not for the NaN code).
BRECCIA_HD constexpr float mx_encode_factor(std::uint8_t code) {
  return formats::detail::exact_pow2(127 - static_cast<int>(code));
}

// --- NVFP4 (TransformerEngine's two-level rule) ------------------------------------------

// Per-tensor encode factor S_enc = 2688 / amax(tensor).
BRECCIA_HD constexpr float nvfp4_tensor_encode_scale(float tensor_amax) {
  if (tensor_amax == 0.0f || is_nan(tensor_amax)) return 1.0f;
  const float scale = kNvfp4GlobalRange / tensor_amax;
  if (scale == 0.0f) return 1.0f;
  return is_finite(scale) ? scale : kFloatMax;
}

// ScaledTensor.global_scale: the per-tensor decode factor amax / 2688.
BRECCIA_HD constexpr float nvfp4_global_scale(float tensor_amax) {
  return tensor_amax / kNvfp4GlobalRange;
}

// Element encode factor of a block: 1 / (decode(code) / S_enc), FLT_MAX for a zero scale.
BRECCIA_HD constexpr float nvfp4_block_encode_factor(std::uint8_t scale_code, float tensor_encode) {
  const float factor = 1.0f / (formats::E4M3::decode(scale_code) * (1.0f / tensor_encode));
  return is_finite(factor) ? factor : kFloatMax;
}

// --- INT4 (GPTQ / AWQ / compressed-tensors) ----------------------------------------------

// Symmetric scale amax / 7.5 before rounding to the scale dtype; 1 for an all-zero group.
BRECCIA_HD constexpr float int4_symmetric_scale(float amax) {
  return amax == 0.0f ? 1.0f : amax / 7.5f;
}

// Asymmetric scale (hi - lo) / 15, at least 1e-5, before rounding to the scale dtype.
BRECCIA_HD constexpr float int4_asymmetric_scale(float lo, float hi) {
  const float scale = (hi - lo) / 15.0f;
  return scale < 1e-5f ? 1e-5f : scale;
}

BRECCIA_HD constexpr float clamp_float(float x, float lo, float hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

// rne(x / scale), with a 0/0 from a scale that rounded to zero mapped to 0.
BRECCIA_HD constexpr float int4_rounded_quotient(float x, float scale) {
  const float quotient = x / scale;
  return is_nan(quotient) ? 0.0f : formats::round_half_even(quotient);
}

BRECCIA_HD constexpr int int4_zero_point(float lo, float scale) {
  return static_cast<int>(clamp_float(int4_rounded_quotient(-lo, scale), 0.0f, 15.0f));
}

BRECCIA_HD constexpr int int4_quantize_symmetric(float x, float scale) {
  return static_cast<int>(clamp_float(int4_rounded_quotient(x, scale), -8.0f, 7.0f));
}

BRECCIA_HD constexpr int int4_quantize_asymmetric(float x, float scale, int zero_point) {
  return static_cast<int>(
      clamp_float(int4_rounded_quotient(x, scale) + static_cast<float>(zero_point), 0.0f, 15.0f));
}

}  // namespace breccia::numerics
