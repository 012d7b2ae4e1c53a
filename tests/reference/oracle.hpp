// A deliberately plain model of numerics.md, written from its text and independent of the code
// under test: element formats are decoded from the sign/exponent/mantissa formula and encoded by
// a nearest-value search over the decoded table, and every recipe is spelled out element by
// element over std::vector<float>. Nothing here includes breccia's formats or numerics headers,
// so a shared misreading cannot hide a bug; only the checks section at the end calls
// breccia::cast, to compare with it. Slow on purpose; only for tests.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "breccia/array.hpp"
#include "breccia/ops.hpp"  // only the checks section at the end calls it
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

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
inline constexpr FormatSpec kE2M3{"E2M3", 2, 3, 1, true, false, NanKind::kNone, true};
inline constexpr FormatSpec kE3M2{"E3M2", 3, 2, 3, true, false, NanKind::kNone, true};
inline constexpr FormatSpec kF16{"fp16", 5, 10, 15, true, true, NanKind::kIEEE, true};
inline constexpr FormatSpec kBF16{"bf16", 8, 7, 127, true, true, NanKind::kIEEE, true};

inline int code_bits(const FormatSpec& f) {
  return f.exponent_bits + f.mantissa_bits + (f.is_signed ? 1 : 0);
}
inline std::uint32_t code_count(const FormatSpec& f) {
  return std::uint32_t{1} << code_bits(f);
}
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

inline double max_finite(const FormatSpec& f) {
  return positive_table(f).back().value;
}

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
      if (a >= (max + next) / 2)
        return sign | (magnitude_mask(f) >> f.mantissa_bits << f.mantissa_bits);
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
inline float f16_value(std::uint16_t bits) {
  return decode_f32(kF16, bits);
}
inline float bf16_value(std::uint16_t bits) {
  return decode_f32(kBF16, bits);
}

inline float round_f16(float v) {
  return f16_value(to_f16_bits(v));
}
inline float round_bf16(float v) {
  return bf16_value(to_bf16_bits(v));
}

// ---------------------------------------------------------------------------------------------
// Scale rules (numerics.md §3), as scalar functions of an amax

inline constexpr float kFltMax = std::numeric_limits<float>::max();

inline bool finite(float x) {
  return std::isfinite(x);
}

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
inline float rne_integer(float x) {
  return std::nearbyint(x);
}

// ---------------------------------------------------------------------------------------------
// Recipes (numerics.md §3), element by element

// NaN wins; otherwise the larger. Amax values are magnitudes, so a NaN here is positive.
inline float nan_max(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  return a > b ? a : b;
}

// DelayedScaling's state as numerics.md describes it.
struct DelayedState {
  float encode_scale = 1.0f;
  std::vector<float> history;
};

// What cast() must produce, as raw bytes, plus what dequantize() must give back in fp32.
struct Quantized {
  std::vector<std::int64_t> data_shape;
  std::vector<std::uint8_t> data;
  std::vector<std::int64_t> scale_shape;
  int scale_itemsize = 4;
  std::vector<std::uint8_t> scale;  // scale_itemsize bytes per unit, little-endian
  std::vector<bool> scale_is_nan;   // per unit: any NaN encoding is acceptable there
  bool has_global_scale = false;
  float global_scale = 0.0f;
  bool has_zero_point = false;
  std::vector<std::uint8_t> zero_point;  // one per scale unit
  std::vector<float> dequantized;        // logical shape, fp32
  // Per element: half the spacing of the format around its code, times the decode multiplier of
  // its unit; the most |x - dequantized| may be. Infinity where there is no such bound: the code
  // saturated, the block is NaN or the multiplier is not finite.
  std::vector<float> half_step;
};

