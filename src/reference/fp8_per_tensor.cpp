// DelayedScaling and Float8CurrentScaling (numerics.md §3): one encode factor per tensor.
#include "reference/elements.hpp"
#include "reference/recipe_kernels.hpp"

namespace breccia::kernels::reference::detail {
namespace {

float fp8_max(ElementFormat format) {
  return format == ElementFormat::kE4M3 ? numerics::kE4M3Max : numerics::kE5M2Max;
}

float tensor_amax(const std::vector<float>& x) {
  float amax = 0.0f;
  for (float v : x) amax = numerics::nan_max(amax, numerics::abs_value(v));
  return amax;
}

}  // namespace

void cast_fp8_per_tensor(const QuantPlan& plan, const std::vector<float>& x, const CastOutputs& out,
                         DelayedScalingState* state) {
  const float fmax = fp8_max(plan.format);
  const float amax = tensor_amax(x);
  float encode_scale = 1.0f;
  if (const auto* current = std::get_if<Float8CurrentScaling>(&plan.recipe)) {
    encode_scale = numerics::fp8_encode_scale(amax, fmax);
    if (current->power_2_scale) encode_scale = numerics::pow2_floor(encode_scale);
  } else if (state != nullptr) {
    encode_scale = state->encode_scale();  // the previous step's scale
  } else {
    const auto& delayed = std::get<DelayedScaling>(plan.recipe);
    encode_scale =
        numerics::delayed_encode_scale(amax, fmax, static_cast<int>(delayed.margin), 1.0f);
  }

  for (std::size_t i = 0; i < x.size(); ++i) {
    store_code(plan, out.data, static_cast<std::int64_t>(i),
               encode_fp8(plan.format, x[i] * encode_scale));
  }
  out.scale.data_as<float>()[0] = numerics::decode_scale(encode_scale);
  if (state != nullptr) state->update(amax);
}

}  // namespace breccia::kernels::reference::detail
