// dequantize (numerics.md §2): decode(q) * scale in fp32, then rounded to the output dtype.
#include "breccia/kernels/reference.hpp"
#include "reference/elements.hpp"

namespace breccia::kernels::reference {
namespace {

// The decode multiplier stored at flat index s of a scale tensor.
float scale_value(const QuantPlan& plan, const Array& scale, std::int64_t s) {
  switch (plan.format) {
    case ElementFormat::kE2M1:
      return formats::E4M3::decode(scale.data_as<const std::uint8_t>()[s]);
    case ElementFormat::kInt4Signed:
    case ElementFormat::kInt4Unsigned:
      return detail::read_wide(scale, s);
    default:
      if (std::holds_alternative<MXFP8BlockScaling>(plan.recipe)) {
        return formats::E8M0::decode(scale.data_as<const std::uint8_t>()[s]);
      }
      return detail::read_wide(scale, s);
  }
}

}  // namespace

void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out) {
  const float global = plan.has_global_scale ? detail::read_wide(global_scale, 0) : 1.0f;
  const std::int64_t count = out.numel();
  for (std::int64_t i = 0; i < count; ++i) {
    const detail::Coordinates at = detail::coordinates(plan.grid, i);
    const std::int64_t s = plan.grid.scale_index(at.batch, at.row, at.col);
    float element = decode_element(plan.format, detail::load_code(plan, data, i));
    if (plan.has_zero_point)
      element -= static_cast<float>(zero_point.data_as<const std::uint8_t>()[s]);
    // NVFP4: the block's whole decode factor, decode(sd) * global_scale, is formed first and
    // then applied to the element, as TransformerEngine's and torchao's dequantize do.
    const float factor = scale_value(plan, scale, s) * global;
    detail::write_wide(out, i, element * factor);
  }
}

}  // namespace breccia::kernels::reference
