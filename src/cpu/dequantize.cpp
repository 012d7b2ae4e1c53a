// dequantize() on the CPU: the reference kernel's fp32 arithmetic, (decode(q) - zero point) *
// (decoded scale * global scale), rounded to the output dtype, with SIMD and threads. Codes
// decode arithmetically, or E2M1 by a table permute (simd-inl.h), every byte, valid code or not,
// as the reference decodes it. Work units are a band of one scale row (block_rows rows) x a run of
// columns. Where blocks are whole vectors, each block's factor is broadcast and the results are
// rounded and stored straight into the output; otherwise per-column factors are worked out once for
// the band.
//
// Compiled once per instruction set by Highway (foreach_target) and dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/dequantize.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "breccia/formats/scale_format.hpp"
#include "cpu/kernels.hpp"
#include "cpu/simd-inl.h"
#include "cpu/threads.hpp"

HWY_BEFORE_NAMESPACE();
namespace breccia::kernels::cpu::HWY_NAMESPACE {

// fp32 values `v` (count, a multiple of the vector length) into out at flat index `first`,
// rounded to out's dtype; `valid` of them are kept.
void StoreWide(const float* v, std::int64_t valid, const Array& out, std::int64_t first) {
  const DF df;
  const DI di;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  std::int64_t c = 0;
  switch (out.dtype()) {
    case DType::kF32:
      std::copy(v, v + valid, out.data_as<float>() + first);
      return;
    case DType::kBF16: {
      const hn::Rebind<std::uint16_t, DF> d16;
      auto* o = out.data_as<std::uint16_t>() + first;
      for (; c + lanes <= valid; c += lanes) {
        hn::StoreU(hn::DemoteTo(d16, Bf16Bits(hn::LoadU(df, v + c))), d16, o + c);
      }
      break;
    }
    case DType::kF16: {
      const hn::Rebind<hwy::float16_t, DF> d16;
      auto* o = reinterpret_cast<hwy::float16_t*>(out.data_as<std::uint16_t>()) + first;
      for (; c + lanes <= valid; c += lanes)
        hn::StoreU(hn::DemoteTo(d16, hn::LoadU(df, v + c)), d16, o + c);
      break;
    }
    default:
      break;
  }
  (void)di;
  for (; c < valid; ++c) write_wide(out, first + c, v[c]);
}

// Unpacks `bytes` pairs of 4-bit codes (low nibble first) into one code per byte.
void UnpackNibbles(const std::uint8_t* in, std::int64_t bytes, std::uint8_t* out) {
  std::int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::Full128<std::uint8_t> d;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  for (; i + lanes <= bytes; i += lanes) {
    const auto v = hn::LoadU(d, in + i);
    const auto low = hn::And(v, hn::Set(d, 0x0F));
    const auto high = hn::ShiftRight<4>(v);
    hn::StoreU(hn::InterleaveLower(d, low, high), d, out + 2 * i);
    hn::StoreU(hn::InterleaveUpper(d, low, high), d, out + 2 * i + lanes);
  }
#endif
  for (; i < bytes; ++i) {
    out[2 * i] = in[i] & 0xF;
    out[2 * i + 1] = in[i] >> 4;
  }
}

// One vector of products rounded to T's format and stored at `out`.
template <class T>
HWY_INLINE void StoreRounded(VF v, T* out) {
  const DF df;
  if constexpr (std::is_same_v<T, float>) {
    hn::StoreU(v, df, out);
  } else if constexpr (std::is_same_v<T, std::uint16_t>) {  // bf16 bits
    const hn::Rebind<std::uint16_t, DF> d16;
    hn::StoreU(hn::DemoteTo(d16, Bf16Bits(v)), d16, out);
  } else {
    const hn::Rebind<hwy::float16_t, DF> d16;
    hn::StoreU(hn::DemoteTo(d16, v), d16, out);
  }
}

// codes[0, cols) -> out[0, cols) block by block, each block's factor (and zero point)
// broadcast: cols and the block width are whole vectors.
template <ElementFormat kFormat, class T>
void DecodeBlocksInto(const std::uint8_t* codes, std::int64_t cols, std::int64_t block_cols,
                      const float* factors, const float* zero_points, T* out) {
  const DF df;
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  for (std::int64_t c0 = 0, block = 0; c0 < cols; c0 += block_cols, ++block) {
    const VF factor = hn::Set(df, factors[block]);
    const VF zero_point = hn::Set(df, zero_points != nullptr ? zero_points[block] : 0.0f);
    const std::int64_t end = std::min(cols, c0 + block_cols);
    for (std::int64_t c = c0; c < end; c += lanes) {
      VF element = DecodeElement<kFormat>(hn::PromoteTo(di, hn::LoadU(d8, codes + c)));
      if (zero_points != nullptr) element = hn::Sub(element, zero_point);
      StoreRounded(hn::Mul(element, factor), out + c);
    }
  }
}

template <ElementFormat kFormat>
void DequantizeAs(const QuantPlan& plan, const Array& data, const Array& scale,
                  const Array& global_scale, const Array& zero_point, const Array& out) {
  const ScaleGrid& grid = plan.grid;
  const float global = plan.has_global_scale ? read_wide(global_scale, 0) : 1.0f;
  constexpr bool kPacked = is_packed(kFormat);
  const DF df;
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  const std::int64_t band_rows = grid.per_tensor ? 1 : grid.block_rows;
  const std::int64_t block_cols = grid.per_tensor ? grid.cols : grid.block_cols;
  // Runs of whole blocks, or parts of one long block, of about kChunkFloats elements a band.
  std::int64_t width = kChunkFloats;
  if (block_cols <= kChunkFloats) {
    width = std::max(block_cols, kChunkFloats / band_rows / block_cols * block_cols);
  }
  width = std::min(width, grid.cols);
  const bool narrow_out =
      out.dtype() == DType::kF32 || out.dtype() == DType::kBF16 || out.dtype() == DType::kF16;
  if (narrow_out && !grid.per_tensor && block_cols % lanes == 0 && block_cols <= kChunkFloats) {
    // Broadcast factors need no per-column arrays in cache: runs of whole blocks up to a chunk.
    width = std::min(grid.cols, kChunkFloats / block_cols * block_cols);
  }
  if (kPacked && width % 2 != 0) ++width;  // a byte's two codes stay in one run
  const std::int64_t runs = hwy::DivCeil(grid.cols, width);
  const std::int64_t bands = hwy::DivCeil(grid.rows, band_rows);
  const std::int64_t pitch = hwy::DivCeil(width, lanes) * lanes;
  const auto* bytes = data.data_as<const std::uint8_t>();
  const auto* zero_points =
      plan.has_zero_point ? zero_point.data_as<const std::uint8_t>() : nullptr;
  // The fast path's stretches of one factor: whole blocks, or whole runs inside one block (a run
  // never straddles two); whole vectors each, into a 32/16-bit output.
  const std::int64_t segment = std::min(block_cols, width);
  const bool one_block_per_segment =
      block_cols <= width ? width % block_cols == 0 : block_cols % width == 0;
  const bool whole_vectors =
      segment % lanes == 0 && (grid.per_tensor || one_block_per_segment) && narrow_out;
  const Array scale_entries = scale.contiguous();
  const ScaleDecoder decode_scale(plan.spec.scale, global, scale_entries);

  parallel_for(grid.batch * bands * runs, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> factor(static_cast<std::size_t>(pitch)),
        offset(static_cast<std::size_t>(pitch)), values(static_cast<std::size_t>(pitch));
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(pitch));
    std::vector<float> block_factor, block_zero_point;
    for (std::int64_t unit = begin; unit < end; ++unit) {
      const std::int64_t col0 = (unit % runs) * width;
      const std::int64_t band = (unit / runs) % bands;
      const std::int64_t b = unit / (runs * bands);
      const std::int64_t row0 = band * band_rows;
      const std::int64_t cols = std::min(width, grid.cols - col0);
      const std::int64_t row_end = std::min(row0 + band_rows, grid.rows);
      if (whole_vectors && cols % lanes == 0) {
        // Blocks of whole vectors: one factor per block, results stored as they are rounded.
        block_factor.clear();
        block_zero_point.clear();
        // A run's whole blocks (or its part of one long block) take consecutive scale entries.
        const std::int64_t first_scale = grid.scale_index(b, row0, col0);
        for (std::int64_t c = 0; c < cols; c += segment) {
          const std::int64_t s = first_scale + c / segment;
          block_factor.push_back(decode_scale(s));
          if (zero_points != nullptr)
            block_zero_point.push_back(static_cast<float>(zero_points[s]));
        }
        const float* zero_point_of = zero_points != nullptr ? block_zero_point.data() : nullptr;
        for (std::int64_t r = row0; r < row_end; ++r) {
          const std::int64_t first = (b * grid.rows + r) * grid.cols + col0;
          const std::uint8_t* row_codes = bytes + first;
          if constexpr (kPacked) {
            UnpackNibbles(bytes + first / 2, cols / 2, codes.data());
            row_codes = codes.data();
          }
          const auto run = [&]<class T>(T* out) {
            DecodeBlocksInto<kFormat>(row_codes, cols, segment, block_factor.data(), zero_point_of,
                                      out + first);
          };
          if (out.dtype() == DType::kF32) run(out.data_as<float>());
          if (out.dtype() == DType::kBF16) run(out.data_as<std::uint16_t>());
          if (out.dtype() == DType::kF16) run(out.data_as<hwy::float16_t>());
        }
        continue;
      }
      // The band's factor (and zero point) per column: one scale entry per block it touches,
      // entries of consecutive blocks one after another.
      for (std::int64_t c = 0, s = grid.scale_index(b, row0, col0); c < cols; ++s) {
        const std::int64_t block_end =
            std::min(cols, ((col0 + c) / block_cols + 1) * block_cols - col0);
        const float f = decode_scale(s);
        std::fill(factor.begin() + c, factor.begin() + block_end, f);
        if (zero_points != nullptr) {
          std::fill(offset.begin() + c, offset.begin() + block_end,
                    static_cast<float>(zero_points[s]));
        }
        c = block_end;
      }
      for (std::int64_t r = row0; r < row_end; ++r) {
        const std::int64_t first = (b * grid.rows + r) * grid.cols + col0;
        const std::uint8_t* row_codes = bytes + first;
        if (kPacked || cols % lanes != 0) {  // codes one per byte, padded to whole vectors
          if constexpr (kPacked) {
            UnpackNibbles(bytes + first / 2, cols / 2, codes.data());
          } else {
            std::copy(bytes + first, bytes + first + cols, codes.begin());
          }
          row_codes = codes.data();
        }
        // fp32 rows of whole vectors are written in place; anything else through `values`.
        float* direct = out.dtype() == DType::kF32 && cols % lanes == 0
                            ? out.data_as<float>() + first
                            : nullptr;
        float* results = direct != nullptr ? direct : values.data();
        for (std::int64_t c = 0; c < hwy::DivCeil(cols, lanes) * lanes; c += lanes) {
          VF element = DecodeElement<kFormat>(hn::PromoteTo(di, hn::LoadU(d8, row_codes + c)));
          if (zero_points != nullptr) element = hn::Sub(element, hn::LoadU(df, offset.data() + c));
          hn::StoreU(hn::Mul(element, hn::LoadU(df, factor.data() + c)), df, results + c);
        }
        if (direct == nullptr) StoreWide(values.data(), cols, out, first);
      }
    }
  });
}

void DequantizeImpl(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& out) {
  with_element_format(plan.spec.element, [&]<ElementFormat kFormat>() {
    DequantizeAs<kFormat>(plan, data, scale, global_scale, zero_point, out);
  });
}

}  // namespace breccia::kernels::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace breccia::kernels::cpu {

HWY_EXPORT(DequantizeImpl);

void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out) {
  HWY_DYNAMIC_DISPATCH(DequantizeImpl)(plan, data, scale, global_scale, zero_point, out);
}

std::string simd_target() {
  // Highway numbers better targets lower: the best one compiled in and supported here.
  const std::int64_t usable = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(usable & -usable);
}

}  // namespace breccia::kernels::cpu
#endif
