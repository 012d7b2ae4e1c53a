// Reference kernels: scalar, single-threaded, obviously correct C++ that follows numerics.md
// line by line. They are the oracle every faster kernel is tested against, byte for byte.
// Inputs are contiguous CPU arrays shaped as the plan says; the ops validate before calling.
#pragma once

#include "breccia/array.hpp"
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"

namespace breccia::kernels::reference {

struct CastOutputs {
  Array data;          // plan.data_shape, plan.data_dtype
  Array scale;         // plan.grid.scale_shape, plan.scale_dtype
  Array global_scale;  // NVFP4: fp32, shape ()
  Array zero_point;    // unsigned INT4: uint8, scale's shape
};

// Quantizes x (any wide float dtype) into `out`. `state` is read and updated for
// DelayedScaling (null: the stateless rule).
void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out,
          DelayedScalingState* state);

// Writes decode(data) * scale into `out` (any wide float dtype, plan.logical_shape).
// `global_scale` and `zero_point` are empty unless the plan has them.
void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out);

// amax over all elements of x (NaN if any is NaN).
float amax(const Array& x);

// out[b] = a[b] @ b[b] in fp32 for contiguous fp32 operands of shapes (batch, M, K), (batch, K, N).
void matmul_f32(const Array& a, const Array& b, const Array& out);

}  // namespace breccia::kernels::reference
