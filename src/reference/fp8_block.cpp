// Float8BlockScaling (numerics.md §3): the current-scaling rule per block_m x block_k tile.
#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference::detail {

void cast_fp8_block(const QuantPlan& plan, const Float8BlockScaling& recipe,
                    const std::vector<float>& x, const CastOutputs& out) {
  const float fmax = plan.format == ElementFormat::kE4M3 ? numerics::kE4M3Max : numerics::kE5M2Max;
  const std::vector<float> amax = tile_amax(plan, x);

  std::vector<float> encode_scale(amax.size());
  for (std::size_t t = 0; t < amax.size(); ++t) {
    encode_scale[t] = numerics::fp8_encode_scale(amax[t], fmax);
    if (recipe.power_2_scale) encode_scale[t] = numerics::pow2_floor(encode_scale[t]);
  }

  auto* scale = out.scale.data_as<float>();
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    const Coordinates at = coordinates(plan.grid, i);
    const float factor = encode_scale[amax_tile_index(plan, at)];
    store_code(plan, out.data, i, encode_fp8(plan.format, x[i] * factor));
    scale[plan.grid.scale_index(at.batch, at.row, at.col)] = numerics::decode_scale(factor);
  }
}

}  // namespace breccia::kernels::reference::detail
