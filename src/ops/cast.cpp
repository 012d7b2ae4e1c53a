#include <bit>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/numerics.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"
#include "breccia/scale_layout.hpp"
#include "ops/dispatch.hpp"

namespace breccia {
namespace {

void check_state(const Recipe& recipe, const DelayedScalingState* state) {
  if (state == nullptr) return;
  if (!spec_of(recipe).delayed) {
    fail<ValueError>("state: a DelayedScalingState applies only to DelayedScaling, got recipe ",
                     recipe_repr(recipe));
  }
  if (!(Recipe{state->recipe()} == recipe)) {
    fail<ValueError>("state: built for ", recipe_repr(state->recipe()), ", but cast was given ",
                     recipe_repr(recipe));
  }
}

// The arrays of a cast under `plan`, on x's device, from the caller's allocator. `first` is
// the other output of the same cast_for_gemm, if any: both share its global_scale (one tensor
// amax), and its codes when both axes use the same 2-D tiles.
kernels::CastOutputs allocate_outputs(const QuantPlan& plan, Device device, Allocator* allocator,
                                      const kernels::CastOutputs* first = nullptr) {
  const bool same_codes = first != nullptr && plan.amax_block_rows > 1 && plan.amax_block_cols > 1;
  kernels::CastOutputs out;
  out.data =
      same_codes ? first->data : Array::empty(plan.data_dtype, plan.data_shape, device, allocator);
  out.scale = Array::empty(plan.scale_dtype, plan.grid.scale_shape, device, allocator);
  if (plan.has_global_scale) {
    out.global_scale =
        first != nullptr ? first->global_scale : Array::empty(DType::kF32, {}, device, allocator);
  }
  if (plan.has_zero_point)
    out.zero_point = Array::empty(DType::kU8, plan.grid.scale_shape, device, allocator);
  return out;
}

ScaledTensor scaled_tensor_of(const QuantPlan& plan, const kernels::CastOutputs& out) {
  return ScaledTensor(out.data, out.scale, plan.recipe, plan.layout,
                      plan.has_global_scale ? std::optional<Array>(out.global_scale) : std::nullopt,
                      plan.has_zero_point ? std::optional<Array>(out.zero_point) : std::nullopt);
}

void check_input(const Array& x, const Recipe& recipe, const DelayedScalingState* state,
                 const Context& context) {
  if (!is_wide_float(x.dtype())) {
    fail<TypeError>("x: expected float32, float16, bfloat16 or float64 values to quantize, got ",
                    dtype_name(x.dtype()));
  }
  ops_detail::require_kernels_for(x.device(), "cast", context);
  check_state(recipe, state);
}

// The GEMM-ready copy of a plan's scales: the scale matrices (transposed for axis=-2) padded
// to whole 128 x 4 tiles.
Array swizzled_scale_for(const QuantPlan& plan, Device device, Allocator* allocator) {
  Shape shape = plan.grid.scale_shape;
  std::int64_t rows = shape[shape.size() - 2], cols = shape.back();
  if (plan.axis == -2) std::swap(rows, cols);
  shape[shape.size() - 2] = padded_scale_rows(rows);
  shape.back() = padded_scale_cols(cols);
  return Array::empty(DType::kU8, shape, device, allocator);
}

}  // namespace

ScaledTensor cast(const Array& x, const Recipe& recipe, const CastOptions& options) {
  check_input(x, recipe, options.state, options.context);
  const QuantPlan plan = plan_cast(x.shape(), recipe, options.axis);
  std::optional<float> tensor_amax = options.tensor_amax;
  if (tensor_amax) {
    if (!plan.has_global_scale) {
      fail<ValueError>(
          "tensor_amax: only NVFP4's global scale is computed from a given amax, "
          "got recipe ",
          recipe_repr(recipe));
    }
    if (std::signbit(*tensor_amax) && !std::isnan(*tensor_amax)) {
      fail<ValueError>("tensor_amax: expected a non-negative amax (or NaN), got ", *tensor_amax);
    }
    // Any NaN as the canonical one, which the kernels' own amax passes give.
    if (std::isnan(*tensor_amax)) tensor_amax = std::bit_cast<float>(numerics::kCanonicalNanBits);
  }
  const kernels::CastTarget target{
      &plan, allocate_outputs(plan, x.device(), options.context.allocator), {}};
  ops_detail::run_cast(x.contiguous(), std::span(&target, 1), options.state, options.context,
                       tensor_amax);
  return scaled_tensor_of(plan, target.out);
}

GemmCast cast_for_gemm(const Array& x, const Recipe& recipe, const GemmCastOptions& options) {
  check_input(x, recipe, options.state, options.context);
  if (!options.rowwise && !options.columnwise) {
    fail<ValueError>("options: expected rowwise, columnwise or both, got neither");
  }
  if (options.swizzled_scales && !spec_of(recipe).byte_block_scales()) {
    fail<ValueError>(
        "swizzled_scales: GEMM-ready swizzled scales exist for recipes with one-byte block "
        "scales (the MX recipes, NVFP4BlockScaling), got ",
        recipe_repr(recipe));
  }
  std::vector<QuantPlan> plans;
  if (options.rowwise) plans.push_back(plan_cast(x.shape(), recipe, -1));
  if (options.columnwise) plans.push_back(plan_cast(x.shape(), recipe, -2));
  // Both axes give one and the same tensor for per-tensor recipes and square 2-D blocks.
  const bool same_tensor = plans.size() == 2 && plans[0].layout == plans[1].layout;
  if (same_tensor) plans.pop_back();

  std::vector<kernels::CastTarget> targets;
  for (const QuantPlan& plan : plans) {
    kernels::CastOutputs out = allocate_outputs(plan, x.device(), options.context.allocator,
                                                targets.empty() ? nullptr : &targets.front().out);
    targets.push_back({&plan, std::move(out),
                       options.swizzled_scales
                           ? swizzled_scale_for(plan, x.device(), options.context.allocator)
                           : Array{}});
  }
  ops_detail::run_cast(x.contiguous(), targets, options.state, options.context);

  // The rowwise output is the first target, the columnwise one the last (the same one when
  // both axes give one tensor).
  GemmCast result;
  auto take = [](const kernels::CastTarget& target, std::optional<ScaledTensor>& tensor,
                 std::optional<Array>& swizzled) {
    tensor = scaled_tensor_of(*target.plan, target.out);
    if (target.swizzled.defined()) swizzled = target.swizzled;
  };
  if (options.rowwise) take(targets.front(), result.rowwise, result.rowwise_swizzled_scale);
  if (options.columnwise) take(targets.back(), result.columnwise, result.columnwise_swizzled_scale);
  return result;
}

}  // namespace breccia
