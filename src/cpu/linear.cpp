// linear() for a few rows of x on the CPU (decoding: M <= kLinearSmallM): x (M, K) fp32 times
// the (N, K) weight of a ScaledTensor, transposed, without dequantizing the weight into
// memory. Each weight row is read once; its codes are decoded in registers to the very fp32
// values dequantize() gives ((decode(q) - zero point) * (scale * global scale)) and multiplied
// into up to four rows of x at a time, accumulating in fp32 (rows of x beyond four re-decode
// the weight row, still from cache).
//
// A 4-bit weight's byte holds columns 2j (low nibble) and 2j + 1 (high nibble). Rather than
// interleaving decoded nibbles, x's rows are split once into even and odd columns
// ("storage order"), and the per-column factors are laid out the same way.
//
// Compiled once per instruction set by Highway (foreach_target) and dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/linear.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/formats/scale_format.hpp"
#include "cpu/kernels.hpp"
#include "cpu/simd-inl.h"
#include "cpu/threads.hpp"

HWY_BEFORE_NAMESPACE();
namespace breccia::kernels::cpu::HWY_NAMESPACE {

// Weight rows a work unit takes.
constexpr std::int64_t kRowsPerUnit = 8;

// A weight row in storage order: `segments` runs (one, or the low and high nibbles of a
// 4-bit row) of `length` codes, each padded to `pitch` (whole vectors) with zero factors.
struct RowShape {
  std::int64_t segments = 1;
  std::int64_t length = 0;
  std::int64_t pitch = 0;
  std::int64_t column(std::int64_t segment, std::int64_t j) const {
    return segments == 1 ? j : 2 * j + segment;
  }
};

// Up to four dot products of one weight row with rows x[0..kRows) (storage order, `pitch`
// floats per segment), decoding the row's codes on the fly.
template <ElementFormat kFormat, int kRows>
void DotRow(const RowShape& row, const std::uint8_t* codes, const std::uint8_t* tail_codes,
            const float* factor, const float* offset, const float* const* x, float* out) {
  const DF df;
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  constexpr bool kPacked = is_packed(kFormat);
  VF acc0 = hn::Zero(df), acc1 = hn::Zero(df), acc2 = hn::Zero(df), acc3 = hn::Zero(df);
  const std::int64_t whole = row.length / lanes * lanes;
  for (std::int64_t j = 0; j < row.pitch; j += lanes) {
    // The last partial vector reads its codes from a zero-padded copy.
    const std::uint8_t* from = j < whole ? codes + j : tail_codes;
    const VI raw = hn::PromoteTo(di, hn::LoadU(d8, from));
    for (std::int64_t segment = 0; segment < row.segments; ++segment) {
      VI code = raw;
      if constexpr (kPacked) {
        code = segment == 0 ? hn::And(raw, hn::Set(di, 0xF)) : hn::ShiftRight<4>(raw);
      }
      const std::int64_t at = segment * row.pitch + j;
      VF element = DecodeElement<kFormat>(code);
      if (offset != nullptr) element = hn::Sub(element, hn::LoadU(df, offset + at));
      const VF w = hn::Mul(element, hn::LoadU(df, factor + at));
      acc0 = hn::MulAdd(w, hn::LoadU(df, x[0] + at), acc0);
      if constexpr (kRows > 1) acc1 = hn::MulAdd(w, hn::LoadU(df, x[1] + at), acc1);
      if constexpr (kRows > 2) acc2 = hn::MulAdd(w, hn::LoadU(df, x[2] + at), acc2);
      if constexpr (kRows > 3) acc3 = hn::MulAdd(w, hn::LoadU(df, x[3] + at), acc3);
    }
  }
  out[0] = hn::GetLane(hn::SumOfLanes(df, acc0));
  if constexpr (kRows > 1) out[1] = hn::GetLane(hn::SumOfLanes(df, acc1));
  if constexpr (kRows > 2) out[2] = hn::GetLane(hn::SumOfLanes(df, acc2));
  if constexpr (kRows > 3) out[3] = hn::GetLane(hn::SumOfLanes(df, acc3));
}

template <ElementFormat kFormat>
void LinearAs(const QuantPlan& plan, const Array& data, const Array& scale,
              const Array& global_scale, const Array& zero_point, const Array& x,
              const Array& out) {
  const ScaleGrid& grid = plan.grid;
  const std::int64_t n = grid.rows, k = grid.cols, m = x.shape()[0];
  const float global = plan.has_global_scale ? read_wide(global_scale, 0) : 1.0f;
  constexpr bool kPacked = is_packed(kFormat);
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(DF()));
  RowShape row;
  row.segments = kPacked ? 2 : 1;
  row.length = kPacked ? k / 2 : k;
  row.pitch = hwy::DivCeil(row.length, lanes) * lanes;
  const std::int64_t stored = row.segments * row.pitch;

