// The element formats breccia reads and writes, as instances of the one Minifloat template
// (FP8, the OCP MX FP6 and FP4 formats, the E8M0 scale, fp16/bf16), plus the 4-bit integer
// formats and nibble packing.
#pragma once

#include <cstdint>

#include "breccia/formats/minifloat.hpp"

namespace breccia::formats {

//                                  exp man bias signed  inf    NaN                  subn  payload
using E4M3 = Minifloat<FormatTraits{4, 3, 7, true, false, NanEncoding::kAllOnes, true, false}>;
using E5M2 = Minifloat<FormatTraits{5, 2, 15, true, true, NanEncoding::kIEEE, true, false}>;
using E8M0 = Minifloat<FormatTraits{8, 0, 127, false, false, NanEncoding::kAllOnes, false, false}>;
using E2M1 = Minifloat<FormatTraits{2, 1, 1, true, false, NanEncoding::kNone, true, false}>;
using E2M3 = Minifloat<FormatTraits{2, 3, 1, true, false, NanEncoding::kNone, true, false}>;
using E3M2 = Minifloat<FormatTraits{3, 2, 3, true, false, NanEncoding::kNone, true, false}>;
using F16 = Minifloat<FormatTraits{5, 10, 15, true, true, NanEncoding::kIEEE, true, true}>;
using BF16 = Minifloat<FormatTraits{8, 7, 127, true, true, NanEncoding::kIEEE, true, true}>;

static_assert(E4M3::decode(E4M3::kMaxFiniteCode) == 448.0f);
static_assert(E5M2::decode(E5M2::kMaxFiniteCode) == 57344.0f);
static_assert(E2M1::decode(E2M1::kMaxFiniteCode) == 6.0f);
static_assert(E2M3::decode(E2M3::kMaxFiniteCode) == 7.5f);
static_assert(E3M2::decode(E3M2::kMaxFiniteCode) == 28.0f);
static_assert(F16::decode(F16::kMaxFiniteCode) == 65504.0f);

// x rounded to the nearest integer, ties to even (exact for every fp32; NaN stays NaN).
BRECCIA_HD constexpr float round_half_even(float x) {
  const std::uint32_t bits = detail::float_bits(x);
  const std::uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits >= 0x4B000000u) return x;  // |x| >= 2^23 (or inf/NaN): already integral
  const float magnitude = detail::bits_float(abs_bits);
  // Adding 2^23 leaves no fraction bits, so the fp32 addition itself rounds half to even.
  const float rounded = (magnitude + 8388608.0f) - 8388608.0f;
  return detail::bits_float(detail::float_bits(rounded) | (bits & 0x80000000u));
}

// 4-bit integers: signed in [-8, 7] stored two's complement, unsigned in [0, 15].
BRECCIA_HD constexpr std::uint8_t int4_to_nibble(int value) {
  return static_cast<std::uint8_t>(value & 0xF);
}
BRECCIA_HD constexpr int nibble_to_int4(std::uint8_t nibble, bool is_signed) {
  return is_signed ? static_cast<int>(nibble ^ 0x8) - 8 : static_cast<int>(nibble);
}

// Two 4-bit codes per byte along the last axis: element 2i low nibble, 2i+1 high nibble.
BRECCIA_HD constexpr std::uint8_t pack_nibbles(std::uint8_t even, std::uint8_t odd) {
  return static_cast<std::uint8_t>((even & 0xF) | ((odd & 0xF) << 4));
}
BRECCIA_HD constexpr std::uint8_t unpack_nibble(std::uint8_t byte, std::int64_t element_index) {
  return (element_index & 1) != 0 ? static_cast<std::uint8_t>(byte >> 4)
                                  : static_cast<std::uint8_t>(byte & 0xF);
}

}  // namespace breccia::formats
