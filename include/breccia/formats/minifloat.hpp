// One generic binary floating-point format, parameterised by its traits, with exact decode and
// round-to-nearest-even encode from fp32. E4M3, E5M2, E8M0, E2M1, fp16 and bf16 are all
// instances (formats.hpp). Everything is constexpr and usable from CUDA device code.
#pragma once

#include <bit>
#include <cstdint>

#if defined(__CUDACC__)
#define BRECCIA_HD __host__ __device__
#else
#define BRECCIA_HD
#endif

namespace breccia::formats {

// How a format spends its top codes on non-finite values.
enum class NanEncoding : std::uint8_t {
  kNone,     // no NaN (E2M1)
  kIEEE,     // exponent all ones, mantissa non-zero (E5M2, fp16, bf16)
  kAllOnes,  // only the all-ones magnitude is NaN (E4M3fn, E8M0)
};

// What encode does with a finite value beyond the largest finite one, and with infinities.
enum class Overflow : std::uint8_t {
  kSaturate,  // clamp to +-max finite ("satfinite"): the quantization rule
  kInfinity,  // IEEE conversion: +-inf (formats without inf saturate anyway)
};

struct FormatTraits {
  int exponent_bits;
  int mantissa_bits;
  int bias;
  bool is_signed;
  bool has_infinity;
  NanEncoding nan;
  bool has_subnormals;     // false: exponent field 0 is an ordinary power of two (E8M0)
  bool keeps_nan_payload;  // NaN keeps the top fp32 payload bits, quieted (fp16/bf16)
};

namespace detail {

BRECCIA_HD constexpr std::uint32_t float_bits(float value) {
  return std::bit_cast<std::uint32_t>(value);
}
BRECCIA_HD constexpr float bits_float(std::uint32_t bits) {
  return std::bit_cast<float>(bits);
}

// 2^exponent as an exact fp32, for exponent in [-149, 127].
BRECCIA_HD constexpr float exact_pow2(int exponent) {
  return exponent >= -126 ? bits_float(static_cast<std::uint32_t>(exponent + 127) << 23)
                          : bits_float(std::uint32_t{1} << (exponent + 149));
}

// value / 2^shift rounded to nearest, ties to even (shift >= 0).
BRECCIA_HD constexpr std::uint32_t shift_right_rne(std::uint32_t value, int shift) {
  if (shift == 0) return value;
  if (shift >= 32) return 0;  // value < 2^24 is below half of 2^shift
  const std::uint32_t quotient = value >> shift;
  const std::uint32_t remainder = value & ((std::uint32_t{1} << shift) - 1);
  const std::uint32_t half = std::uint32_t{1} << (shift - 1);
  const bool round_up = remainder > half || (remainder == half && (quotient & 1) != 0);
  return quotient + (round_up ? 1 : 0);
}

}  // namespace detail

template <FormatTraits kTraits>
struct Minifloat {
  static constexpr FormatTraits traits = kTraits;
  static constexpr int kExponentBits = kTraits.exponent_bits;
  static constexpr int kMantissaBits = kTraits.mantissa_bits;
  static constexpr int kBits = kExponentBits + kMantissaBits + (kTraits.is_signed ? 1 : 0);
  static constexpr std::uint32_t kMagnitudeMask =
      (std::uint32_t{1} << (kBits - (kTraits.is_signed ? 1 : 0))) - 1;
  static constexpr std::uint32_t kSignBit = kTraits.is_signed ? std::uint32_t{1} << (kBits - 1) : 0;
  static constexpr std::uint32_t kMantissaMask = (std::uint32_t{1} << kMantissaBits) - 1;
  static constexpr std::uint32_t kExponentAllOnes = (std::uint32_t{1} << kExponentBits) - 1;
  static constexpr bool kTopExponentReserved =
      kTraits.has_infinity || kTraits.nan == NanEncoding::kIEEE;
  // Smallest unbiased exponent of a normal value.
  static constexpr int kMinExponent = (kTraits.has_subnormals ? 1 : 0) - kTraits.bias;

  // Code of the largest finite magnitude.
  static constexpr std::uint32_t kMaxFiniteCode =
      kTopExponentReserved ? ((kExponentAllOnes - 1) << kMantissaBits) | kMantissaMask
      : kTraits.nan == NanEncoding::kAllOnes ? kMagnitudeMask - 1
                                             : kMagnitudeMask;
  static constexpr std::uint32_t kInfinityCode = kExponentAllOnes << kMantissaBits;
  // The NaN every quantizer writes: all-ones magnitude (0x7F/0xFF for FP8).
  static constexpr std::uint32_t kNanCode = kMagnitudeMask;