namespace detail {

inline void append_bytes(std::vector<std::uint8_t>& out, std::uint32_t bits, int count) {
  for (int i = 0; i < count; ++i) out.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
}

inline std::uint32_t f32_bits(float x) {
  return std::bit_cast<std::uint32_t>(x);
}

// Half the larger gap between a code's value and its neighbours, times `multiplier`; infinity
// for the largest magnitude (it may have saturated) and for a non-finite multiplier.
inline float half_step(const FormatSpec& f, std::uint32_t code, float multiplier) {
  const auto& table = positive_table(f);
  const std::uint32_t magnitude = code & magnitude_mask(f);
  const float inf = std::numeric_limits<float>::infinity();
  if (magnitude == table.back().code || !std::isfinite(multiplier) || is_nan_code(f, code))
    return inf;
  double gap = table[magnitude + 1].value - table[magnitude].value;
  if (magnitude > 0) gap = std::max(gap, table[magnitude].value - table[magnitude - 1].value);
  return static_cast<float>(gap / 2 * multiplier);
}

// The input seen as (batch, rows, cols); a 1-D tensor is one row.
struct Geometry {
  std::int64_t batch = 1, rows = 1, cols = 1;
  std::vector<std::int64_t> batch_dims;

  explicit Geometry(const std::vector<std::int64_t>& shape) {
    cols = shape.back();
    if (shape.size() >= 2) rows = shape[shape.size() - 2];
    for (std::size_t i = 0; i + 2 < shape.size(); ++i) {
      batch *= shape[i];
      batch_dims.push_back(shape[i]);
    }
  }
};

// A grid of block_rows x block_cols tiles over each batch's (rows, cols) matrix.
struct Tiling {
  std::int64_t block_rows, block_cols, tile_rows, tile_cols;
  Tiling(const Geometry& g, std::int64_t br, std::int64_t bc)
      : block_rows(br),
        block_cols(bc),
        tile_rows((g.rows + br - 1) / br),
        tile_cols((g.cols + bc - 1) / bc) {}
  std::int64_t count(const Geometry& g) const { return g.batch * tile_rows * tile_cols; }
  std::int64_t index(std::int64_t b, std::int64_t r, std::int64_t c) const {
    return (b * tile_rows + r / block_rows) * tile_cols + c / block_cols;
  }
};

template <class Visit>
void for_each_element(const Geometry& g, Visit&& visit) {
  std::int64_t flat = 0;
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t r = 0; r < g.rows; ++r)
      for (std::int64_t c = 0; c < g.cols; ++c) visit(flat++, b, r, c);
}

inline std::vector<float> unit_amax(const Geometry& g, const Tiling& t,
                                    const std::vector<float>& x) {
  std::vector<float> amax(t.count(g), 0.0f);
  for_each_element(g, [&](std::int64_t i, std::int64_t b, std::int64_t r, std::int64_t c) {
    float& a = amax[t.index(b, r, c)];
    a = nan_max(a, std::fabs(x[i]));
  });
  return amax;
}

inline std::vector<std::int64_t> scale_shape(const Geometry& g, const Tiling& t, bool ndim2) {
  std::vector<std::int64_t> shape = g.batch_dims;
  if (ndim2) shape.push_back(t.tile_rows);
  shape.push_back(t.tile_cols);
  return shape;
}

// Element block of a block recipe along `axis`: (1, size) rowwise or (size, 1) columnwise.
inline std::pair<std::int64_t, std::int64_t> along(int axis, std::int64_t size) {
  return axis == -1 ? std::pair{std::int64_t{1}, size} : std::pair{size, std::int64_t{1}};
}

inline const FormatSpec& fp8_spec(Fp8Format f) {
  return f == Fp8Format::kE4M3 ? kE4M3 : kE5M2;
}
inline float fp8_max(Fp8Format f) {
  return f == Fp8Format::kE4M3 ? 448.0f : 57344.0f;
}
inline int fp8_emax(Fp8Format f) {
  return f == Fp8Format::kE4M3 ? 8 : 15;
}

inline void set_packed(std::vector<std::uint8_t>& data, std::int64_t i, std::uint32_t nibble) {
  data[i / 2] |= static_cast<std::uint8_t>((nibble & 0xF) << (i % 2 == 0 ? 0 : 4));
}

