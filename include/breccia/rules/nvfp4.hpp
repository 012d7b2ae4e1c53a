// NVFP4 scale rule (numerics.md §3, TransformerEngine): E2M1 elements, an E4M3 scale per 16,
// under an fp32 per-tensor factor from the tensor's amax.
#pragma once

#include "breccia/rules/tile.hpp"

namespace breccia::rules {

struct Nvfp4Rule {
  static constexpr ElementFormat kElement = ElementFormat::kE2M1;
  static constexpr bool kReadsRange = false;
  static constexpr bool kNeedsTensorAmax = true;
  static constexpr bool kTakesState = false;
  static constexpr bool kPerTensorOnly = false;

  float tensor_encode = 1.0f;  // S_enc = 2688 / amax(tensor)

  BRECCIA_HD void bind_tensor_amax(float tensor_amax) {
    tensor_encode = numerics::nvfp4_tensor_encode_scale(tensor_amax);
  }
  // ScaledTensor.global_scale: the per-tensor decode factor.
  BRECCIA_HD static float global_scale(float tensor_amax) {
    return numerics::nvfp4_global_scale(tensor_amax);
  }

  BRECCIA_HD TileScale scale(const TileStats& s) const {
    // E4M3(amax * (S_enc / 6)); amax is never negative, so a NaN gives the code 0x7F.
    const std::uint8_t code = encode_element<ElementFormat::kE4M3>(
        mul(s.amax, tensor_encode * (1.0f / kElementMax<ElementFormat::kE2M1>)));
    TileScale t;
    t.stored = code;
    t.nan_block = formats::E4M3::is_nan(code);
    t.factor = t.nan_block ? 1.0f : numerics::nvfp4_block_encode_factor(code, tensor_encode);
    return t;
  }

  // A NaN block scale makes the block NaN on decode; its element codes are 0.
  BRECCIA_HD std::uint8_t encode(float x, const TileScale& t) const {
    return t.nan_block ? 0 : encode_element<ElementFormat::kE2M1>(mul(x, t.factor));
  }
};

}  // namespace breccia::rules
