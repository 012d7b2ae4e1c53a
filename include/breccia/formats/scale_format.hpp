// The logical formats of a scale tensor's entries: what a stored scale means, independent of
// the dtype that holds its bytes (an E8M0 scale may be stored as uint8). constexpr and
// host/device, shared by every kernel that reads or writes scales.
#pragma once

#include <cstdint>

#include "breccia/formats/formats.hpp"

namespace breccia {

enum class ScaleFormat : std::uint8_t {
  kE8M0,  // OCP MX: a power of two, code 0xFF is NaN
  kE4M3,  // NVFP4's block scales
  kF32,
  kF16,
  kBF16,
};

// Bytes of one stored scale.
BRECCIA_HD constexpr int scale_bytes(ScaleFormat format) {
  switch (format) {
    case ScaleFormat::kE8M0:
    case ScaleFormat::kE4M3:
      return 1;
    case ScaleFormat::kF16:
    case ScaleFormat::kBF16:
      return 2;
    case ScaleFormat::kF32:
      break;
  }
  return 4;
}

// The fp32 value of a stored scale's bits (the low scale_bytes() bytes).
BRECCIA_HD constexpr float decode_scale_bits(ScaleFormat format, std::uint32_t bits) {
  switch (format) {
    case ScaleFormat::kE8M0:
      return formats::E8M0::decode(bits & 0xFFu);
    case ScaleFormat::kE4M3:
      return formats::E4M3::decode(bits & 0xFFu);
    case ScaleFormat::kF16:
      return formats::F16::decode(bits & 0xFFFFu);
    case ScaleFormat::kBF16:
      return formats::BF16::decode(bits & 0xFFFFu);
    case ScaleFormat::kF32:
      break;
  }
  return formats::detail::bits_float(bits);
}

// A wide-float scale (fp32, fp16 or bf16) rounded to its format, RNE with overflow to inf:
// the value as stored, and its bits in `bits`.
BRECCIA_HD constexpr float round_wide_scale(ScaleFormat format, float raw, std::uint32_t& bits) {
  if (format == ScaleFormat::kF16) {
    bits = formats::F16::encode(raw, formats::Overflow::kInfinity);
    return formats::F16::decode(bits);
  }
  if (format == ScaleFormat::kBF16) {
    bits = formats::BF16::encode(raw, formats::Overflow::kInfinity);
    return formats::BF16::decode(bits);
  }
  bits = formats::detail::float_bits(raw);
  return raw;
}

}  // namespace breccia
