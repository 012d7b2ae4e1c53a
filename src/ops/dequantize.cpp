#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"
#include "ops/dispatch.hpp"

namespace breccia {

Array dequantize(const ScaledTensor& scaled, DType out_dtype, const Context& context) {
  if (!is_wide_float(out_dtype)) {
    fail<TypeError>("out_dtype: expected float32, float16, bfloat16 or float64, got ",
                    dtype_name(out_dtype));
  }
  ops_detail::require_kernels_for(scaled.device(), "dequantize", context);
  const QuantPlan plan = plan_of(scaled);
  Array out = Array::empty(out_dtype, plan.logical_shape, scaled.device(), context.allocator);
  const Array none;
  ops_detail::run_dequantize(plan, scaled.data().contiguous(), scaled.scale().contiguous(),
                             plan.has_global_scale ? scaled.global_scale()->contiguous() : none,
                             plan.has_zero_point ? scaled.zero_point()->contiguous() : none, out,
                             context);
  return out;
}

}  // namespace breccia
