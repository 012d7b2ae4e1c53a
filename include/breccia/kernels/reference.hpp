// Reference kernels: scalar, single-threaded, obviously correct C++ that follows numerics.md
// line by line. They are the oracle every faster kernel is tested against, byte for byte.
// Inputs are contiguous CPU arrays shaped as the plan says; the ops validate before calling.
#pragma once

#include <cstdint>
#include <optional>

#include "breccia/array.hpp"
#include "breccia/kernels/cast_target.hpp"
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"

namespace breccia::kernels::reference {

// Quantizes x (any wide float dtype) into `out`. `state` is read and updated for
// DelayedScaling (null: the stateless rule). `tensor_amax`, when given, replaces x's amax for
// the rules that scale from the tensor's (NVFP4's global scale).
void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out, DelayedScalingState* state,
          std::optional<float> tensor_amax = std::nullopt);

// Writes decode(data) * scale into `out` (any wide float dtype, plan.logical_shape).
// `global_scale` and `zero_point` are empty unless the plan has them.
void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out);

// Element-wise conversion between wide float dtypes (fp32/fp16/bf16/fp64), each value
// rounded to nearest even; `in` and `out` contiguous with the same number of elements.
void convert(const Array& in, const Array& out);

// c = a @ b for row-major fp32 matrices a (m x k), b (k x n), c (m x n), through BLAS sgemm;
// with b_transposed, b is n x k (a weight as checkpoints store it) and c = a @ b^T.
void gemm_f32(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, const float* b,
              float* c, bool b_transposed = false);

}  // namespace breccia::kernels::reference
