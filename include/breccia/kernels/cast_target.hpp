// What a cast kernel writes for one plan, the same for every device's kernels.
#pragma once

#include "breccia/array.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/plan.hpp"

namespace breccia::kernels {

// One output of a cast: the plan's arrays (allocated as the plan says, on x's device) and,
// when `swizzled` is defined, a GEMM-ready copy of the scales: each scale matrix padded to
// whole 128 x 4 tiles and swizzled as scale_layout.hpp describes, of the transposed matrix
// for a columnwise (axis=-2) plan, so that both copies index (GEMM row, K block). One-byte
// scales only (MXFP8, NVFP4); `swizzled` is (..., padded rows, padded cols) uint8.
struct CastTarget {
  const QuantPlan* plan = nullptr;
  reference::CastOutputs out;
  Array swizzled;
};

}  // namespace breccia::kernels