  BRECCIA_HD static constexpr bool is_nan(std::uint32_t code) {
    const std::uint32_t magnitude = code & kMagnitudeMask;
    if constexpr (kTraits.nan == NanEncoding::kAllOnes) return magnitude == kMagnitudeMask;
    if constexpr (kTraits.nan == NanEncoding::kIEEE)
      return (magnitude >> kMantissaBits) == kExponentAllOnes && (magnitude & kMantissaMask) != 0;
    return false;
  }

  // Exact fp32 value of a code.
  BRECCIA_HD static constexpr float decode(std::uint32_t code) {
    const bool negative = (code & kSignBit) != 0;
    const std::uint32_t magnitude = code & kMagnitudeMask;
    const std::uint32_t exponent_field = magnitude >> kMantissaBits;
    const std::uint32_t mantissa = magnitude & kMantissaMask;
    float value = 0.0f;
    if (is_nan(code)) {
      value = detail::bits_float(0x7FC00000u);
    } else if (kTraits.has_infinity && exponent_field == kExponentAllOnes) {
      value = detail::bits_float(0x7F800000u);
    } else if (exponent_field == 0 && kTraits.has_subnormals) {
      value = static_cast<float>(mantissa) * detail::exact_pow2(kMinExponent - kMantissaBits);
    } else {
      const std::uint32_t significand = (std::uint32_t{1} << kMantissaBits) | mantissa;
      value = static_cast<float>(significand) *
              detail::exact_pow2(static_cast<int>(exponent_field) - kTraits.bias - kMantissaBits);
    }
    return negative ? -value : value;
  }

  // Nearest code to `value`, ties to even; NaN as numerics.md §1 says.
  BRECCIA_HD static constexpr std::uint32_t encode(float value,
                                                   Overflow overflow = Overflow::kSaturate) {
    const std::uint32_t bits = detail::float_bits(value);
    const bool negative = (bits >> 31) != 0;
    const std::uint32_t abs_bits = bits & 0x7FFFFFFFu;
    if (abs_bits > 0x7F800000u) return encode_nan(bits);
    if (!kTraits.is_signed && negative && abs_bits != 0) return encode_nan(bits);
    const std::uint32_t sign = negative ? kSignBit : 0;
    if (abs_bits == 0x7F800000u) return sign | overflow_code(overflow);
    if (abs_bits == 0) return sign;

    // |value| = significand * 2^(exponent - 23), significand normalised to [2^23, 2^24).
    int exponent = static_cast<int>(abs_bits >> 23) - 127;
    std::uint32_t significand = abs_bits & 0x7FFFFFu;
    if ((abs_bits >> 23) == 0) {
      exponent = -126;
      while (significand < 0x800000u) {
        significand <<= 1;
        --exponent;
      }
    } else {
      significand |= 0x800000u;
    }

    std::uint32_t magnitude = 0;
    if (exponent >= kMinExponent) {
      // Normal: keep kMantissaBits fraction bits; a carry out of the mantissa bumps the exponent.
      const std::uint32_t rounded = detail::shift_right_rne(significand, 23 - kMantissaBits);
      const auto biased = static_cast<std::uint32_t>(exponent + kTraits.bias);
      const std::uint64_t wide = (static_cast<std::uint64_t>(biased) << kMantissaBits) + rounded -
                                 (std::uint64_t{1} << kMantissaBits);
      if (wide > kMaxFiniteCode) return sign | overflow_code(overflow);
      magnitude = static_cast<std::uint32_t>(wide);
    } else if constexpr (kTraits.has_subnormals) {
      // Subnormal: the rounded value may carry into the smallest normal code, which is right.
      magnitude =
          detail::shift_right_rne(significand, 23 - kMantissaBits + (kMinExponent - exponent));
    } else {
      // No subnormals and no zero (E8M0): everything below the smallest power rounds up to it.
      magnitude = 0;
    }
    return sign | magnitude;
  }

 private:
  BRECCIA_HD static constexpr std::uint32_t overflow_code(Overflow overflow) {
    if (overflow == Overflow::kInfinity && kTraits.has_infinity) return kInfinityCode;
    return kMaxFiniteCode;
  }

  BRECCIA_HD static constexpr std::uint32_t encode_nan(std::uint32_t bits) {
    if constexpr (kTraits.nan == NanEncoding::kNone) {
      return 0;
    } else {
      const std::uint32_t sign = (bits >> 31) != 0 ? kSignBit : 0;
      if constexpr (kTraits.keeps_nan_payload) {
        const std::uint32_t quiet = std::uint32_t{1} << (kMantissaBits - 1);
        const std::uint32_t payload = (bits & 0x7FFFFFu) >> (23 - kMantissaBits);
        return sign | kInfinityCode | quiet | payload;
      } else {
        return sign | kNanCode;
      }
    }
  }
};

}  // namespace breccia::formats
