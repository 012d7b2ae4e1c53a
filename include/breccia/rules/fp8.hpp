// FP8 scale rule (numerics.md §3, TransformerEngine): one fp32 decode scale per unit, from
// fmax / amax. Float8CurrentScaling and Float8BlockScaling (optionally rounded down to a power
// of two), DelayedScaling (fmax * 2^-margin / amax, or a DelayedScalingState's factor).
#pragma once

#include "breccia/rules/tile.hpp"

namespace breccia::rules {

template <ElementFormat kFormat>
struct Fp8Rule {
  static_assert(kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2);
  static constexpr ElementFormat kElement = kFormat;
  static constexpr bool kReadsRange = false;  // needs only amax
  static constexpr bool kNeedsTensorAmax = false;
  static constexpr bool kTakesState = true;  // DelayedScaling's state
  static constexpr float kMax = kElementMax<kFormat>;

  bool power_2_scale = false;
  bool delayed = false;
  int margin = 0;
  float state_encode = 0.0f;  // > 0: a DelayedScalingState's encode factor, used as is

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    float encode = state_encode;
    if (!(encode > 0.0f)) {
      if (delayed) {
        encode = numerics::delayed_encode_scale(s.amax, kMax, margin, 1.0f);
      } else {
        encode = numerics::fp8_encode_scale(s.amax, kMax);
        if (power_2_scale) encode = numerics::pow2_floor(encode);
      }
    }
    TileScale t;
    t.factor = encode;
    t.stored = formats::detail::float_bits(numerics::decode_scale(encode));
    return t;
  }

  BRECCIA_HD std::uint8_t encode(float x, const TileScale& t) const {
    return encode_element<kFormat>(mul(x, t.factor));
  }
};

}  // namespace breccia::rules
