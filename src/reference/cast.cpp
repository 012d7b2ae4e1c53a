// cast (numerics.md §3) for every recipe, in the plainest code: the statistics of each unit
// (block, tile or tensor), its scale, and every element's code, in loops over the plan's
// geometry. What a unit's scale is and how an element is encoded under it is the recipe's rule
// (rules/), shared with the fast kernels; the geometry is this file's own.
#include <vector>

#include "breccia/kernels/reference.hpp"
#include "breccia/rules/rules.hpp"
#include "reference/elements.hpp"

namespace breccia::kernels::reference {

void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out, DelayedScalingState* state,
          std::optional<float> given_tensor_amax) {
  const std::vector<float> values = detail::read_as_float32(x);
  const auto count = static_cast<std::int64_t>(values.size());
  float tensor_amax = 0.0f;
  for (const float v : values) tensor_amax = numerics::nan_max(tensor_amax, numerics::abs_value(v));
  if (given_tensor_amax) tensor_amax = *given_tensor_amax;

  rules::with_rule(plan.spec, [&](auto rule) {
    using Rule = decltype(rule);
    rules::bind_state(rule, state);
    if constexpr (Rule::kNeedsTensorAmax) rule.bind_tensor_amax(tensor_amax);

    std::vector<rules::TileStats> stats(static_cast<std::size_t>(detail::amax_tile_count(plan)));
    for (std::int64_t i = 0; i < count; ++i) {
      stats[detail::amax_tile_index(plan, detail::coordinates(plan.grid, i))].add(values[i]);
    }
    std::vector<rules::TileScale> scales;
    scales.reserve(stats.size());
    for (const rules::TileStats& unit : stats) scales.push_back(rule.scale(unit));

    for (std::int64_t i = 0; i < count; ++i) {
      const detail::Coordinates at = detail::coordinates(plan.grid, i);
      const rules::TileScale& scale = scales[detail::amax_tile_index(plan, at)];
      detail::store_code(plan, out.data, i, rule.encode(values[i], scale));
      const std::int64_t s = plan.grid.scale_index(at.batch, at.row, at.col);
      detail::store_scale_bits(out.scale, s, scale.stored);
      if (plan.has_zero_point) out.zero_point.data_as<std::uint8_t>()[s] = scale.zero_point;
    }
    if constexpr (requires { Rule::global_scale(0.0f); }) {
      out.global_scale.data_as<float>()[0] = Rule::global_scale(tensor_amax);
    }
  });
  if (state != nullptr) state->update(tensor_amax);
}

void convert(const Array& in, const Array& out) {
  for (std::int64_t i = 0; i < in.numel(); ++i)
    detail::write_wide(out, i, detail::read_wide(in, i));
}

}  // namespace breccia::kernels::reference
