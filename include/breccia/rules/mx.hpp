// OCP MX scale rule (numerics.md §3): 32 elements share one E8M0 power of two, from amax's
// exponent ("floor", the OCP spec and torchao's default) or rounded up ("rceil",
// TransformerEngine, torchao RCEIL, Blackwell's cvt.rp.satfinite.ue8m0). One rule for the whole
// family: the element format (FP8, FP6, FP4) supplies emax and fmax from its traits.
#pragma once

#include "breccia/rules/tile.hpp"

namespace breccia::rules {

template <ElementFormat kFormat>
struct MxRule {
  static constexpr ElementFormat kElement = kFormat;
  static constexpr bool kReadsRange = false;
  static constexpr bool kNeedsTensorAmax = false;
  static constexpr bool kTakesState = false;
  static constexpr bool kPerTensorOnly = false;

  bool rceil = false;

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    const std::uint8_t code = rceil ? numerics::mx_scale_rceil(s.amax, kElementMax<kFormat>)
                                    : numerics::mx_scale_floor(s.amax, kElementEmax<kFormat>);
    TileScale t;
    t.stored = code;
    t.nan_block = code == numerics::kE8M0Nan;
    t.factor = t.nan_block ? 1.0f : numerics::mx_encode_factor(code);
    return t;
  }

  // A NaN scale marks the whole block NaN; its elements take the format's NaN code, or 0.
  BRECCIA_HD std::uint8_t encode(float x, const TileScale& t) const {
    return t.nan_block ? kBlockNanCode<kFormat> : encode_element<kFormat>(mul(x, t.factor));
  }
};

}  // namespace breccia::rules
