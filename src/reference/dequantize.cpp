// dequantize (numerics.md §2): (decode(q) - zero point) * decoded scale * global scale in
// fp32, then rounded to the output dtype. The scale's meaning is the spec's scale format.
#include "breccia/kernels/reference.hpp"
#include "reference/elements.hpp"

namespace breccia::kernels::reference {

void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out) {
  const float global = plan.has_global_scale ? detail::read_wide(global_scale, 0) : 1.0f;
  const std::int64_t count = out.numel();
  for (std::int64_t i = 0; i < count; ++i) {
    const detail::Coordinates at = detail::coordinates(plan.grid, i);
    const std::int64_t s = plan.grid.scale_index(at.batch, at.row, at.col);
    float element = decode_element(plan.spec.element, detail::load_code(plan, data, i));
    if (plan.has_zero_point)
      element -= static_cast<float>(zero_point.data_as<const std::uint8_t>()[s]);
    // NVFP4: the block's whole decode factor, decode(sd) * global_scale, is formed first and
    // then applied to the element, as TransformerEngine's and torchao's dequantize do.
    const float factor =
        decode_scale_bits(plan.spec.scale, detail::load_scale_bits(scale, s)) * global;
    detail::write_wide(out, i, element * factor);
  }
}

}  // namespace breccia::kernels::reference
