// GEMM-ready block-scale tensors, as cuBLAS and TransformerEngine hand them to the tensor
// cores (the MX recipes and NVFP4): each matrix of scales is padded to whole 128 x 4 tiles
// (rows to a multiple of 128, scale columns to a multiple of 4) and each tile is stored as one
// 512-byte unit with its rows interleaved (scale_swizzle.hpp has the index). breccia's own
// ScaledTensors always keep the compact form; these utilities convert at the bridge.
#pragma once

#include <cstdint>

#include "breccia/array.hpp"
#include "breccia/scale_swizzle.hpp"

namespace breccia {

// Rows and columns of a scale matrix after padding to whole tiles.
std::int64_t padded_scale_rows(std::int64_t rows);
std::int64_t padded_scale_cols(std::int64_t cols);

// (..., R, C) -> (..., padded R, padded C), the padding zero-filled. Scales are 1-byte codes
// (E8M0, E4M3 or uint8), at least 2-D; leading dims are independent matrices.
Array pad_scales(const Array& scale);
// The inverse: keeps the top-left rows x cols of each padded matrix.
Array unpad_scales(const Array& padded, std::int64_t rows, std::int64_t cols);

// Compact (..., R, C) -> padded and swizzled (..., padded R, padded C), same dtype.
Array swizzle_scales(const Array& scale);
// Padded and swizzled (..., padded R, padded C) -> compact (..., rows, cols). Throws
// ValueError unless the input's last two dims are the padded sizes of rows and cols.
Array unswizzle_scales(const Array& swizzled, std::int64_t rows, std::int64_t cols);

}  // namespace breccia
