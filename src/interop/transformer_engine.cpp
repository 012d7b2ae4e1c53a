#include "breccia/interop/transformer_engine.hpp"

#include <cmath>

#include "breccia/error.hpp"
#include "breccia/numerics.hpp"
#include "reference/elements.hpp"

namespace breccia::interop {
namespace {

float single_fp32(const Array& array, std::string_view argument) {
  if (!array.device().is_cpu()) {
    fail<DeviceError>(argument, ": expected a CPU tensor, got one on ", array.device().str());
  }
  if (array.dtype() != DType::kF32 || array.numel() != 1) {
    fail<ValueError>(argument, ": expected one float32 value, got ", array.str());
  }
  return kernels::reference::detail::read_wide(array.contiguous(), 0);
}

}  // namespace

Array nvfp4_global_scale_from_amax(const Array& amax) {
  Array global_scale = Array::empty(DType::kF32, {});
  global_scale.data_as<float>()[0] = numerics::nvfp4_global_scale(single_fp32(amax, "amax"));
  return global_scale;
}

Array nvfp4_amax_for_global_scale(const Array& global_scale) {
  const float target = single_fp32(global_scale, "global_scale");
  if (!(target >= 0.0f) || !numerics::is_finite(target)) {
    fail<ValueError>("global_scale: expected a finite value >= 0, got ", target);
  }
  // amax / 2688 rounds, so the product may land one ulp off a preimage; step towards it.
  float amax = target * numerics::kNvfp4GlobalRange;
  for (int step = 0; step < 4 && numerics::nvfp4_global_scale(amax) != target; ++step) {
    amax = std::nextafter(amax, numerics::nvfp4_global_scale(amax) < target ? INFINITY : 0.0f);
  }
  if (numerics::nvfp4_global_scale(amax) != target) {
    fail<ValueError>("global_scale: ", target, " is not amax / 2688 for any fp32 amax");
  }
  Array out = Array::empty(DType::kF32, {1});
  out.data_as<float>()[0] = amax;
  return out;
}

}  // namespace breccia::interop