// FP8 data under one encode factor per tile (per-tensor recipes: one tile).
inline Quantized fp8_with_scales(const std::vector<std::int64_t>& shape, const Geometry& g,
                                 const Tiling& t, const std::vector<float>& x, Fp8Format format,
                                 const std::vector<float>& encode_scales, bool per_tensor) {
  Quantized q;
  q.data_shape = shape;
  q.scale_shape = per_tensor ? std::vector<std::int64_t>{} : scale_shape(g, t, shape.size() >= 2);
  for (float s : encode_scales) {
    const float decode_scale = f32_div(1.0f, s);
    append_bytes(q.scale, f32_bits(decode_scale), 4);
    q.scale_is_nan.push_back(false);
  }
  q.data.resize(x.size());
  q.dequantized.resize(x.size());
  q.half_step.resize(x.size());
  for_each_element(g, [&](std::int64_t i, std::int64_t b, std::int64_t r, std::int64_t c) {
    const float s = encode_scales[per_tensor ? 0 : t.index(b, r, c)];
    const std::uint32_t code = encode(fp8_spec(format), x[i] * s);
    q.data[i] = static_cast<std::uint8_t>(code);
    q.dequantized[i] = decode_f32(fp8_spec(format), code) * f32_div(1.0f, s);
    q.half_step[i] = half_step(fp8_spec(format), code, f32_div(1.0f, s));
  });
  return q;
}

// The OCP MX family: one E8M0 code per `block` elements along `axis`; elements of `spec`
// (4-bit ones packed two per byte); a NaN scale (0xFF) makes every element the format's NaN
// code, or 0 where the format has none.
inline Quantized mx(const std::vector<std::int64_t>& shape, const Geometry& g,
                    const std::vector<float>& x, int axis, std::int64_t block,
                    MXScaleRounding rounding, const FormatSpec& spec, int emax, float fmax) {
  const auto [br, bc] = along(axis, block);
  const Tiling t(g, br, bc);
  std::vector<std::uint8_t> codes;
  for (float amax : unit_amax(g, t, x)) {
    codes.push_back(rounding == MXScaleRounding::kFloor ? mx_floor_code(amax, emax)
                                                        : mx_rceil_code(amax, fmax));
  }
  const bool packed = code_bits(spec) == 4;
  Quantized q;
  q.data_shape = shape;
  if (packed) q.data_shape.back() /= 2;
  q.scale_shape = scale_shape(g, t, true);
  q.scale_itemsize = 1;
  q.scale = codes;
  q.scale_is_nan.assign(codes.size(), false);  // the NaN scale has one code, 0xFF
  q.data.assign(packed ? x.size() / 2 : x.size(), 0);
  q.dequantized.resize(x.size());
  for_each_element(g, [&](std::int64_t i, std::int64_t b, std::int64_t row, std::int64_t c) {
    const std::uint8_t code = codes[t.index(b, row, c)];
    const std::uint32_t element = code == 0xFF ? canonical_nan_code(spec, false)
                                               : encode(spec, x[i] * std::ldexp(1.0f, 127 - code));
    if (packed) {
      set_packed(q.data, i, element);
    } else {
      q.data[i] = static_cast<std::uint8_t>(element);
    }
    q.dequantized[i] = decode_f32(spec, element) * e8m0_value(code);
    q.half_step.push_back(half_step(spec, element, e8m0_value(code)));
  });
  return q;
}

inline float rounded_to(Int4ScaleDType dtype, float s) {
  switch (dtype) {
    case Int4ScaleDType::kF16:
      return round_f16(s);
    case Int4ScaleDType::kBF16:
      return round_bf16(s);
    case Int4ScaleDType::kF32:
      break;
  }
  return s;
}

inline void append_scale(Quantized& q, Int4ScaleDType dtype, float s) {
  switch (dtype) {
    case Int4ScaleDType::kF16:
      append_bytes(q.scale, to_f16_bits(s), 2);
      return;
    case Int4ScaleDType::kBF16:
      append_bytes(q.scale, to_bf16_bits(s), 2);
      return;
    case Int4ScaleDType::kF32:
      append_bytes(q.scale, f32_bits(s), 4);
      return;
  }
}

// rne(x / s) with the 0/0 of a scale that rounded to zero read as 0 (numerics.hpp's choice;
// numerics.md does not say).
inline float int4_quotient(float x, float s) {
  const float quotient = x / s;
  return std::isnan(quotient) ? 0.0f : rne_integer(quotient);
}

}  // namespace detail

