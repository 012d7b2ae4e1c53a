// What a cast kernel writes for one plan, the same for every device's kernels.
#pragma once

#include "breccia/array.hpp"
#include "breccia/plan.hpp"

namespace breccia::kernels {

// The arrays one cast writes, allocated by the ops as the plan says.
struct CastOutputs {
  Array data;          // plan.data_shape, plan.data_dtype
  Array scale;         // plan.grid.scale_shape, plan.scale_dtype
  Array global_scale;  // NVFP4: fp32, shape ()
  Array zero_point;    // unsigned INT4: uint8, scale's shape
};

// One output of a cast: the plan's arrays (allocated as the plan says, on x's device) and,
// when `swizzled` is defined, a GEMM-ready copy of the scales: each scale matrix padded to
// whole 128 x 4 tiles and swizzled as scale_layout.hpp describes, of the transposed matrix
// for a columnwise (axis=-2) plan, so that both copies index (GEMM row, K block). One-byte
// scales only (the MX recipes, NVFP4); `swizzled` is (..., padded rows, padded cols) uint8.
struct CastTarget {
  const QuantPlan* plan = nullptr;
  CastOutputs out;
  Array swizzled;
};

}  // namespace breccia::kernels
