// The four scale layouts: where each scale applies, in logical element coordinates of the last
// two dimensions (a 1-D tensor is one row). Leading dimensions are batch dimensions and the
// scale carries them unchanged; the scale has the data's rank, so a 1-D tensor's scale has no
// row dimension: (ceil(K / block),), or (1,) for PerChannel.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "breccia/array.hpp"

namespace breccia {

// One scale for the whole tensor: scale shape () or (1,).
struct PerTensor {
  static constexpr std::string_view kName = "PerTensor";
  friend bool operator==(const PerTensor&, const PerTensor&) = default;
};

// One scale per block_size elements of the last axis: scale shape (..., K / block_size).
struct PerBlockK {
  static constexpr std::string_view kName = "PerBlockK";
  std::int64_t block_size = 128;
  friend bool operator==(const PerBlockK&, const PerBlockK&) = default;
};

// One scale per row: scale shape (M,) for 2-D data or (..., M, 1).
struct PerChannel {
  static constexpr std::string_view kName = "PerChannel";
  friend bool operator==(const PerChannel&, const PerChannel&) = default;
};

// One scale per block_m x block_n tile of the last two axes: scale shape
// (..., ceil(M / block_m), ceil(N / block_n)). (32, 1) is a columnwise block of 32.
struct PerBlockMN {
  static constexpr std::string_view kName = "PerBlockMN";
  std::int64_t block_m = 1;
  std::int64_t block_n = 32;
  friend bool operator==(const PerBlockMN&, const PerBlockMN&) = default;
};

using Layout = std::variant<PerTensor, PerBlockK, PerChannel, PerBlockMN>;

// Where one scale applies: a tile of `rows` x `cols` elements over the last two dims.
// per_tensor: a single scale spanning every batch too.
struct ScaleGrid {
  bool per_tensor = false;
  std::int64_t block_rows = 1;
  std::int64_t block_cols = 1;
  std::int64_t batch = 1;       // product of leading dims
  std::int64_t rows = 1;        // M (1 for 1-D data)
  std::int64_t cols = 1;        // K
  std::int64_t scale_rows = 1;  // ceil(rows / block_rows)
  std::int64_t scale_cols = 1;  // ceil(cols / block_cols)
  Shape scale_shape;            // the canonical scale shape

  // Flat index into a contiguous scale tensor for element (b, r, c).
  std::int64_t scale_index(std::int64_t b, std::int64_t r, std::int64_t c) const {
    if (per_tensor) return 0;
    return (b * scale_rows + r / block_rows) * scale_cols + c / block_cols;
  }
};

void validate(const Layout& layout);  // positive block sizes

// The layout of the same scales over the data transposed in its last two dims: block rows and
// columns swapped. PerChannel has none (one scale per column is no layout); UnsupportedError
// naming `argument` then.
Layout transposed(const Layout& layout, std::string_view argument);
std::string_view layout_name(const Layout& layout);
std::string layout_repr(const Layout& layout);  // "PerBlockMN(block_m=1, block_n=32)"
std::string layout_to_json(const Layout& layout);
// Inverse of layout_to_json; ValueError headed by `caller` (see recipe_from_json).
Layout layout_from_json(std::string_view json, std::string_view caller = "layout_from_json");
std::size_t layout_hash(const Layout& layout);

// Geometry of `layout` over data of logical shape `logical_shape`.
ScaleGrid scale_grid(const Layout& layout, std::span<const std::int64_t> logical_shape);

// Throws ValueError unless `scale`'s shape fits `layout` over data of `logical_shape`; the
// message says which shape was expected and which was got.
void validate_layout(const Layout& layout, std::span<const std::int64_t> logical_shape,
                     const Array& scale);

}  // namespace breccia
