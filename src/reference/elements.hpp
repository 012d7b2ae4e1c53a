// Plain element access shared by the reference kernels: wide floats in and out, FP8 and
// packed 4-bit codes, and the per-unit amax pass every scaled recipe starts with.
#pragma once

#include <cstdint>
#include <vector>

#include "breccia/array.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/numerics.hpp"
#include "breccia/plan.hpp"

namespace breccia::kernels::reference::detail {

// Every element of a contiguous wide-float array, as fp32.
std::vector<float> read_as_float32(const Array& x);

// Stores fp32 `value` at flat index `i` of a contiguous wide-float array, rounding to its dtype.
void write_wide(const Array& out, std::int64_t i, float value);
// Reads flat index `i` of a contiguous wide-float array as fp32.
float read_wide(const Array& in, std::int64_t i);

// FP8 code of one element in `format` (after the encode scale has been applied).
std::uint8_t encode_fp8(ElementFormat format, float value);

// Calls fn with a scale array's entries as unsigned integers of their width (1, 2 or 4 bytes):
// the one place that width is chosen, for single entries and for loops over many.
template <class Fn>
decltype(auto) with_scale_entries(const Array& scale, Fn&& fn) {
  switch (itemsize(scale.dtype())) {
    case 1:
      return fn(scale.data_as<std::uint8_t>());
    case 2:
      return fn(scale.data_as<std::uint16_t>());
    default:
      return fn(scale.data_as<std::uint32_t>());
  }
}

// The bits of scale entry `s` of a scale array, and their store.
inline std::uint32_t load_scale_bits(const Array& scale, std::int64_t s) {
  return with_scale_entries(scale, [&](const auto* entries) { return std::uint32_t{entries[s]}; });
}
inline void store_scale_bits(const Array& scale, std::int64_t s, std::uint32_t bits) {
  with_scale_entries(scale,
                     [&]<class Bits>(Bits* entries) { entries[s] = static_cast<Bits>(bits); });
}

// Writes element code `code` at logical flat index `i` (packed formats: nibble i % 2).
void store_code(const QuantPlan& plan, const Array& data, std::int64_t i, std::uint8_t code);
std::uint8_t load_code(const QuantPlan& plan, const Array& data, std::int64_t i);

// Coordinates (batch, row, col) of logical flat index i, for the plan's (batch, rows, cols).
struct Coordinates {
  std::int64_t batch;
  std::int64_t row;
  std::int64_t col;
};
Coordinates coordinates(const ScaleGrid& grid, std::int64_t i);

// Index of the amax tile holding element (b, r, c): the scale block itself except for
// NVFP4's 16 x 16 two_d tiles.
std::int64_t amax_tile_index(const QuantPlan& plan, const Coordinates& at);
std::int64_t amax_tile_count(const QuantPlan& plan);

// amax (NaN-propagating) of every amax tile.
std::vector<float> tile_amax(const QuantPlan& plan, const std::vector<float>& x);

}  // namespace breccia::kernels::reference::detail
