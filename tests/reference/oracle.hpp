// A deliberately plain model of numerics.md, written from its text and independent of the code
// under test: element formats are decoded from the sign/exponent/mantissa formula and encoded by
// a nearest-value search over the decoded table, and every recipe is spelled out element by
// element over std::vector<float>. Nothing here includes breccia's formats or numerics headers,
// so a shared misreading cannot hide a bug. Slow on purpose; only for tests.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

namespace breccia::oracle {

// ---------------------------------------------------------------------------------------------
// Element formats (numerics.md §1)

enum class NanKind { kNone, kIEEE, kAllOnes };

struct FormatSpec {
  const char* name;
  int exponent_bits;
  int mantissa_bits;
  int bias;
  bool is_signed;
  bool has_infinity;
  NanKind nan;
  bool has_subnormals;
};

inline constexpr FormatSpec kE4M3{"E4M3", 4, 3, 7, true, false, NanKind::kAllOnes, true};
inline constexpr FormatSpec kE5M2{"E5M2", 5, 2, 15, true, true, NanKind::kIEEE, true};
inline constexpr FormatSpec kE8M0{"E8M0", 8, 0, 127, false, false, NanKind::kAllOnes, false};
inline constexpr FormatSpec kE2M1{"E2M1", 2, 1, 1, true, false, NanKind::kNone, true};
inline constexpr FormatSpec kF16{"fp16", 5, 10, 15, true, true, NanKind::kIEEE, true};
inline constexpr FormatSpec kBF16{"bf16", 8, 7, 127, true, true, NanKind::kIEEE, true};

inline int code_bits(const FormatSpec& f) {
  return f.exponent_bits + f.mantissa_bits + (f.is_signed ? 1 : 0);
}
inline std::uint32_t code_count(const FormatSpec& f) { return std::uint32_t{1} << code_bits(f); }
inline std::uint32_t sign_bit(const FormatSpec& f) {
  return f.is_signed ? std::uint32_t{1} << (code_bits(f) - 1) : 0;
}
inline std::uint32_t magnitude_mask(const FormatSpec& f) {
  return (std::uint32_t{1} << (f.exponent_bits + f.mantissa_bits)) - 1;
}
inline std::uint32_t exponent_field(const FormatSpec& f, std::uint32_t code) {
  return (code >> f.mantissa_bits) & ((std::uint32_t{1} << f.exponent_bits) - 1);
}
inline std::uint32_t mantissa_field(const FormatSpec& f, std::uint32_t code) {
  return code & ((std::uint32_t{1} << f.mantissa_bits) - 1);
}
inline bool exponent_all_ones(const FormatSpec& f, std::uint32_t code) {
  return exponent_field(f, code) == (std::uint32_t{1} << f.exponent_bits) - 1;
}

inline bool is_nan_code(const FormatSpec& f, std::uint32_t code) {
  switch (f.nan) {
    case NanKind::kNone:
      return false;
    case NanKind::kAllOnes:
      return (code & magnitude_mask(f)) == magnitude_mask(f);
    case NanKind::kIEEE:
      return exponent_all_ones(f, code) && mantissa_field(f, code) != 0;
  }
  return false;
}
inline bool is_infinity_code(const FormatSpec& f, std::uint32_t code) {
  return f.has_infinity && exponent_all_ones(f, code) && mantissa_field(f, code) == 0;
}

// sign x 2^(e - bias) x (1 + m / 2^M), or sign x 2^(1 - bias) x (m / 2^M) for subnormals.
inline double decode(const FormatSpec& f, std::uint32_t code) {
  if (is_nan_code(f, code)) return std::numeric_limits<double>::quiet_NaN();
  const double sign = (code & sign_bit(f)) != 0 ? -1.0 : 1.0;
  if (is_infinity_code(f, code)) return sign * std::numeric_limits<double>::infinity();
  const int e = static_cast<int>(exponent_field(f, code));
  const double m = static_cast<double>(mantissa_field(f, code)) / std::ldexp(1.0, f.mantissa_bits);
  if (e == 0 && f.has_subnormals) return sign * std::ldexp(m, 1 - f.bias);
  return sign * std::ldexp(1.0 + m, e - f.bias);
}
inline float decode_f32(const FormatSpec& f, std::uint32_t code) {
  return static_cast<float>(decode(f, code));  // exact: every code is an fp32 value
}

struct TableEntry {
  double value;
  std::uint32_t code;
};

// Non-negative finite values of a format with their codes, ascending.
inline const std::vector<TableEntry>& positive_table(const FormatSpec& f) {
  static std::map<const FormatSpec*, std::vector<TableEntry>> cache;
  auto [it, inserted] = cache.try_emplace(&f);
  if (inserted) {
    for (std::uint32_t code = 0; code < code_count(f); ++code) {
      if ((code & sign_bit(f)) != 0 || is_nan_code(f, code) || is_infinity_code(f, code)) continue;
      it->second.push_back({decode(f, code), code});
    }
    std::sort(it->second.begin(), it->second.end(),
              [](const TableEntry& a, const TableEntry& b) { return a.value < b.value; });
  }
  return it->second;
}

inline double max_finite(const FormatSpec& f) { return positive_table(f).back().value; }

// The NaN every quantizer writes: the all-ones magnitude (0x7F/0xFF for FP8), 0 without NaN.
inline std::uint32_t canonical_nan_code(const FormatSpec& f, bool negative) {
  if (f.nan == NanKind::kNone) return 0;
  return (negative ? sign_bit(f) : 0) | magnitude_mask(f);
}

enum class OverflowPolicy { kSaturate, kInfinity };

// Nearest code to v by search over the table. Ties go to the even code; E8M0 has no mantissa
// bit to be even, so its ties go to the larger power of two (as ml_dtypes does). A NaN gives the
// canonical NaN of the format (quantizers write exactly that; fp16/bf16 tests check only NaN-ness).
inline std::uint32_t encode(const FormatSpec& f, float v,
                            OverflowPolicy overflow = OverflowPolicy::kSaturate) {
  const bool negative = std::signbit(v);
  if (std::isnan(v)) return canonical_nan_code(f, negative);
  if (!f.is_signed && negative && v != 0.0f) return canonical_nan_code(f, true);
  const std::uint32_t sign = negative ? sign_bit(f) : 0;
  const double a = std::fabs(static_cast<double>(v));
  const auto& table = positive_table(f);
  const double max = table.back().value;
  if (a > max) {
    if (overflow == OverflowPolicy::kInfinity && f.has_infinity) {
      // IEEE rounding: the next value would be 2^(emax+1), whose mantissa is even.
      const double next = std::ldexp(1.0, std::ilogb(max) + 1);
      if (a >= (max + next) / 2) return sign | (magnitude_mask(f) >> f.mantissa_bits << f.mantissa_bits);
    }
    return sign | table.back().code;
  }
  const auto hi = std::lower_bound(table.begin(), table.end(), a,
                                   [](const TableEntry& e, double x) { return e.value < x; });
  if (hi->value == a || hi == table.begin()) return sign | hi->code;
  const auto lo = hi - 1;
  const double mid = (lo->value + hi->value) / 2;  // exact: neighbours differ by one step
  if (a < mid) return sign | lo->code;
  if (a > mid) return sign | hi->code;
  if (f.mantissa_bits == 0) return sign | hi->code;
  return sign | ((lo->code & 1) == 0 ? lo->code : hi->code);
}

// fp32 -> fp16/bf16 bits with IEEE rounding (RNE, overflow to inf, NaN stays NaN).
inline std::uint16_t to_f16_bits(float v) {
  return static_cast<std::uint16_t>(encode(kF16, v, OverflowPolicy::kInfinity));
}
inline std::uint16_t to_bf16_bits(float v) {
  return static_cast<std::uint16_t>(encode(kBF16, v, OverflowPolicy::kInfinity));
}
inline float f16_value(std::uint16_t bits) { return decode_f32(kF16, bits); }
inline float bf16_value(std::uint16_t bits) { return decode_f32(kBF16, bits); }

inline float round_f16(float v) { return f16_value(to_f16_bits(v)); }
inline float round_bf16(float v) { return bf16_value(to_bf16_bits(v)); }

// ---------------------------------------------------------------------------------------------
// Scale rules (numerics.md §3), as scalar functions of an amax

inline constexpr float kFltMax = std::numeric_limits<float>::max();

inline bool finite(float x) { return std::isfinite(x); }

// fp32 quotient, computed in double and rounded once (double rounding is innocuous for a
// quotient of two fp32 values); overflow to inf as fp32 division would.
inline float f32_div(float a, float b) {
  return static_cast<float>(static_cast<double>(a) / static_cast<double>(b));
}

// Float8CurrentScaling: fmax / amax; 1 for amax 0, inf or NaN; FLT_MAX if the quotient is inf.
inline float current_encode_scale(float amax, float fmax) {
  if (amax == 0.0f || !finite(amax)) return 1.0f;
  const float s = f32_div(fmax, amax);
  return std::isinf(s) ? kFltMax : s;
}

// 2^floor(log2 s) for a positive normal fp32 s (inf stays inf).
inline float pow2_floor(float s) {
  if (!finite(s)) return s;
  int exponent = 0;
  std::frexp(s, &exponent);  // s = f * 2^exponent, f in [0.5, 1)
  return std::ldexp(1.0f, exponent - 1);
}

inline float delayed_encode_scale(float reference_amax, float fmax, int margin, float previous) {
  if (!(reference_amax > 0.0f) || !finite(reference_amax)) return previous;
  const float target = std::ldexp(fmax, -margin);
  const float s = f32_div(target, reference_amax);
  return std::isinf(s) ? kFltMax : s;
}

// MX "floor": floor(log2 amax) - emax_elem, fp32 subnormals and 0 counting as 2^-127.
inline std::uint8_t mx_floor_code(float amax, int emax_elem) {
  if (!finite(amax)) return 0xFF;
  int floor_log2 = -127;
  if (amax >= std::ldexp(1.0f, -126)) {
    int exponent = 0;
    std::frexp(amax, &exponent);
    floor_log2 = exponent - 1;
  }
  const int e = std::clamp(floor_log2 - emax_elem, -127, 127);
  return static_cast<std::uint8_t>(e + 127);
}

// MX "rceil": v = amax * (1/fmax) in fp32, rounded up to a power of two (code 254 at most);
// a subnormal v gives code 1 only above 2^-127.
inline std::uint8_t mx_rceil_code(float amax, float fmax) {
  if (!finite(amax)) return 0xFF;
  const float v = amax * (1.0f / fmax);
  if (v == 0.0f) return 0;
  if (v < std::ldexp(1.0f, -126)) return v > std::ldexp(1.0f, -127) ? 1 : 0;
  int exponent = 0;
  const float fraction = std::frexp(v, &exponent);  // v = fraction * 2^exponent
  const int ceil_log2 = fraction == 0.5f ? exponent - 1 : exponent;
  return static_cast<std::uint8_t>(std::min(ceil_log2 + 127, 254));
}

inline float e8m0_value(std::uint8_t code) {
  return code == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, code - 127);
}

// NVFP4 per-tensor encode factor S_enc.
inline float nvfp4_tensor_encode(float g) {
  if (g == 0.0f || std::isnan(g)) return 1.0f;
  const float s = f32_div(2688.0f, g);
  if (s == 0.0f) return 1.0f;
  return std::isinf(s) ? kFltMax : s;
}

inline std::uint8_t nvfp4_block_code(float block_amax, float tensor_encode) {
  const float factor = tensor_encode * (1.0f / 6.0f);
  return static_cast<std::uint8_t>(encode(kE4M3, block_amax * factor));
}

inline float nvfp4_block_encode(std::uint8_t code, float tensor_encode) {
  const float decode_scale = decode_f32(kE4M3, code) * (1.0f / tensor_encode);
  const float e = f32_div(1.0f, decode_scale);
  return std::isinf(e) ? kFltMax : e;
}

// Round half to even with the default floating-point environment.
inline float rne_integer(float x) { return std::nearbyint(x); }

}  // namespace breccia::oracle
