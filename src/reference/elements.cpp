#include "reference/elements.hpp"

#include "breccia/error.hpp"

namespace breccia::kernels::reference::detail {

float read_wide(const Array& in, std::int64_t i) {
  switch (in.dtype()) {
    case DType::kF32:
      return in.data_as<const float>()[i];
    case DType::kF64:
      return static_cast<float>(in.data_as<const double>()[i]);
    case DType::kF16:
      return formats::F16::decode(in.data_as<const std::uint16_t>()[i]);
    case DType::kBF16:
      return formats::BF16::decode(in.data_as<const std::uint16_t>()[i]);
    default:
      fail<TypeError>("expected a float32, float16, bfloat16 or float64 array, got ",
                      dtype_name(in.dtype()));
  }
}

void write_wide(const Array& out, std::int64_t i, float value) {
  using formats::Overflow;
  switch (out.dtype()) {
    case DType::kF32:
      out.data_as<float>()[i] = value;
      return;
    case DType::kF64:
      out.data_as<double>()[i] = value;
      return;
    case DType::kF16:
      out.data_as<std::uint16_t>()[i] =
          static_cast<std::uint16_t>(formats::F16::encode(value, Overflow::kInfinity));
      return;
    case DType::kBF16:
      out.data_as<std::uint16_t>()[i] =
          static_cast<std::uint16_t>(formats::BF16::encode(value, Overflow::kInfinity));
      return;
    default:
      fail<TypeError>("expected a float32, float16, bfloat16 or float64 output, got ",
                      dtype_name(out.dtype()));
  }
}

std::vector<float> read_as_float32(const Array& x) {
  std::vector<float> values(static_cast<std::size_t>(x.numel()));
  for (std::int64_t i = 0; i < x.numel(); ++i) values[i] = read_wide(x, i);
  return values;
}

std::uint8_t encode_fp8(ElementFormat format, float value) {
  return static_cast<std::uint8_t>(format == ElementFormat::kE4M3 ? formats::E4M3::encode(value)
                                                                  : formats::E5M2::encode(value));
}

void store_code(const QuantPlan& plan, const Array& data, std::int64_t i, std::uint8_t code) {
  auto* bytes = data.data_as<std::uint8_t>();
  if (!plan.spec.packed) {
    bytes[i] = code;
    return;
  }
  // Elements are stored in order, so the even element starts its byte and the odd one fills it.
  std::uint8_t& byte = bytes[i / 2];
  byte = (i % 2 == 0) ? formats::pack_nibbles(code, 0) : formats::pack_nibbles(byte & 0xF, code);
}

std::uint8_t load_code(const QuantPlan& plan, const Array& data, std::int64_t i) {
  const auto* bytes = data.data_as<const std::uint8_t>();
  if (!plan.spec.packed) return bytes[i];
  return formats::unpack_nibble(bytes[i / 2], i);
}

Coordinates coordinates(const ScaleGrid& grid, std::int64_t i) {
  const std::int64_t per_batch = grid.rows * grid.cols;
  return {i / per_batch, (i % per_batch) / grid.cols, i % grid.cols};
}

std::int64_t amax_tile_count(const QuantPlan& plan) {
  const ScaleGrid& g = plan.grid;
  if (g.per_tensor) return 1;
  const std::int64_t tile_rows = (g.rows + plan.amax_block_rows - 1) / plan.amax_block_rows;
  const std::int64_t tile_cols = (g.cols + plan.amax_block_cols - 1) / plan.amax_block_cols;
  return g.batch * tile_rows * tile_cols;
}

std::int64_t amax_tile_index(const QuantPlan& plan, const Coordinates& at) {
  const ScaleGrid& g = plan.grid;
  if (g.per_tensor) return 0;
  const std::int64_t tile_rows = (g.rows + plan.amax_block_rows - 1) / plan.amax_block_rows;
  const std::int64_t tile_cols = (g.cols + plan.amax_block_cols - 1) / plan.amax_block_cols;
  return (at.batch * tile_rows + at.row / plan.amax_block_rows) * tile_cols +
         at.col / plan.amax_block_cols;
}

std::vector<float> tile_amax(const QuantPlan& plan, const std::vector<float>& x) {
  std::vector<float> amax(static_cast<std::size_t>(amax_tile_count(plan)), 0.0f);
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
    float& tile = amax[amax_tile_index(plan, coordinates(plan.grid, i))];
    tile = numerics::nan_max(tile, numerics::abs_value(x[i]));
  }
  return amax;
}

}  // namespace breccia::kernels::reference::detail