  // x's rows in storage order, zero-padded.
  std::vector<float> xs(static_cast<std::size_t>(m * stored), 0.0f);
  const float* x_rows = x.data_as<const float>();
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t segment = 0; segment < row.segments; ++segment) {
      for (std::int64_t j = 0; j < row.length; ++j) {
        xs[static_cast<std::size_t>(r * stored + segment * row.pitch + j)] =
            x_rows[r * k + row.column(segment, j)];
      }
    }
  }
  const auto* bytes = data.data_as<const std::uint8_t>();
  const auto* zero_points =
      plan.has_zero_point ? zero_point.data_as<const std::uint8_t>() : nullptr;
  const std::int64_t row_bytes = kPacked ? k / 2 : k;
  float* result = out.data_as<float>();

  parallel_for(hwy::DivCeil(n, kRowsPerUnit), [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> factor(static_cast<std::size_t>(stored), 0.0f);
    std::vector<float> offset(zero_points != nullptr ? static_cast<std::size_t>(stored) : 0, 0.0f);
    std::vector<std::uint8_t> tail(static_cast<std::size_t>(lanes), 0);
    std::int64_t factors_of = -1;  // the scale row the factors were laid out for
    for (std::int64_t w_row = begin * kRowsPerUnit; w_row < std::min(n, end * kRowsPerUnit);
         ++w_row) {
      const std::int64_t scale_row = grid.per_tensor ? 0 : w_row / grid.block_rows;
      if (scale_row != factors_of) {  // one scale entry per block the row touches
        factors_of = scale_row;
        const std::int64_t block_cols = grid.per_tensor ? k : grid.block_cols;
        for (std::int64_t segment = 0; segment < row.segments; ++segment) {
          for (std::int64_t j = 0; j < row.length;) {
            const std::int64_t column = row.column(segment, j);
            const std::int64_t block_end = (column / block_cols + 1) * block_cols;
            // The first j past the block (for 4-bit rows, the first 2j + segment past it).
            const std::int64_t run_end = std::min(
                row.length,
                row.segments == 1 ? block_end : hwy::DivCeil(block_end - segment, std::int64_t{2}));
            const std::int64_t s = grid.scale_index(0, w_row, column);
            const float f = decode_scale_bits(plan.spec.scale, load_scale_bits(scale, s)) * global;
            const std::int64_t at = segment * row.pitch;
            std::fill(factor.begin() + at + j, factor.begin() + at + run_end, f);
            if (zero_points != nullptr) {
              std::fill(offset.begin() + at + j, offset.begin() + at + run_end,
                        static_cast<float>(zero_points[s]));
            }
            j = run_end;
          }
        }
      }
      const std::uint8_t* codes = bytes + w_row * row_bytes;
      const std::int64_t whole = row.length / lanes * lanes;
      std::fill(tail.begin(), tail.end(), std::uint8_t{0});
      std::copy(codes + whole, codes + row.length, tail.begin());
      const float* off = zero_points != nullptr ? offset.data() : nullptr;
      float dots[4];
      for (std::int64_t r = 0; r < m; r += 4) {
        const float* rows[4] = {};
        for (std::int64_t i = 0; i < std::min<std::int64_t>(4, m - r); ++i) {
          rows[i] = xs.data() + (r + i) * stored;
        }
        switch (std::min<std::int64_t>(4, m - r)) {
          case 1:
            DotRow<kFormat, 1>(row, codes, tail.data(), factor.data(), off, rows, dots);
            break;
          case 2:
            DotRow<kFormat, 2>(row, codes, tail.data(), factor.data(), off, rows, dots);
            break;
          case 3:
            DotRow<kFormat, 3>(row, codes, tail.data(), factor.data(), off, rows, dots);
            break;
          default:
            DotRow<kFormat, 4>(row, codes, tail.data(), factor.data(), off, rows, dots);
            break;
        }
        for (std::int64_t i = 0; i < std::min<std::int64_t>(4, m - r); ++i) {
          result[(r + i) * n + w_row] = dots[i];
        }
      }
    }
  });
}

void LinearSmallMImpl(const QuantPlan& plan, const Array& data, const Array& scale,
                      const Array& global_scale, const Array& zero_point, const Array& x,
                      const Array& out) {
  with_element_format(plan.spec.element, [&]<ElementFormat kFormat>() {
    LinearAs<kFormat>(plan, data, scale, global_scale, zero_point, x, out);
  });
}

}  // namespace breccia::kernels::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace breccia::kernels::cpu {

HWY_EXPORT(LinearSmallMImpl);

void linear_small_m(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& x,
                    const Array& out) {
  const ScaleGrid& grid = plan.grid;
  if (grid.batch != 1 || x.ndim() != 2 || x.shape()[1] != grid.cols || x.dtype() != DType::kF32 ||
      out.dtype() != DType::kF32 || out.shape() != Shape{x.shape()[0], grid.rows} ||
      (is_packed(plan.spec.element) && grid.cols % 2 != 0)) {
    fail<ValueError>("linear_small_m: expected x (M, ", grid.cols, ") and out (M, ", grid.rows,
                     ") of float32 for a 2-D weight (an even K for 4-bit formats), got x ",
                     shape_str(x.shape()), " and out ", shape_str(out.shape()));
  }
  HWY_DYNAMIC_DISPATCH(LinearSmallMImpl)(plan, data, scale, global_scale, zero_point, x, out);
}

}  // namespace breccia::kernels::cpu
#endif
