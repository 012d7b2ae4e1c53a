// INT4 scale rule (numerics.md §3, GPTQ / AWQ / compressed-tensors): per group, a scale
// rounded to the scale format and, for unsigned codes, a zero point. A group holding NaN or inf
// gets a NaN scale and codes 0.
#pragma once

#include "breccia/formats/scale_format.hpp"
#include "breccia/rules/tile.hpp"

namespace breccia::rules {

template <bool kSigned>
struct Int4Rule {
  static constexpr ElementFormat kElement =
      kSigned ? ElementFormat::kInt4Signed : ElementFormat::kInt4Unsigned;
  static constexpr bool kReadsRange = !kSigned;  // lo and hi set the asymmetric scale
  static constexpr bool kNeedsTensorAmax = false;
  static constexpr bool kTakesState = false;
  static constexpr bool kPerTensorOnly = false;

  ScaleFormat scale_format = ScaleFormat::kF16;

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    TileScale t;
    float raw = formats::detail::bits_float(numerics::kCanonicalNanBits);
    if (s.finite()) {
      raw = kSigned ? numerics::int4_symmetric_scale(s.amax)
                    : numerics::int4_asymmetric_scale(s.lo, s.hi);
    }
    t.factor = round_wide_scale(scale_format, raw, t.stored);
    t.inverse = reciprocal(t.factor);
    t.nan_block = !s.finite();
    if (!kSigned && s.finite()) {
      t.zero_point = static_cast<std::uint8_t>(numerics::int4_zero_point(s.lo, t.factor));
    }
    return t;
  }

  BRECCIA_HD std::uint8_t encode(float x, const TileScale& t) const {
    if (t.nan_block) return 0;
    const int q = kSigned ? numerics::int4_quantize_symmetric(x, t.factor)
                          : numerics::int4_quantize_asymmetric(x, t.factor, t.zero_point);
    return formats::int4_to_nibble(q);
  }
};

}  // namespace breccia::rules
