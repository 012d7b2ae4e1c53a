// MXFP8BlockScaling (numerics.md §3, OCP MX v1.0): one E8M0 power of two per 32 elements.
#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference::detail {

void cast_mxfp8(const QuantPlan& plan, const MXFP8BlockScaling& recipe, const std::vector<float>& x,
                const CastOutputs& out) {
  const bool e4m3 = plan.format == ElementFormat::kE4M3;
  const std::vector<float> amax = tile_amax(plan, x);

  std::vector<std::uint8_t> code(amax.size());
  for (std::size_t t = 0; t < amax.size(); ++t) {
    code[t] =
        recipe.scale_rounding == MXScaleRounding::kFloor
            ? numerics::mx_scale_floor(amax[t], e4m3 ? 8 : 15)
            : numerics::mx_scale_rceil(amax[t], e4m3 ? numerics::kE4M3Max : numerics::kE5M2Max);
  }

  auto* scale = out.scale.data_as<std::uint8_t>();
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    const Coordinates at = coordinates(plan.grid, i);
    const std::uint8_t block_code = code[amax_tile_index(plan, at)];
    // A NaN scale marks the whole block NaN; its elements carry the FP8 NaN code.
    const std::uint8_t element =
        block_code == numerics::kE8M0Nan
            ? static_cast<std::uint8_t>(e4m3 ? formats::E4M3::kNanCode : formats::E5M2::kNanCode)
            : encode_fp8(plan.format, x[i] * numerics::mx_encode_factor(block_code));
    store_code(plan, out.data, i, element);
    scale[plan.grid.scale_index(at.batch, at.row, at.col)] = block_code;
  }
}

}  // namespace breccia::kernels::reference::detail
