// INT4Scaling (numerics.md §3): symmetric (GPTQ / compressed-tensors) or asymmetric with a
// zero point (AWQ), one scale per group rounded to the recipe's scale dtype.
#include <limits>

#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference::detail {
namespace {

struct Group {
  float amax = 0.0f;
  float lo = 0.0f;  // min(x, 0)
  float hi = 0.0f;  // max(x, 0)
  bool finite = true;
};

}  // namespace

void cast_int4(const QuantPlan& plan, const INT4Scaling& recipe, const std::vector<float>& x,
               const CastOutputs& out) {
  std::vector<Group> groups(static_cast<std::size_t>(amax_tile_count(plan)));
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    Group& g = groups[amax_tile_index(plan, coordinates(plan.grid, i))];
    g.finite = g.finite && numerics::is_finite(x[i]);
    g.amax = numerics::nan_max(g.amax, numerics::abs_value(x[i]));
    g.lo = x[i] < g.lo ? x[i] : g.lo;
    g.hi = x[i] > g.hi ? x[i] : g.hi;
  }

  // The scale as stored (rounded to the scale dtype) and its zero point, per group.
  const Array one_scale = Array::empty(plan.scale_dtype, {1});
  std::vector<float> scale(groups.size());
  std::vector<int> zero_point(groups.size(), 0);
  for (std::size_t t = 0; t < groups.size(); ++t) {
    const Group& g = groups[t];
    float raw = std::numeric_limits<float>::quiet_NaN();
    if (g.finite) {
      raw = recipe.is_signed ? numerics::int4_symmetric_scale(g.amax)
                             : numerics::int4_asymmetric_scale(g.lo, g.hi);
    }
    write_wide(one_scale, 0, raw);
    scale[t] = read_wide(one_scale, 0);
    if (!recipe.is_signed && g.finite) zero_point[t] = numerics::int4_zero_point(g.lo, scale[t]);
  }

  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    const Coordinates at = coordinates(plan.grid, i);
    const std::size_t t = static_cast<std::size_t>(amax_tile_index(plan, at));
    int q = 0;  // a non-finite group keeps all codes 0
    if (groups[t].finite) {
      q = recipe.is_signed ? numerics::int4_quantize_symmetric(x[i], scale[t])
                           : numerics::int4_quantize_asymmetric(x[i], scale[t], zero_point[t]);
    }
    store_code(plan, out.data, i, formats::int4_to_nibble(q));
    const std::int64_t s = plan.grid.scale_index(at.batch, at.row, at.col);
    write_wide(out.scale, s, scale[t]);
    if (plan.has_zero_point)
      out.zero_point.data_as<std::uint8_t>()[s] = static_cast<std::uint8_t>(zero_point[t]);
  }
}

}  // namespace breccia::kernels::reference::detail
