#include <variant>

#include "breccia/kernels/reference.hpp"
#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference {

void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out,
          DelayedScalingState* state) {
  const std::vector<float> values = detail::read_as_float32(x);
  const Recipe& recipe = plan.recipe;
  if (const auto* r = std::get_if<Float8BlockScaling>(&recipe)) {
    detail::cast_fp8_block(plan, *r, values, out);
  } else if (const auto* r = std::get_if<MXFP8BlockScaling>(&recipe)) {
    detail::cast_mxfp8(plan, *r, values, out);
  } else if (std::holds_alternative<NVFP4BlockScaling>(recipe)) {
    detail::cast_nvfp4(plan, values, out);
  } else if (const auto* r = std::get_if<INT4Scaling>(&recipe)) {
    detail::cast_int4(plan, *r, values, out);
  } else {
    detail::cast_fp8_per_tensor(plan, values, out, state);
  }
}

float amax(const Array& x) {
  float result = 0.0f;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    result = numerics::nan_max(result, numerics::abs_value(detail::read_wide(x, i)));
  }
  return result;
}

void convert(const Array& in, const Array& out) {
  for (std::int64_t i = 0; i < in.numel(); ++i)
    detail::write_wide(out, i, detail::read_wide(in, i));
}

}  // namespace breccia::kernels::reference
