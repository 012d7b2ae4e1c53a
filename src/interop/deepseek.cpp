#include "breccia/interop/deepseek.hpp"

#include <utility>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/numerics.hpp"
#include "breccia/plan.hpp"
#include "reference/elements.hpp"

namespace breccia::interop {
namespace {

namespace reference = kernels::reference::detail;
using formats::detail::bits_float;
using formats::detail::float_bits;

// 2^ceil(log2 s) for a positive s, exactly: a power of two stays, anything else goes to the
// next power of two up. NaN and inf pass through.
float pow2_ceil(float scale) {
  const std::uint32_t bits = float_bits(scale);
  if (!numerics::is_finite(scale) || (bits & 0x007FFFFFu) == 0) return scale;
  return bits_float((bits & 0xFF800000u) + 0x00800000u);
}

}  // namespace

ScaledTensor deepseek_v3_quantize(const Array& x, const DeepSeekQuantOptions& options) {
  if (options.block_m < 1 || options.block_k < 1) {
    fail<ValueError>("block_m, block_k: expected positive block sizes, got ", options.block_m,
                     " x ", options.block_k);
  }
  if (!x.device().is_cpu()) {
    fail<DeviceError>("x: the DeepSeek-V3 quantizer runs on the CPU, got ", x.device().str());
  }
  if (!is_wide_float(x.dtype())) {
    fail<TypeError>("x: expected float32, float16, bfloat16 or float64 values to quantize, got ",
                    dtype_name(x.dtype()));
  }
  const Float8BlockScaling recipe{.fp8_format = options.fp8_format,
                                  .block_k = options.block_k,
                                  .block_m = options.block_m,
                                  .power_2_scale = options.ue8m0};
  const QuantPlan plan = plan_cast(x.shape(), recipe, -1);
  const float fmax = plan.spec.element_max;

  const std::vector<float> values = reference::read_as_float32(x.contiguous());
  const std::vector<float> amax = reference::tile_amax(plan, values);
  Array scale = Array::empty(DType::kF32, plan.grid.scale_shape);
  auto* scales = scale.data_as<float>();
  for (std::size_t tile = 0; tile < amax.size(); ++tile) {
    const float decode = numerics::nan_max(amax[tile], kDeepSeekMinAmax) / fmax;
    scales[tile] = options.ue8m0 ? pow2_ceil(decode) : decode;
  }

  Array data = Array::empty(plan.data_dtype, plan.data_shape);
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(values.size()); ++i) {
    const reference::Coordinates at = reference::coordinates(plan.grid, i);
    const float decode = scales[plan.grid.scale_index(at.batch, at.row, at.col)];
    reference::store_code(plan, data, i,
                          reference::encode_fp8(plan.spec.element, values[i] / decode));
  }
  return ScaledTensor(std::move(data), std::move(scale), recipe, plan.layout);
}

}  // namespace breccia::interop
