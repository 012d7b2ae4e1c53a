// One reference quantizer per recipe family (one file each), called by reference::cast.
// `x` holds the input as fp32 in logical row-major order.
#pragma once

#include <vector>

#include "breccia/kernels/reference.hpp"

namespace breccia::kernels::reference::detail {

void cast_fp8_per_tensor(const QuantPlan& plan, const std::vector<float>& x, const CastOutputs& out,
                         DelayedScalingState* state);
void cast_fp8_block(const QuantPlan& plan, const Float8BlockScaling& recipe,
                    const std::vector<float>& x, const CastOutputs& out);
void cast_mxfp8(const QuantPlan& plan, const MXFP8BlockScaling& recipe, const std::vector<float>& x,
                const CastOutputs& out);
void cast_nvfp4(const QuantPlan& plan, const std::vector<float>& x, const CastOutputs& out);
void cast_int4(const QuantPlan& plan, const INT4Scaling& recipe, const std::vector<float>& x,
               const CastOutputs& out);

}  // namespace breccia::kernels::reference::detail
