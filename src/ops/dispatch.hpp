// Chooses the kernel for a validated, planned operation from the data's device and the
// context's kernel preference: the reference kernels on the CPU (and whenever the reference
// is asked for), the CUDA kernels (kernels/cuda.hpp) on CUDA devices when BRECCIA_CUDA is built.
#pragma once

#include <optional>
#include <span>

#include "breccia/context.hpp"
#include "breccia/kernels/cast_target.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/ops.hpp"

namespace breccia::ops_detail {

// Throws DeviceError unless every array is on `device`; breccia never moves data between
// devices behind the caller's back.
void require_device(const Array& array, std::string_view argument, Device device);

// Throws UnsupportedError for devices this build has no kernels for, and DeviceError when the
// reference kernels are asked for on data that is not on the CPU.
void require_kernels_for(Device device, std::string_view operation, const Context& context);

// Casts x into every target (one plan, or the rowwise and columnwise plans of one recipe,
// which a device kernel may fill in one pass), GEMM-ready swizzled scales included.
void run_cast(const Array& x, std::span<const kernels::CastTarget> targets,
              DelayedScalingState* state, const Context& context,
              std::optional<float> tensor_amax = std::nullopt);
void run_dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& out,
                    const Context& context);
// matmul of operands on a (non-CPU) device.
Array run_matmul_on_device(const Operand& a, const Operand& b, DType out_dtype,
                           const Context& context);
Array run_linear_on_device(const Operand& x, const Operand& w, const std::optional<Array>& bias,
                           DType out_dtype, const Context& context);

}  // namespace breccia::ops_detail