// DelayedScaling's update after quantizing a tensor whose amax is `amax`.
inline void delayed_update(DelayedState& state, const DelayedScaling& recipe, float amax) {
  auto& h = state.history;
  h[0] = nan_max(h[0], amax);
  float reference = 0.0f;
  for (float v : h) reference = nan_max(reference, v);
  std::rotate(h.begin(), h.begin() + 1, h.end());  // numpy roll(h, -1)
  h[0] = 0.0f;
  state.encode_scale = delayed_encode_scale(reference, detail::fp8_max(recipe.fp8_format),
                                            static_cast<int>(recipe.margin), state.encode_scale);
}

// The expected result of cast(x, recipe) for fp32 values x of `shape` (row-major).
inline Quantized quantize(const std::vector<std::int64_t>& shape, const std::vector<float>& x,
                          const Recipe& recipe, int axis = -1, DelayedState* state = nullptr) {
  using detail::Geometry;
  using detail::Tiling;
  const Geometry g(shape);

  if (const auto* r = std::get_if<Float8CurrentScaling>(&recipe)) {
    const Tiling whole(g, g.rows, g.cols);
    float amax = 0.0f;
    for (float v : x) amax = nan_max(amax, std::fabs(v));
    float s = current_encode_scale(amax, detail::fp8_max(r->fp8_format));
    if (r->power_2_scale) s = pow2_floor(s);
    return detail::fp8_with_scales(shape, g, whole, x, r->fp8_format, {s}, true);
  }

  if (const auto* r = std::get_if<DelayedScaling>(&recipe)) {
    const Tiling whole(g, g.rows, g.cols);
    float amax = 0.0f;
    for (float v : x) amax = nan_max(amax, std::fabs(v));
    const float fmax = detail::fp8_max(r->fp8_format);
    if (state == nullptr) {  // stateless: one fresh step whose reference amax is this tensor's
      const float s = delayed_encode_scale(amax, fmax, static_cast<int>(r->margin), 1.0f);
      return detail::fp8_with_scales(shape, g, whole, x, r->fp8_format, {s}, true);
    }
    Quantized q =
        detail::fp8_with_scales(shape, g, whole, x, r->fp8_format, {state->encode_scale}, true);
    delayed_update(*state, *r, amax);
    return q;
  }

  if (const auto* r = std::get_if<Float8BlockScaling>(&recipe)) {
    const Tiling t =
        axis == -1 ? Tiling(g, r->block_m, r->block_k) : Tiling(g, r->block_k, r->block_m);
    std::vector<float> scales;
    for (float amax : detail::unit_amax(g, t, x)) {
      float s = current_encode_scale(amax, detail::fp8_max(r->fp8_format));
      scales.push_back(r->power_2_scale ? pow2_floor(s) : s);
    }
    return detail::fp8_with_scales(shape, g, t, x, r->fp8_format, scales, false);
  }

  if (const auto* r = std::get_if<MXFP8BlockScaling>(&recipe)) {
    return detail::mx(shape, g, x, axis, r->block_size, r->scale_rounding,
                      detail::fp8_spec(r->fp8_format), detail::fp8_emax(r->fp8_format),
                      detail::fp8_max(r->fp8_format));
  }
  if (const auto* r = std::get_if<MXFP6BlockScaling>(&recipe)) {
    // numerics.md §3's table: E2M3 max 7.5, emax 2; E3M2 max 28, emax 4.
    const bool e2m3 = r->fp6_format == Fp6Format::kE2M3;
    return detail::mx(shape, g, x, axis, r->block_size, r->scale_rounding, e2m3 ? kE2M3 : kE3M2,
                      e2m3 ? 2 : 4, e2m3 ? 7.5f : 28.0f);
  }
  if (const auto* r = std::get_if<MXFP4BlockScaling>(&recipe)) {
    return detail::mx(shape, g, x, axis, r->block_size, r->scale_rounding, kE2M1, 2, 6.0f);
  }

  if (const auto* r = std::get_if<NVFP4BlockScaling>(&recipe)) {
    const auto [br, bc] = detail::along(axis, r->block_size);
    const Tiling t(g, br, bc);
    const Tiling amax_tiles = r->two_d ? Tiling(g, r->block_size, r->block_size) : t;
    float tensor_amax = 0.0f;
    for (float v : x) tensor_amax = nan_max(tensor_amax, std::fabs(v));
    const float s_enc = nvfp4_tensor_encode(tensor_amax);
    const std::vector<float> tile_amax = detail::unit_amax(g, amax_tiles, x);

    Quantized q;
    q.data_shape = shape;
    q.data_shape.back() /= 2;
    q.scale_shape = detail::scale_shape(g, t, true);
    q.scale_itemsize = 1;
    q.scale.assign(t.count(g), 0);
    q.scale_is_nan.assign(t.count(g), false);
    q.has_global_scale = true;
    q.global_scale = f32_div(tensor_amax, 2688.0f);
    // Scale codes per block: the block's amax tile (itself, or its 16x16 tile when two_d).
    detail::for_each_element(g, [&](std::int64_t, std::int64_t b, std::int64_t row,
                                    std::int64_t c) {
      q.scale[t.index(b, row, c)] = nvfp4_block_code(tile_amax[amax_tiles.index(b, row, c)], s_enc);
    });
    q.data.assign(x.size() / 2, 0);
    q.dequantized.resize(x.size());
    detail::for_each_element(
        g, [&](std::int64_t i, std::int64_t b, std::int64_t row, std::int64_t c) {
          const std::uint8_t sd = q.scale[t.index(b, row, c)];
          std::uint32_t element = 0;  // a NaN block scale: every element 0
          if (!is_nan_code(kE4M3, sd))
            element = encode(kE2M1, x[i] * nvfp4_block_encode(sd, s_enc));
          detail::set_packed(q.data, i, element);
          // The block's full decode factor first, as TransformerEngine and torchao compute it.
          q.dequantized[i] = decode_f32(kE2M1, element) * (decode_f32(kE4M3, sd) * q.global_scale);
          q.half_step.push_back(
              detail::half_step(kE2M1, element, decode_f32(kE4M3, sd) * q.global_scale));
        });
    return q;
  }

  const auto& r = std::get<INT4Scaling>(recipe);
  const std::int64_t group = r.group_size == -1 ? g.cols : r.group_size;
  const auto [br, bc] = detail::along(axis, group);
  const Tiling t(g, br, bc);
  const std::int64_t units = t.count(g);
  std::vector<float> lo(units, 0.0f), hi(units, 0.0f), amax(units, 0.0f);
  std::vector<bool> non_finite(units, false);
  detail::for_each_element(g,
                           [&](std::int64_t i, std::int64_t b, std::int64_t row, std::int64_t c) {
                             const std::int64_t u = t.index(b, row, c);
                             if (!std::isfinite(x[i])) non_finite[u] = true;
                             lo[u] = std::min(lo[u], x[i]);
                             hi[u] = std::max(hi[u], x[i]);
                             amax[u] = std::max(amax[u], std::fabs(x[i]));
                           });
  Quantized q;
  q.data_shape = shape;
  q.data_shape.back() /= 2;
  q.scale_shape = detail::scale_shape(g, t, true);
  q.scale_itemsize = r.scale_dtype == Int4ScaleDType::kF32 ? 4 : 2;
  q.has_zero_point = !r.is_signed;
  std::vector<float> scale(units);
  std::vector<int> zero(units, 0);
  for (std::int64_t u = 0; u < units; ++u) {
    if (non_finite[u]) {
      scale[u] = std::numeric_limits<float>::quiet_NaN();
    } else if (r.is_signed) {
      scale[u] = detail::rounded_to(r.scale_dtype, amax[u] == 0.0f ? 1.0f : f32_div(amax[u], 7.5f));
    } else {
      const float range = f32_div(hi[u] - lo[u], 15.0f);
      scale[u] = detail::rounded_to(r.scale_dtype, range < 1e-5f ? 1e-5f : range);
      zero[u] = static_cast<int>(std::clamp(detail::int4_quotient(-lo[u], scale[u]), 0.0f, 15.0f));
    }
    detail::append_scale(q, r.scale_dtype, scale[u]);
    q.scale_is_nan.push_back(non_finite[u]);
    if (q.has_zero_point) q.zero_point.push_back(static_cast<std::uint8_t>(zero[u]));
  }
  q.data.assign(x.size() / 2, 0);
  q.dequantized.resize(x.size());
  detail::for_each_element(
      g, [&](std::int64_t i, std::int64_t b, std::int64_t row, std::int64_t c) {
        const std::int64_t u = t.index(b, row, c);
        int value = 0;  // a group with a non-finite value: every code 0
        float bound = std::numeric_limits<float>::infinity();
        if (!non_finite[u]) {
          const float rounded = detail::int4_quotient(x[i], scale[u]);
          value = r.is_signed ? static_cast<int>(std::clamp(rounded, -8.0f, 7.0f))
                              : static_cast<int>(std::clamp(rounded + zero[u], 0.0f, 15.0f));
          const bool clamped = r.is_signed ? value != rounded : value != rounded + zero[u];
          if (!clamped && std::isfinite(scale[u])) bound = scale[u] / 2;
        }
        q.half_step.push_back(bound);
        detail::set_packed(q.data, i, static_cast<std::uint32_t>(value) & 0xF);
        q.dequantized[i] = static_cast<float>(value - zero[u]) * scale[u];
      });
  return q;
}

