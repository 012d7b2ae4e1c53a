#include "ops/dispatch.hpp"

#include <cstring>
#include <utility>

#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"
#include "breccia/scale_layout.hpp"
#if defined(BRECCIA_WITH_CUDA)
#include "breccia/kernels/cuda.hpp"
#endif

namespace breccia::ops_detail {
namespace {

// The swizzled copy of a reference cast's scales (a columnwise plan's are those of the
// transposed scale matrix).
void write_swizzled(const kernels::CastTarget& target) {
  const Array& scale = target.out.scale;
  Array compact = scale;
  if (target.plan->axis == -2) {
    Shape shape = scale.shape();
    Strides strides = contiguous_strides(shape);
    std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
    std::swap(strides[strides.size() - 1], strides[strides.size() - 2]);
    compact =
        Array::borrow(scale.data(), scale.dtype(), shape, strides, scale.device(), scale.owner())
            .contiguous();
  }
  const Array swizzled = swizzle_scales(compact);
  std::memcpy(target.swizzled.data(), swizzled.data(), static_cast<std::size_t>(swizzled.nbytes()));
}

#if defined(BRECCIA_WITH_CUDA)
bool on_cuda(Device device, const Context& context) {
  return device.kind == Device::Kind::kCUDA && context.kernels == KernelPreference::kAutomatic;
}
#endif

}  // namespace

void require_device(const Array& array, std::string_view argument, Device device) {
  if (array.device() != device) {
    fail<DeviceError>(argument, ": expected an array on ", device, " like the other operands, got ",
                      array.device(), " (breccia never copies between devices implicitly)");
  }
}

void require_kernels_for(Device device, std::string_view operation, const Context& context) {
  if (context.kernels == KernelPreference::kReference && !device.is_cpu()) {
    fail<DeviceError>(operation, ": the reference kernels run on the CPU, got data on ", device,
                      " (breccia never copies between devices implicitly)");
  }
#if defined(BRECCIA_WITH_CUDA)
  if (device.kind == Device::Kind::kCUDA) return;
#endif
  if (!device.is_cpu()) {
    fail<UnsupportedError>(operation, ": this build of breccia has no kernels for ", device,
                           " (CUDA kernels are not built); move the data to the CPU explicitly "
                           "if that is what you want");
  }
}

void run_cast(const Array& x, std::span<const kernels::CastTarget> targets,
              DelayedScalingState* state, const Context& context,
              std::optional<float> tensor_amax) {
#if defined(BRECCIA_WITH_CUDA)
  if (on_cuda(x.device(), context)) {
    kernels::cuda::cast(x, targets, state, context, tensor_amax);
    return;
  }
#endif
  const bool reference = context.kernels == KernelPreference::kReference;
  for (const kernels::CastTarget& target : targets) {
    if (reference) {
      kernels::reference::cast(*target.plan, x, target.out, state, tensor_amax);
    } else {
      kernels::cpu::cast(*target.plan, x, target.out, state, tensor_amax);
    }
    if (target.swizzled.defined()) write_swizzled(target);
  }
}

void run_dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& out,
                    const Context& context) {
#if defined(BRECCIA_WITH_CUDA)
  if (on_cuda(data.device(), context)) {
    kernels::cuda::dequantize(plan, data, scale, global_scale, zero_point, out, context);
    return;
  }
#endif
  if (context.kernels == KernelPreference::kReference) {
    kernels::reference::dequantize(plan, data, scale, global_scale, zero_point, out);
  } else {
    kernels::cpu::dequantize(plan, data, scale, global_scale, zero_point, out);
  }
}

Array run_matmul_on_device(const Operand& a, const Operand& b, DType out_dtype,
                           const Context& context) {
#if defined(BRECCIA_WITH_CUDA)
  return kernels::cuda::matmul(a, b, out_dtype, context);
#else
  (void)a, (void)b, (void)out_dtype, (void)context;
  fail<UnsupportedError>("matmul: this build of breccia has no CUDA kernels");
#endif
}

Array run_linear_on_device(const Operand& x, const Operand& w, const std::optional<Array>& bias,
                           DType out_dtype, const Context& context) {
#if defined(BRECCIA_WITH_CUDA)
  return kernels::cuda::linear(x, w, bias, out_dtype, context);
#else
  (void)x, (void)w, (void)bias, (void)out_dtype, (void)context;
  fail<UnsupportedError>("linear: this build of breccia has no CUDA kernels");
#endif
}

}  // namespace breccia::ops_detail
