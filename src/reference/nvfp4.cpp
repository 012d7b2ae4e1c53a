// NVFP4BlockScaling (numerics.md §3): an fp32 scale per tensor, an E4M3 scale per 16 E2M1
// elements (per 16 x 16 tile's amax with two_d).
#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference::detail {

void cast_nvfp4(const QuantPlan& plan, const std::vector<float>& x, const CastOutputs& out) {
  float tensor_amax = 0.0f;
  for (float v : x) tensor_amax = numerics::nan_max(tensor_amax, numerics::abs_value(v));
  const float tensor_encode = numerics::nvfp4_tensor_encode_scale(tensor_amax);
  const std::vector<float> amax = tile_amax(plan, x);

  auto* scale = out.scale.data_as<std::uint8_t>();
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    const Coordinates at = coordinates(plan.grid, i);
    const std::uint8_t block_code =
        numerics::nvfp4_block_scale_code(amax[amax_tile_index(plan, at)], tensor_encode);
    // A NaN block scale makes the block NaN on decode; its element codes are 0.
    const std::uint8_t element =
        formats::E4M3::is_nan(block_code)
            ? 0
            : static_cast<std::uint8_t>(formats::E2M1::encode(
                  x[i] * numerics::nvfp4_block_encode_factor(block_code, tensor_encode)));
    store_code(plan, out.data, i, element);
    scale[plan.grid.scale_index(at.batch, at.row, at.col)] = block_code;
  }
  out.global_scale.data_as<float>()[0] = numerics::nvfp4_global_scale(tensor_amax);
}

}  // namespace breccia::kernels::reference::detail