// ---------------------------------------------------------------------------------------------
// Test inputs shared by the cast and dequantize tests

namespace inputs {

inline std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// Values over twenty binades, both signs, with exact zeros and fp32 subnormals mixed in.
inline std::vector<float> random_values(const std::vector<std::int64_t>& shape,
                                        std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-10, 10);
  std::uniform_int_distribution<int> kind(0, 99);
  std::vector<float> x(numel(shape));
  for (float& v : x) {
    const int k = kind(rng);
    const float sign = k % 2 == 0 ? 1.0f : -1.0f;
    if (k < 4) {
      v = 0.0f;
    } else if (k < 7) {
      v = sign * std::ldexp(mantissa(rng), -140);  // fp32 subnormal
    } else {
      v = sign * std::ldexp(mantissa(rng), exponent(rng));
    }
  }
  return x;
}

// Overwrites whole lines of blocks with the special cases: an all-zero line, one holding NaN,
// +inf, -inf, one of fp32 subnormals only, one of huge values and one of -0. Lines are rows
// (axis -1) or columns (axis -2) of each batch's matrix.
inline void add_special_lines(const std::vector<std::int64_t>& shape, std::vector<float>& x,
                              int axis) {
  const std::int64_t cols = shape.back();
  const std::int64_t rows = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  const std::int64_t batch = numel(shape) / (rows * cols);
  const std::int64_t lines = axis == -1 ? rows : cols;
  const std::int64_t length = axis == -1 ? cols : rows;
  auto at = [&](std::int64_t b, std::int64_t line, std::int64_t k) -> float& {
    const std::int64_t r = axis == -1 ? line : k;
    const std::int64_t c = axis == -1 ? k : line;
    return x[(b * rows + r) * cols + c];
  };
  const float inf = std::numeric_limits<float>::infinity();
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t line = 0; line < lines; ++line) {
      const std::int64_t pick = (line + b) % 9;
      for (std::int64_t k = 0; k < length; ++k) {
        float& v = at(b, line, k);
        switch (pick) {
          case 0:
            v = 0.0f;
            break;
          case 1:
            if (k == length / 2) v = std::numeric_limits<float>::quiet_NaN();
            break;
          case 2:
            if (k == 1 % length) v = inf;
            break;
          case 3:
            if (k == length - 1) v = -inf;
            break;
          case 4:
            v = std::ldexp(static_cast<float>(k % 7) - 3.0f, -146);
            break;
          case 5:
            v = (k % 2 == 0 ? 1.0f : -1.0f) * std::ldexp(1.0f + k, 120);
            break;
          case 6:
            v = -0.0f;
            break;
          default:
            break;  // random values stay
        }
      }
    }
  }
}

