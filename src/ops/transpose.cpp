#include <cstring>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"

namespace breccia {
namespace {

// Packed 4-bit codes (two per byte along the last axis, low nibble first) of a logical
// (..., rows, cols) tensor, repacked as (..., cols, rows).
Array repacked_transpose(const Array& packed, std::int64_t rows, std::int64_t cols,
                         const Context& context) {
  if (!packed.device().is_cpu()) {
    fail<UnsupportedError>(
        "transpose: repacking 4-bit codes along the other axis runs on the CPU "
        "only, got data on ",
        packed.device(), "; for an (N, K) weight use linear(x, w), which reads it as stored");
  }
  if (rows % 2 != 0) {
    fail<ValueError>(
        "transpose: packed 4-bit data needs an even last dim after the transpose "
        "(two codes per byte), got ",
        rows, " rows to become the last dim");
  }
  const Array in = packed.contiguous();
  Shape shape = in.shape();
  shape[shape.size() - 2] = cols;
  shape.back() = rows / 2;
  Array out = Array::empty(DType::kU8, shape, Device::cpu(), context.allocator);
  std::memset(out.data(), 0, static_cast<std::size_t>(out.nbytes()));
  const auto* from = in.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  const std::int64_t matrices = rows * cols == 0 ? 0 : in.numel() * 2 / (rows * cols);
  for (std::int64_t m = 0; m < matrices; ++m) {
    const std::uint8_t* source = from + m * rows * (cols / 2);
    std::uint8_t* target = to + m * cols * (rows / 2);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        const int code = (source[r * (cols / 2) + c / 2] >> (4 * (c % 2))) & 0xF;
        target[c * (rows / 2) + r / 2] |= static_cast<std::uint8_t>(code << (4 * (r % 2)));
      }
    }
  }
  return out;
}

// The layout of x transposed, spelled as x's recipe spells it: the recipe's rowwise and
// columnwise layouts trade places (PerBlockK(128) <-> PerBlockMN(128, 1)); any other layout
// swaps its block shape.
Layout transposed_layout(const ScaledTensor& x) {
  const RecipeSpec& spec = x.spec();
  if (spec.columnwise_layout) {
    if (x.layout() == spec.rowwise_layout) return *spec.columnwise_layout;
    if (x.layout() == *spec.columnwise_layout) return spec.rowwise_layout;
  }
  return transposed(x.layout(), "x");
}

}  // namespace

ScaledTensor transpose(const ScaledTensor& x, const Context& context) {
  if (x.ndim() < 2) return x;
  const Layout layout = transposed_layout(x);
  const Shape logical = x.logical_shape();
  const Array data = x.spec().packed ? repacked_transpose(x.data(), logical[logical.size() - 2],
                                                          logical.back(), context)
                                     : x.data().transposed();
  // Per-tensor scales have fewer dims than the data and stay as they are.
  auto scales = [&](const Array& scale) {
    return scale.ndim() == x.ndim() ? scale.transposed() : scale;
  };
  std::optional<Array> zero_point;
  if (x.zero_point()) zero_point = scales(*x.zero_point());
  return ScaledTensor(data, scales(x.scale()), x.recipe(), layout, x.global_scale(), zero_point);
}

}  // namespace breccia
