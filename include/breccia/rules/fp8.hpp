// FP8 scale rules (numerics.md §3, TransformerEngine): one fp32 decode scale per unit, from
// fmax / amax. Fp8CurrentRule: Float8CurrentScaling and Float8BlockScaling (optionally rounded
// down to a power of two). Fp8DelayedRule: DelayedScaling (fmax * 2^-margin / amax, or a
// DelayedScalingState's factor), per tensor only.
#pragma once

#include "breccia/rules/tile.hpp"

namespace breccia::rules {

template <ElementFormat kFormat>
struct Fp8Encoder {
  static_assert(kFormat == ElementFormat::kE4M3 || kFormat == ElementFormat::kE5M2);
  static constexpr ElementFormat kElement = kFormat;
  static constexpr bool kReadsRange = false;  // needs only amax
  static constexpr bool kNeedsTensorAmax = false;
  static constexpr float kMax = kElementMax<kFormat>;

  BRECCIA_HD std::uint8_t encode(float x, const TileScale& t) const {
    return encode_element<kFormat>(mul(x, t.factor));
  }

 protected:
  BRECCIA_HD static TileScale scale_of_factor(float encode) {
    TileScale t;
    t.factor = encode;
    t.stored = formats::detail::float_bits(numerics::decode_scale(encode));
    return t;
  }
};

template <ElementFormat kFormat>
struct Fp8CurrentRule : Fp8Encoder<kFormat> {
  static constexpr bool kTakesState = false;
  static constexpr bool kPerTensorOnly = false;

  bool power_2_scale = false;

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    float encode = numerics::fp8_encode_scale(s.amax, Fp8Encoder<kFormat>::kMax);
    if (power_2_scale) encode = numerics::pow2_floor(encode);
    return Fp8Encoder<kFormat>::scale_of_factor(encode);
  }
};

template <ElementFormat kFormat>
struct Fp8DelayedRule : Fp8Encoder<kFormat> {
  static constexpr bool kTakesState = true;  // DelayedScaling's state
  static constexpr bool kPerTensorOnly = true;

  int margin = 0;
  bool has_state = false;     // a DelayedScalingState was given:
  float state_encode = 0.0f;  // its encode factor, used as is (0 when its margin underflowed)

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    const float encode =
        has_state ? state_encode
                  : numerics::delayed_encode_scale(s.amax, Fp8Encoder<kFormat>::kMax, margin, 1.0f);
    return Fp8Encoder<kFormat>::scale_of_factor(encode);
  }
};

}  // namespace breccia::rules
