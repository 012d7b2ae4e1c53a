#include "breccia/scale_layout.hpp"

#include <cstring>

#include "breccia/error.hpp"

namespace breccia {
namespace {

// A scale tensor seen as `batch` matrices of rows x cols bytes.
struct ScaleMatrices {
  Array contiguous;
  std::int64_t batch = 1;
  std::int64_t rows = 1;
  std::int64_t cols = 1;
};

ScaleMatrices as_matrices(const Array& scale, std::string_view argument) {
  if (!scale.device().is_cpu()) {
    fail<DeviceError>(argument, ": scale layouts are converted on the CPU, got an array on ",
                      scale.device().str());
  }
  if (itemsize(scale.dtype()) != 1) {
    fail<TypeError>(argument,
                    ": expected 1-byte scale codes (float8_e8m0fnu, float8_e4m3fn or "
                    "uint8), got ",
                    dtype_name(scale.dtype()));
  }
  if (scale.ndim() < 2) {
    fail<ValueError>(argument, ": expected a scale matrix (at least 2-D), got shape ",
                     shape_str(scale.shape()));
  }
  ScaleMatrices matrices{.contiguous = scale.contiguous()};
  matrices.cols = scale.dim(-1);
  matrices.rows = scale.dim(-2);
  for (int axis = 0; axis + 2 < scale.ndim(); ++axis) matrices.batch *= scale.shape()[axis];
  return matrices;
}

Shape with_last_two(const Array& like, std::int64_t rows, std::int64_t cols) {
  Shape shape = like.shape();
  shape[shape.size() - 2] = rows;
  shape.back() = cols;
  return shape;
}

std::int64_t round_up(std::int64_t value, std::int64_t multiple, std::string_view argument) {
  if (value < 0) fail<ValueError>(argument, ": expected a non-negative size, got ", value);
  return (value + multiple - 1) / multiple * multiple;
}

void require_padded_shape(const ScaleMatrices& matrices, std::int64_t rows, std::int64_t cols,
                          const Array& array, std::string_view argument) {
  const std::int64_t expected_rows = padded_scale_rows(rows);
  const std::int64_t expected_cols = padded_scale_cols(cols);
  if (matrices.rows != expected_rows || matrices.cols != expected_cols) {
    fail<ValueError>(argument, ": expected the padded (", expected_rows, ", ", expected_cols,
                     ") of a (", rows, ", ", cols, ") scale in its last two dims, got shape ",
                     shape_str(array.shape()));
  }
}

}  // namespace

std::int64_t padded_scale_rows(std::int64_t rows) {
  return round_up(rows, kScaleTileRows, "rows");
}
std::int64_t padded_scale_cols(std::int64_t cols) {
  return round_up(cols, kScaleTileCols, "cols");
}

Array pad_scales(const Array& scale) {
  const ScaleMatrices in = as_matrices(scale, "scale");
  const std::int64_t rows = padded_scale_rows(in.rows);
  const std::int64_t cols = padded_scale_cols(in.cols);
  Array out = Array::zeros(scale.dtype(), with_last_two(scale, rows, cols));
  const auto* from = in.contiguous.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t b = 0; b < in.batch; ++b) {
    for (std::int64_t r = 0; r < in.rows; ++r) {
      std::memcpy(to + (b * rows + r) * cols, from + (b * in.rows + r) * in.cols, in.cols);
    }
  }
  return out;
}

Array unpad_scales(const Array& padded, std::int64_t rows, std::int64_t cols) {
  const ScaleMatrices in = as_matrices(padded, "padded");
  require_padded_shape(in, rows, cols, padded, "padded");
  Array out = Array::empty(padded.dtype(), with_last_two(padded, rows, cols));
  const auto* from = in.contiguous.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t b = 0; b < in.batch; ++b) {
    for (std::int64_t r = 0; r < rows; ++r) {
      std::memcpy(to + (b * rows + r) * cols, from + (b * in.rows + r) * in.cols, cols);
    }
  }
  return out;
}

Array swizzle_scales(const Array& scale) {
  const ScaleMatrices in = as_matrices(scale, "scale");
  const std::int64_t rows = padded_scale_rows(in.rows);
  const std::int64_t cols = padded_scale_cols(in.cols);
  Array out = Array::zeros(scale.dtype(), with_last_two(scale, rows, cols));
  const auto* from = in.contiguous.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t b = 0; b < in.batch; ++b) {
    std::uint8_t* matrix = to + b * rows * cols;
    for (std::int64_t r = 0; r < in.rows; ++r) {
      for (std::int64_t c = 0; c < in.cols; ++c) {
        matrix[swizzled_scale_offset(r, c, cols)] = from[(b * in.rows + r) * in.cols + c];
      }
    }
  }
  return out;
}

Array unswizzle_scales(const Array& swizzled, std::int64_t rows, std::int64_t cols) {
  const ScaleMatrices in = as_matrices(swizzled, "swizzled");
  require_padded_shape(in, rows, cols, swizzled, "swizzled");
  Array out = Array::empty(swizzled.dtype(), with_last_two(swizzled, rows, cols));
  const auto* from = in.contiguous.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t b = 0; b < in.batch; ++b) {
    const std::uint8_t* matrix = from + b * in.rows * in.cols;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        to[(b * rows + r) * cols + c] = matrix[swizzled_scale_offset(r, c, in.cols)];
      }
    }
  }
  return out;
}

}  // namespace breccia