// Values sitting exactly on, and one fp32 step either side of, the rounding midpoints of
// `format` once multiplied by 2^scale_exponent, cycling through the table; `anchor` first.
inline std::vector<float> midpoint_line(const FormatSpec& format, std::int64_t length, float anchor,
                                        int scale_exponent, std::int64_t offset) {
  const auto& table = positive_table(format);
  std::vector<float> line(length);
  line[0] = anchor;
  for (std::int64_t k = 1; k < length; ++k) {
    const std::int64_t j = (k + offset) / 3 % static_cast<std::int64_t>(table.size() - 1);
    const float mid = static_cast<float>((table[j].value + table[j + 1].value) / 2);
    const float scaled = std::ldexp(mid, -scale_exponent);
    const int step = static_cast<int>((k + offset) % 3);
    const float v = step == 0   ? scaled
                    : step == 1 ? std::nextafter(scaled, std::numeric_limits<float>::infinity())
                                : std::nextafter(scaled, 0.0f);
    line[k] = (k + offset) % 2 == 0 ? v : -v;
  }
  return line;
}

}  // namespace inputs
// ---------------------------------------------------------------------------------------------
// Comparing breccia's results with the model (GoogleTest failures that name the element)

namespace checks {

inline Array typed_array(DType dtype, const Shape& shape, const void* values) {
  Array a = Array::empty(dtype, shape);
  if (a.nbytes() > 0) std::memcpy(a.data(), values, static_cast<std::size_t>(a.nbytes()));
  return a;
}

inline Array f32_array(const Shape& shape, const std::vector<float>& values) {
  Array a = Array::empty(DType::kF32, shape);
  std::copy(values.begin(), values.end(), a.data_as<float>());
  return a;
}

inline std::vector<std::uint8_t> bytes_of(const Array& a) {
  const Array c = a.contiguous();
  const auto* p = static_cast<const std::uint8_t*>(c.data());
  return {p, p + c.nbytes()};
}

inline std::string describe(const Shape& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}

// The dtypes numerics.md and the recipes imply for data and scale.
inline std::pair<DType, DType> expected_dtypes(const Recipe& recipe) {
  if (const auto* r = std::get_if<INT4Scaling>(&recipe)) {
    const DType scale = r->scale_dtype == Int4ScaleDType::kF16    ? DType::kF16
                        : r->scale_dtype == Int4ScaleDType::kBF16 ? DType::kBF16
                                                                  : DType::kF32;
    return {DType::kU8, scale};
  }
  if (std::holds_alternative<NVFP4BlockScaling>(recipe)) return {DType::kU8, DType::kE4M3};
  if (std::holds_alternative<MXFP4BlockScaling>(recipe)) return {DType::kU8, DType::kE8M0};
  if (const auto* r = std::get_if<MXFP6BlockScaling>(&recipe)) {
    return {r->fp6_format == Fp6Format::kE2M3 ? DType::kE2M3 : DType::kE3M2, DType::kE8M0};
  }
  const Fp8Format format = std::visit(
      [](const auto& r) -> Fp8Format {
        if constexpr (requires { r.fp8_format; }) return r.fp8_format;
        return Fp8Format::kE4M3;
      },
      recipe);
  const DType data = format == Fp8Format::kE4M3 ? DType::kE4M3 : DType::kE5M2;
  if (std::holds_alternative<MXFP8BlockScaling>(recipe)) return {data, DType::kE8M0};
  return {data, DType::kF32};
}

// Counts mismatching bytes and reports the first few with the element they belong to.
class MismatchReport {
 public:
  explicit MismatchReport(std::string what) : what_(std::move(what)) {}
  ~MismatchReport() {
    if (count_ > 0) ADD_FAILURE() << what_ << ": " << count_ << " mismatches" << first_.str();
  }
  void add(const std::string& detail) {
    if (++count_ <= 4) first_ << "\n  " << detail;
  }
  int count() const { return count_; }

