// TransformerEngine's buffers, in the shapes TE 2.x allocates them
// (transformer_engine/pytorch/csrc/quantizer.cpp, get_scale_shape and create_tensor), and the
// conversions between them and breccia's compact forms. TE flattens every leading dimension
// into rows: a (..., M, K) tensor is a (prod(...) * M, K) matrix for its scales and transposes.
#pragma once

#include <cstdint>

#include "breccia/array.hpp"

namespace breccia::interop {

// NVFP4: TransformerEngine keeps the per-tensor factor as the fp32 amax it was computed from
// (`_amax_rowwise` / `_amax_columnwise`); breccia keeps the decode factor
// global_scale = amax / 2688 (numerics.md §3).

// global_scale (fp32, shape ()) from TransformerEngine's amax (fp32, one element), by the
// NVFP4 recipe's own rule.
Array nvfp4_global_scale_from_amax(const Array& amax);

// An fp32 amax (shape (1,)) from which that rule gives back exactly `global_scale`; nearest
// to global_scale * 2688. Throws ValueError for a negative or non-finite global_scale.
Array nvfp4_amax_for_global_scale(const Array& global_scale);

// Where a compact (R, C) scale matrix sits in one of TE's scale buffers.
enum class TeScaleBuffer : std::uint8_t {
  // MXFP8 rowwise (1 x 32 blocks), NVFP4 rowwise and columnwise (transposed data, so rowwise
  // blocks of the transpose): (roundup(R, 128), roundup(C, 4)); swizzled as 128 x 4 tiles.
  kTiles,
  // MXFP8 columnwise (32 x 1 blocks, data not transposed): (roundup(R, 4), roundup(C, 128));
  // swizzled, the same bytes hold the 128 x 4-tile swizzle of the (C, R) transpose, as
  // common/swizzle/swizzle.cu's column-scaling kernel writes it.
  kColumnwiseTiles,
  // Float8BlockwiseQTensor, 128 x 128 rowwise and 128 x 1 columnwise (compact along M):
  // (R, roundup(C, 4)).
  kPad4,
  // Float8BlockwiseQTensor, 1 x 128 rowwise ("GEMM_READY": stored transposed) and 128 x 128
  // columnwise: (C, roundup(R, 4)).
  kTransposedPad4,
};

// Compact (R, C) scales (1-byte codes, or fp32 for the blockwise kinds) -> TE's buffer, the
// padding zero-filled. `swizzle` is for the tile kinds only (1-byte codes).
Array te_scale_buffer(const Array& compact, TeScaleBuffer kind, bool swizzle);

// The inverse: TE's buffer (any shape holding exactly the buffer's bytes) -> compact
// (rows, cols). Throws ValueError unless the buffer's shape is the one TE gives rows x cols.
Array te_compact_scales(const Array& buffer, std::int64_t rows, std::int64_t cols,
                        TeScaleBuffer kind, bool swizzled);

// TE's transposed columnwise data: (..., M, K) seen as a (rows, K) matrix -> (K, rows).
// Elements are 1 byte, or with `packed_fp4` two 4-bit codes per byte, low nibble first (the
// (rows, K/2) bytes become (K, rows/2); rows must be even).
Array te_transpose(const Array& data, bool packed_fp4);

}  // namespace breccia::interop
