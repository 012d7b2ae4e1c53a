#include "breccia/interop/transformer_engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "breccia/error.hpp"
#include "breccia/numerics.hpp"
#include "breccia/scale_layout.hpp"
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

std::int64_t round_up(std::int64_t value, std::int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

void require_cpu(const Array& array, std::string_view argument) {
  if (!array.device().is_cpu()) {
    fail<DeviceError>(argument, ": TransformerEngine buffers are converted on the CPU, got ",
                      array.str());
  }
}

Array require_matrix(const Array& array, std::string_view argument) {
  require_cpu(array, argument);
  if (array.ndim() != 2) {
    fail<ValueError>(argument, ": expected a 2-D scale matrix, got shape ",
                     shape_str(array.shape()));
  }
  return array.contiguous();
}

// A 2-D contiguous matrix's (cols, rows) transpose, for elements of any size.
Array transposed(const Array& matrix) {
  const std::int64_t rows = matrix.dim(0);
  const std::int64_t cols = matrix.dim(1);
  const std::int64_t size = itemsize(matrix.dtype());
  Array out = Array::empty(matrix.dtype(), {cols, rows});
  const auto* from = matrix.data_as<const std::byte>();
  auto* to = out.data_as<std::byte>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      std::memcpy(to + (c * rows + r) * size, from + (r * cols + c) * size, size);
    }
  }
  return out;
}

// The top-left of a zero-filled (rows, cols) matrix holds `matrix`; or, with rows/cols smaller
// than the matrix, its top-left crop. Either way one row-major copy.
Array resized(const Array& matrix, std::int64_t rows, std::int64_t cols) {
  const std::int64_t size = itemsize(matrix.dtype());
  Array out = Array::zeros(matrix.dtype(), {rows, cols});
  const std::int64_t copy_rows = std::min(rows, matrix.dim(0));
  const std::int64_t copy_bytes = std::min(cols, matrix.dim(1)) * size;
  const auto* from = matrix.data_as<const std::byte>();
  auto* to = out.data_as<std::byte>();
  for (std::int64_t r = 0; r < copy_rows; ++r) {
    std::memcpy(to + r * cols * size, from + r * matrix.dim(1) * size, copy_bytes);
  }
  return out;
}

bool is_tile_kind(TeScaleBuffer kind) {
  return kind == TeScaleBuffer::kTiles || kind == TeScaleBuffer::kColumnwiseTiles;
}

// The buffer shape TE allocates for compact (rows, cols) scales of this kind.
Shape buffer_shape(std::int64_t rows, std::int64_t cols, TeScaleBuffer kind) {
  switch (kind) {
    case TeScaleBuffer::kTiles:
      return {padded_scale_rows(rows), padded_scale_cols(cols)};
    case TeScaleBuffer::kColumnwiseTiles:
      return {round_up(rows, kScaleTileCols), round_up(cols, kScaleTileRows)};
    case TeScaleBuffer::kPad4:
      return {rows, round_up(cols, 4)};
    case TeScaleBuffer::kTransposedPad4:
      return {cols, round_up(rows, 4)};
  }
  fail<ValueError>("kind: unknown TransformerEngine scale buffer");
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

Array te_scale_buffer(const Array& compact, TeScaleBuffer kind, bool swizzle) {
  const Array matrix = require_matrix(compact, "compact");
  if (swizzle && !is_tile_kind(kind)) {
    fail<ValueError>("swizzle: only MXFP8/NVFP4 scale tiles are swizzled, not blockwise FP8's");
  }
  const std::int64_t rows = matrix.dim(0);
  const std::int64_t cols = matrix.dim(1);
  const Shape shape = buffer_shape(rows, cols, kind);
  switch (kind) {
    case TeScaleBuffer::kTiles:
      return swizzle ? swizzle_scales(matrix) : pad_scales(matrix);
    case TeScaleBuffer::kColumnwiseTiles:
      // TE's column-scaling swizzle (common/swizzle/swizzle.cu) tiles the (C, R) transpose.
      return swizzle ? swizzle_scales(transposed(matrix)).reshaped(shape)
                     : resized(matrix, shape[0], shape[1]);
    case TeScaleBuffer::kPad4:
      return resized(matrix, shape[0], shape[1]);
    case TeScaleBuffer::kTransposedPad4:
      return resized(transposed(matrix), shape[0], shape[1]);
  }
  fail<ValueError>("kind: unknown TransformerEngine scale buffer");
}

Array te_compact_scales(const Array& buffer, std::int64_t rows, std::int64_t cols,
                        TeScaleBuffer kind, bool swizzled) {
  require_cpu(buffer, "buffer");
  if (rows < 0 || cols < 0) {
    fail<ValueError>("rows, cols: expected non-negative sizes, got ", rows, ", ", cols);
  }
  if (swizzled && !is_tile_kind(kind)) {
    fail<ValueError>("swizzled: only MXFP8/NVFP4 scale tiles are swizzled, not blockwise FP8's");
  }
  const Shape shape = buffer_shape(rows, cols, kind);
  if (buffer.shape() != shape) {
    fail<ValueError>("buffer: expected TransformerEngine's shape ", shape_str(shape), " for ", rows,
                     " x ", cols, " scales, got ", shape_str(buffer.shape()));
  }
  const Array matrix = buffer.contiguous();
  switch (kind) {
    case TeScaleBuffer::kTiles:
      return swizzled ? unswizzle_scales(matrix, rows, cols) : resized(matrix, rows, cols);
    case TeScaleBuffer::kColumnwiseTiles:
      if (!swizzled) return resized(matrix, rows, cols);
      return transposed(unswizzle_scales(matrix.reshaped({shape[1], shape[0]}), cols, rows));
    case TeScaleBuffer::kPad4:
      return resized(matrix, rows, cols);
    case TeScaleBuffer::kTransposedPad4:
      return transposed(resized(matrix, cols, rows));
  }
  fail<ValueError>("kind: unknown TransformerEngine scale buffer");
}

Array te_transpose(const Array& data, bool packed_fp4) {
  require_cpu(data, "data");
  if (data.ndim() < 2 || itemsize(data.dtype()) != 1) {
    fail<ValueError>("data: expected 1-byte elements in at least 2 dims, got ", data.str());
  }
  const std::int64_t cols = data.dim(-1);
  const std::int64_t rows = data.numel() / std::max<std::int64_t>(cols, 1);
  const Array matrix = data.contiguous().reshaped({rows, cols});
  if (!packed_fp4) return transposed(matrix);
  if (rows % 2 != 0) {
    fail<ValueError>("data: packed 4-bit codes transpose into rows of byte pairs, so the ",
                     "flattened row count must be even, got ", rows, " rows in ",
                     shape_str(data.shape()));
  }
  // Element (r, k) is nibble k % 2 of byte (r, k / 2); it becomes nibble r % 2 of (k, r / 2).
  const std::int64_t elements = 2 * cols;
  Array out = Array::zeros(data.dtype(), {elements, rows / 2});
  const auto* from = matrix.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t k = 0; k < elements; ++k) {
      const std::uint8_t code = (from[r * cols + k / 2] >> (4 * (k % 2))) & 0xF;
      to[k * (rows / 2) + r / 2] |= static_cast<std::uint8_t>(code << (4 * (r % 2)));
    }
  }
  return out;
}

}  // namespace breccia::interop
