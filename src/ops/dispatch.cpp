#include "ops/dispatch.hpp"

#include "breccia/error.hpp"

namespace breccia::ops_detail {

void require_device(const Array& array, std::string_view argument, Device device) {
  if (array.device() != device) {
    fail<DeviceError>(argument, ": expected an array on ", device, " like the other operands, got ",
                      array.device(), " (breccia never copies between devices implicitly)");
  }
}

void require_kernels_for(Device device, std::string_view operation) {
  if (!device.is_cpu()) {
    fail<UnsupportedError>(operation, ": this build of breccia has no kernels for ", device,
                           " (CUDA kernels are not built); move the data to the CPU explicitly "
                           "if that is what you want");
  }
}

void run_cast(const QuantPlan& plan, const Array& x, const kernels::reference::CastOutputs& out,
              DelayedScalingState* state) {
  kernels::reference::cast(plan, x, out, state);
}

void run_dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& out) {
  kernels::reference::dequantize(plan, data, scale, global_scale, zero_point, out);
}

}  // namespace breccia::ops_detail
