// DeepSeek-V3's FP8 block quantizer (its inference code's act_quant), a variant of
// Float8BlockScaling whose scale comes straight from the amax:
//     s = max(amax, 1e-4) / fmax            (fp32; the decode scale, stored as-is)
//     s = 2^ceil(log2 s)                    (only with ue8m0, as DeepSeek-V3.1)
//     q = Q(x / s)                          (a division, not a multiply by an encode factor)
// so it differs from TransformerEngine's rule (fmax / amax, then 1 / that) in the last bit of
// some scales and in all-zero blocks (1e-4 / fmax instead of 1).
#pragma once

#include <cstdint>

#include "breccia/array.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia::interop {

struct DeepSeekQuantOptions {
  std::int64_t block_m = 1;    // 1: activations (1 x 128); 128: weights (128 x 128)
  std::int64_t block_k = 128;  // must divide the last dim
  Fp8Format fp8_format = Fp8Format::kE4M3;
  bool ue8m0 = false;          // round each scale up to a power of two (DeepSeek-V3.1)
};

// The smallest amax DeepSeek divides by, so an all-zero block still gets a finite scale.
inline constexpr float kDeepSeekMinAmax = 1e-4f;

// Quantizes x (fp32/fp16/bf16/fp64, >= 2-D, on the CPU) into a ScaledTensor with recipe
// Float8BlockScaling{fp8_format, block_k, block_m, power_2_scale = ue8m0} and layout
// PerBlockK (block_m 1) or PerBlockMN{block_m, block_k}. Rows need not fill the last block_m
// tile. Throws ValueError/TypeError/DeviceError naming the argument.
ScaledTensor deepseek_v3_quantize(const Array& x, const DeepSeekQuantOptions& options = {});

}  // namespace breccia::interop