 private:
  std::string what_;
  int count_ = 0;
  std::ostringstream first_;
};

inline std::string hex(unsigned value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

inline bool scale_unit_is_nan(const std::vector<std::uint8_t>& bytes, std::size_t unit,
                              DType dtype) {
  std::uint32_t bits = 0;
  const int size = itemsize(dtype);
  for (int i = 0; i < size; ++i) bits |= std::uint32_t{bytes[unit * size + i]} << (8 * i);
  if (dtype == DType::kF16) return std::isnan(f16_value(static_cast<std::uint16_t>(bits)));
  if (dtype == DType::kBF16) return std::isnan(bf16_value(static_cast<std::uint16_t>(bits)));
  return std::isnan(std::bit_cast<float>(bits));
}

// cast(x) against the model fed the fp32 values x_f32 (x converted as numerics.md says).
inline void compare_cast(const Array& x, const std::vector<float>& x_f32, const Shape& shape,
                         const Recipe& recipe, int axis, const std::string& what,
                         DelayedScalingState* state = nullptr, DelayedState* model = nullptr) {
  const std::string context = recipe_repr(recipe) + " axis " + std::to_string(axis) + " shape " +
                              describe(shape) + " [" + what + "]";
  CastOptions options;
  options.axis = axis;
  options.state = state;
  const ScaledTensor got = cast(x, recipe, options);
  const Quantized want = quantize(shape, x_f32, recipe, axis, model);
  const auto [data_dtype, scale_dtype] = expected_dtypes(recipe);

  ASSERT_EQ(got.data().shape(), want.data_shape) << context << ": data shape";
  ASSERT_EQ(got.scale().shape(), want.scale_shape) << context << ": scale shape";
  EXPECT_EQ(got.data_dtype(), data_dtype) << context << ": data dtype";
  ASSERT_EQ(got.scale_dtype(), scale_dtype) << context << ": scale dtype";

  const auto data = bytes_of(got.data());
  ASSERT_EQ(data.size(), want.data.size()) << context;
  {
    MismatchReport report(context + " data");
    const bool packed = want.data.size() != x_f32.size();
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (data[i] == want.data[i]) continue;
      std::ostringstream detail;
      detail << "byte " << i << " (x = " << x_f32[packed ? 2 * i : i];
      if (packed) detail << ", " << x_f32[2 * i + 1];
      detail << "): expected " << hex(want.data[i]) << ", got " << hex(data[i]);
      report.add(detail.str());
    }
  }
  const auto scale = bytes_of(got.scale());
  ASSERT_EQ(scale.size(), want.scale.size()) << context;
  {
    MismatchReport report(context + " scale");
    const std::size_t size = static_cast<std::size_t>(want.scale_itemsize);
    for (std::size_t unit = 0; unit < want.scale_is_nan.size(); ++unit) {
      if (want.scale_is_nan[unit]) {
        if (!scale_unit_is_nan(scale, unit, scale_dtype))
          report.add("unit " + std::to_string(unit) + ": expected NaN");
        continue;
      }
      if (std::memcmp(&scale[unit * size], &want.scale[unit * size], size) == 0) continue;
      std::uint32_t expected = 0, actual = 0;
      std::memcpy(&expected, &want.scale[unit * size], size);
      std::memcpy(&actual, &scale[unit * size], size);
      report.add("unit " + std::to_string(unit) + ": expected " + hex(expected) + ", got " +
                 hex(actual));
    }
  }
  EXPECT_EQ(got.global_scale().has_value(), want.has_global_scale) << context;
  if (got.global_scale() && want.has_global_scale) {
    const float g = got.global_scale()->contiguous().data_as<float>()[0];
    EXPECT_EQ(got.global_scale()->numel(), 1) << context;
    EXPECT_TRUE(std::bit_cast<std::uint32_t>(g) ==
                    std::bit_cast<std::uint32_t>(want.global_scale) ||
                (std::isnan(g) && std::isnan(want.global_scale)))
        << context << ": global_scale expected " << want.global_scale << ", got " << g;
  }
  EXPECT_EQ(got.zero_point().has_value(), want.has_zero_point) << context;
  if (got.zero_point() && want.has_zero_point) {
    EXPECT_EQ(bytes_of(*got.zero_point()), want.zero_point) << context << ": zero_point";
  }
}

inline void cast_and_compare(const std::vector<float>& x, const Shape& shape, const Recipe& recipe,
                             int axis, const std::string& what,
                             DelayedScalingState* state = nullptr, DelayedState* model = nullptr) {
  compare_cast(f32_array(shape, x), x, shape, recipe, axis, what, state, model);
}

}  // namespace checks
}  // namespace breccia::oracle
