#include <variant>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"
#include "ops/dispatch.hpp"

namespace breccia {
namespace {

void check_state(const Recipe& recipe, const DelayedScalingState* state) {
  if (state == nullptr) return;
  const auto* delayed = std::get_if<DelayedScaling>(&recipe);
  if (delayed == nullptr) {
    fail<ValueError>("state: a DelayedScalingState applies only to DelayedScaling, got recipe ",
                     recipe_repr(recipe));
  }
  if (!(state->recipe() == *delayed)) {
    fail<ValueError>("state: built for ", recipe_repr(state->recipe()), ", but cast was given ",
                     recipe_repr(recipe));
  }
}

}  // namespace

ScaledTensor cast(const Array& x, const Recipe& recipe, const CastOptions& options) {
  if (!is_wide_float(x.dtype())) {
    fail<TypeError>("x: expected float32, float16, bfloat16 or float64 values to quantize, got ",
                    dtype_name(x.dtype()));
  }
  ops_detail::require_kernels_for(x.device(), "cast");
  check_state(recipe, options.state);
  const QuantPlan plan = plan_cast(x.shape(), recipe, options.axis);

  Allocator* allocator = options.allocator;
  const Device device = x.device();
  kernels::reference::CastOutputs out;
  out.data = Array::empty(plan.data_dtype, plan.data_shape, device, allocator);
  out.scale = Array::empty(plan.scale_dtype, plan.grid.scale_shape, device, allocator);
  if (plan.has_global_scale) out.global_scale = Array::empty(DType::kF32, {}, device, allocator);
  if (plan.has_zero_point) {
    out.zero_point = Array::empty(DType::kU8, plan.grid.scale_shape, device, allocator);
  }
  ops_detail::run_cast(plan, x.contiguous(), out, options.state,
                       {options.allocator, options.stream});

  return ScaledTensor(out.data, out.scale, recipe, plan.layout,
                      plan.has_global_scale ? std::optional<Array>(out.global_scale) : std::nullopt,
                      plan.has_zero_point ? std::optional<Array>(out.zero_point) : std::nullopt);
}

}  // namespace breccia
