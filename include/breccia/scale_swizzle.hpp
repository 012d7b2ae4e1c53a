// The 128 x 4 scale tile that block-scaled GEMMs read (cuBLASLt, TransformerEngine, CUTLASS's
// SfAtom for MX and NVFP4): the one index formula, host and device, that the CPU conversions
// (scale_layout.hpp) and the CUDA cast kernels both use.
#pragma once

#include <cstdint>

#include "breccia/formats/minifloat.hpp"

namespace breccia {

inline constexpr std::int64_t kScaleTileRows = 128;
inline constexpr std::int64_t kScaleTileCols = 4;

// Byte offset of entry (r, c) of a scale matrix padded to whole tiles, `padded_cols` wide and
// swizzled: tiles follow each other row-tile major, 512 bytes each, and inside a tile entry
// (r, c) sits at (r % 32) * 16 + (r / 32) * 4 + c (rows interleaved in four groups of 32).
BRECCIA_HD constexpr std::int64_t swizzled_scale_offset(std::int64_t r, std::int64_t c,
                                                        std::int64_t padded_cols) {
  const std::int64_t tile =
      (r / kScaleTileRows) * (padded_cols / kScaleTileCols) + c / kScaleTileCols;
  const std::int64_t tile_row = r % kScaleTileRows;
  const std::int64_t inside = (tile_row % 32) * 16 + (tile_row / 32) * 4 + c % kScaleTileCols;
  return tile * kScaleTileRows * kScaleTileCols + inside;
}

}  // namespace breccia
