// Chooses the kernel for a validated, planned operation by device. Today the CPU runs the
// reference kernels; fast CPU and CUDA kernels slot in here, behind the same plan.
#pragma once

#include "breccia/kernels/reference.hpp"

namespace breccia::ops_detail {

// Throws DeviceError unless every array is on `device`; breccia never moves data between
// devices behind the caller's back.
void require_device(const Array& array, std::string_view argument, Device device);

// Throws UnsupportedError for devices this build has no kernels for.
void require_kernels_for(Device device, std::string_view operation);

void run_cast(const QuantPlan& plan, const Array& x, const kernels::reference::CastOutputs& out,
              DelayedScalingState* state);
void run_dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& out);

}  // namespace breccia::ops_detail
