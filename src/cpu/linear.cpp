// linear() for a few rows of x on the CPU (decoding: M <= kLinearSmallM): x (M, K) fp32 times
// the (N, K) weight of a ScaledTensor, transposed, without dequantizing the weight into
// memory. Each weight row is read once; its codes are decoded to the very fp32 values
// dequantize() gives ((decode(q) - zero point) * (scale * global scale)) and accumulated in
// fp32: in registers into up to four rows of x, or, for more rows, a pair of weight rows at a
// time into an L1 buffer that is multiplied into four rows of x at a time.
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

// (decode(code) - zero point) * factor: dequantize()'s value of each lane.
template <ElementFormat kFormat, bool kZeroPoint>
HWY_INLINE VF WeightValue(VI code, VF zero_point, VF factor) {
  VF element = DecodeElement<kFormat>(code);
  if constexpr (kZeroPoint) element = hn::Sub(element, zero_point);
  return hn::Mul(element, factor);
}

// A block's codes are decoded two vectors at a time: the vectors at j and j + Lanes, or a
// 4-bit row's low and high nibbles at j (whose values are stored `pitch` apart). The step
// from one pair to the next, and where the second vector's values lie relative to j.
struct Pair {
  std::int64_t step;
  std::int64_t second;
};
template <ElementFormat kFormat>
Pair PairGeometry(std::int64_t pitch) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(DF()));
  return is_packed(kFormat) ? Pair{lanes, pitch} : Pair{2 * lanes, lanes};
}

// dequantize()'s values of the pair of vectors whose codes start at `codes`.
template <ElementFormat kFormat, bool kZeroPoint>
HWY_INLINE void DecodePair(const std::uint8_t* codes, VF zero_point, VF factor, VF& w0, VF& w1) {
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  if constexpr (is_packed(kFormat)) {
    const VI raw = hn::PromoteTo(di, hn::LoadU(d8, codes));
    w0 = WeightValue<kFormat, kZeroPoint>(hn::And(raw, hn::Set(di, 0xF)), zero_point, factor);
    w1 = WeightValue<kFormat, kZeroPoint>(hn::ShiftRight<4>(raw), zero_point, factor);
  } else {
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(di));
    w0 = WeightValue<kFormat, kZeroPoint>(hn::PromoteTo(di, hn::LoadU(d8, codes)), zero_point,
                                          factor);
    w1 = WeightValue<kFormat, kZeroPoint>(hn::PromoteTo(di, hn::LoadU(d8, codes + lanes)),
                                          zero_point, factor);
  }
}

// The per-lane values of a block quantity (factor or zero point) for a vector of codes that
// starts at block `values[0]`'s: one block's, broadcast, or with kPaired (4-bit blocks of half a
// vector, as NVFP4's 16-element blocks are with 16 fp32 lanes) two blocks', half each.
template <bool kPaired>
HWY_INLINE VF BlockLanes(const float* values) {
  const DF df;
  if constexpr (kPaired) {
    return hn::IfThenElse(hn::FirstN(df, hn::Lanes(df) / 2), hn::Set(df, values[0]),
                          hn::Set(df, values[1]));
  } else {
    return hn::Set(df, values[0]);
  }
}

// Up to four dot products of one weight row with rows x[0..kRows) (storage order), for rows
// whose blocks are whole vectors in storage order, or pairs of half vectors (kPaired): one
// factor (and zero point) per block, broadcast. Two accumulators per row of x (even and odd
// vectors, or low and high nibbles) hide the FMA latency.
template <ElementFormat kFormat, bool kZeroPoint, bool kPaired, int kRows>
void DotBlocks(const std::uint8_t* codes, std::int64_t blocks, std::int64_t block_codes,
               std::int64_t pitch, const float* factors, const float* zero_points,
               const float* const* x, float* out) {
  const DF df;
  const auto [step, second] = PairGeometry<kFormat>(pitch);
  constexpr std::int64_t kBlocksPerStep = kPaired ? 2 : 1;
  const float* x0 = x[0];
  const float* x1 = kRows > 1 ? x[1] : x0;
  const float* x2 = kRows > 2 ? x[2] : x0;
  const float* x3 = kRows > 3 ? x[3] : x0;
  VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  VF b0 = hn::Zero(df), b1 = hn::Zero(df), b2 = hn::Zero(df), b3 = hn::Zero(df);
  for (std::int64_t block = 0; block < blocks; block += kBlocksPerStep) {
    const VF factor = BlockLanes<kPaired>(factors + block);
    const VF zero_point = kZeroPoint ? BlockLanes<kPaired>(zero_points + block) : hn::Zero(df);
    const std::int64_t first = block * block_codes;
    for (std::int64_t j = first; j < first + kBlocksPerStep * block_codes; j += step) {
      VF w0, w1;
      DecodePair<kFormat, kZeroPoint>(codes + j, zero_point, factor, w0, w1);
      a0 = hn::MulAdd(w0, hn::LoadU(df, x0 + j), a0);
      b0 = hn::MulAdd(w1, hn::LoadU(df, x0 + j + second), b0);
      if constexpr (kRows > 1) {
        a1 = hn::MulAdd(w0, hn::LoadU(df, x1 + j), a1);
        b1 = hn::MulAdd(w1, hn::LoadU(df, x1 + j + second), b1);
      }
      if constexpr (kRows > 2) {
        a2 = hn::MulAdd(w0, hn::LoadU(df, x2 + j), a2);
        b2 = hn::MulAdd(w1, hn::LoadU(df, x2 + j + second), b2);
      }
      if constexpr (kRows > 3) {
        a3 = hn::MulAdd(w0, hn::LoadU(df, x3 + j), a3);
        b3 = hn::MulAdd(w1, hn::LoadU(df, x3 + j + second), b3);
      }
    }
  }
  out[0] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0)));
  if constexpr (kRows > 1) out[1] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a1, b1)));
  if constexpr (kRows > 2) out[2] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a2, b2)));
  if constexpr (kRows > 3) out[3] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a3, b3)));
}

// The general form, for any layout and K: per-column factors (and zero points) laid out in
// storage order, the last partial vector's codes read from a zero-padded copy.
template <ElementFormat kFormat, int kRows>
void DotColumns(const RowShape& row, const std::uint8_t* codes, const std::uint8_t* tail_codes,
                const float* factor, const float* offset, const float* const* x, float* out) {
  const DF df;
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  constexpr bool kPacked = is_packed(kFormat);
  VF acc0 = hn::Zero(df), acc1 = hn::Zero(df), acc2 = hn::Zero(df), acc3 = hn::Zero(df);
  const std::int64_t whole = row.length / lanes * lanes;
  for (std::int64_t j = 0; j < row.pitch; j += lanes) {
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

// Decodes one weight row into `values` (storage order, dequantize()'s fp32 values): the
// broadcast-factor form of DotBlocks.
template <ElementFormat kFormat, bool kZeroPoint, bool kPaired>
void DecodeBlocks(const std::uint8_t* codes, std::int64_t blocks, std::int64_t block_codes,
                  std::int64_t pitch, const float* factors, const float* zero_points,
                  float* values) {
  const DF df;
  const auto [step, second] = PairGeometry<kFormat>(pitch);
  constexpr std::int64_t kBlocksPerStep = kPaired ? 2 : 1;
  for (std::int64_t block = 0; block < blocks; block += kBlocksPerStep) {
    const VF factor = BlockLanes<kPaired>(factors + block);
    const VF zero_point = kZeroPoint ? BlockLanes<kPaired>(zero_points + block) : hn::Zero(df);
    const std::int64_t first = block * block_codes;
    for (std::int64_t j = first; j < first + kBlocksPerStep * block_codes; j += step) {
      VF w0, w1;
      DecodePair<kFormat, kZeroPoint>(codes + j, zero_point, factor, w0, w1);
      hn::StoreU(w0, df, values + j);
      hn::StoreU(w1, df, values + j + second);
    }
  }
}

// Decodes one weight row into `values` through per-column factors: the general form.
template <ElementFormat kFormat>
void DecodeColumns(const RowShape& row, const std::uint8_t* codes, const std::uint8_t* tail_codes,
                   const float* factor, const float* offset, float* values) {
  const DF df;
  const DI di;
  const hn::Rebind<std::uint8_t, DF> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  const std::int64_t whole = row.length / lanes * lanes;
  for (std::int64_t j = 0; j < row.pitch; j += lanes) {
    const VI raw = hn::PromoteTo(di, hn::LoadU(d8, j < whole ? codes + j : tail_codes));
    for (std::int64_t segment = 0; segment < row.segments; ++segment) {
      VI code = raw;
      if constexpr (is_packed(kFormat)) {
        code = segment == 0 ? hn::And(raw, hn::Set(di, 0xF)) : hn::ShiftRight<4>(raw);
      }
      const std::int64_t at = segment * row.pitch + j;
      VF element = DecodeElement<kFormat>(code);
      if (offset != nullptr) element = hn::Sub(element, hn::LoadU(df, offset + at));
      hn::StoreU(hn::Mul(element, hn::LoadU(df, factor + at)), df, values + at);
    }
  }
}

// Dot products of two decoded weight rows (w0, w1) with up to four rows of x: eight
// independent accumulators, six loads for eight FMAs.
template <int kRows>
void DotDecoded(const float* w0, const float* w1, std::int64_t length, const float* const* x,
                float* out0, float* out1) {
  const DF df;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  const float* x0 = x[0];
  const float* x1 = kRows > 1 ? x[1] : x0;
  const float* x2 = kRows > 2 ? x[2] : x0;
  const float* x3 = kRows > 3 ? x[3] : x0;
  VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  VF b0 = hn::Zero(df), b1 = hn::Zero(df), b2 = hn::Zero(df), b3 = hn::Zero(df);
  for (std::int64_t j = 0; j < length; j += lanes) {
    const VF v0 = hn::LoadU(df, w0 + j);
    const VF v1 = hn::LoadU(df, w1 + j);
    VF xv = hn::LoadU(df, x0 + j);
    a0 = hn::MulAdd(v0, xv, a0);
    b0 = hn::MulAdd(v1, xv, b0);
    if constexpr (kRows > 1) {
      xv = hn::LoadU(df, x1 + j);
      a1 = hn::MulAdd(v0, xv, a1);
      b1 = hn::MulAdd(v1, xv, b1);
    }
    if constexpr (kRows > 2) {
      xv = hn::LoadU(df, x2 + j);
      a2 = hn::MulAdd(v0, xv, a2);
      b2 = hn::MulAdd(v1, xv, b2);
    }
    if constexpr (kRows > 3) {
      xv = hn::LoadU(df, x3 + j);
      a3 = hn::MulAdd(v0, xv, a3);
      b3 = hn::MulAdd(v1, xv, b3);
    }
  }
  out0[0] = hn::GetLane(hn::SumOfLanes(df, a0));
  out1[0] = hn::GetLane(hn::SumOfLanes(df, b0));
  if constexpr (kRows > 1) {
    out0[1] = hn::GetLane(hn::SumOfLanes(df, a1));
    out1[1] = hn::GetLane(hn::SumOfLanes(df, b1));
  }
  if constexpr (kRows > 2) {
    out0[2] = hn::GetLane(hn::SumOfLanes(df, a2));
    out1[2] = hn::GetLane(hn::SumOfLanes(df, b2));
  }
  if constexpr (kRows > 3) {
    out0[3] = hn::GetLane(hn::SumOfLanes(df, a3));
    out1[3] = hn::GetLane(hn::SumOfLanes(df, b3));
  }
}

// Calls f.template operator()<kZeroPoint, kPaired>() for the broadcast-factor loops' forms;
// kPaired only where it can occur (4-bit formats).
template <bool kPacked, class F>
HWY_INLINE void WithBlockForm(bool zero_point, bool paired, F&& f) {
  const bool pairs = kPacked && paired;
  if (zero_point && pairs) {
    f.template operator()<true, kPacked>();
  } else if (zero_point) {
    f.template operator()<true, false>();
  } else if (pairs) {
    f.template operator()<false, kPacked>();
  } else {
    f.template operator()<false, false>();
  }
}

// Calls dot.template operator()<kRows>(rows, dots) for each group of up to four rows of x and
// stores the group's dot products into column `column` of out.
template <class Dot>
void ForRowGroups(const float* xs, std::int64_t m, std::int64_t stored, float* out, std::int64_t n,
                  std::int64_t column, Dot&& dot) {
  float dots[4];
  for (std::int64_t r = 0; r < m; r += 4) {
    const std::int64_t group = std::min<std::int64_t>(4, m - r);
    const float* rows[4] = {};
    for (std::int64_t i = 0; i < group; ++i) rows[i] = xs + (r + i) * stored;
    switch (group) {
      case 1:
        dot.template operator()<1>(rows, dots);
        break;
      case 2:
        dot.template operator()<2>(rows, dots);
        break;
      case 3:
        dot.template operator()<3>(rows, dots);
        break;
      default:
        dot.template operator()<4>(rows, dots);
        break;
    }
    for (std::int64_t i = 0; i < group; ++i) out[(r + i) * n + column] = dots[i];
  }
}

template <ElementFormat kFormat>
void LinearAs(const QuantPlan& plan, const Array& data, const Array& scale,
              const Array& global_scale, const Array& zero_point, const Array& x,
              const Array& out) {
  const ScaleGrid& grid = plan.grid;
  const std::int64_t n = grid.rows, k = grid.cols, m = x.shape()[0];
  const ScaleDecoder decode_scale(plan.spec.scale,
                                  plan.has_global_scale ? read_wide(global_scale, 0) : 1.0f, scale);
  constexpr bool kPacked = is_packed(kFormat);
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(DF()));
  RowShape row;
  row.segments = kPacked ? 2 : 1;
  row.length = kPacked ? k / 2 : k;
  row.pitch = hwy::DivCeil(row.length, lanes) * lanes;
  const std::int64_t stored = row.segments * row.pitch;
  const std::int64_t block_cols = grid.per_tensor ? k : grid.block_cols;
  // Blocks of whole vector pairs in storage order take the broadcast-factor loop, and so do
  // 4-bit blocks of half a vector in even numbers (a vector's lanes take two blocks' factors).
  const std::int64_t block_codes = kPacked ? block_cols / 2 : block_cols;
  const std::int64_t blocks = k / block_cols;
  const bool divides = k % block_cols == 0 && (!kPacked || block_cols % 2 == 0);
  const bool paired = kPacked && divides && 2 * block_codes == lanes && blocks % 2 == 0;
  const bool whole_blocks = paired || (divides && block_codes % (kPacked ? lanes : 2 * lanes) == 0);

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

  // Up to four rows of x: each weight row decoded on the fly, once. More: weight rows decoded
  // in pairs into a buffer in L1, then multiplied into four rows of x at a time.
  const bool decode_once = m > 4;
  parallel_for(hwy::DivCeil(n, kRowsPerUnit), [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> factor(static_cast<std::size_t>(whole_blocks ? blocks : stored), 0.0f);
    std::vector<float> offset(zero_points != nullptr ? factor.size() : 0, 0.0f);
    std::vector<std::uint8_t> tail(static_cast<std::size_t>(lanes), 0);
    std::vector<float> decoded(decode_once ? static_cast<std::size_t>(2 * stored) : 0, 0.0f);
    const float* off = zero_points != nullptr ? offset.data() : nullptr;

    // The factors (and zero points) of row w_row's blocks, and its zero-padded last codes.
    const auto prepare = [&](std::int64_t w_row) {
      if (whole_blocks) {
        // A row's blocks have consecutive scale entries (one block per tensor: entry 0).
        const std::int64_t first_scale = grid.per_tensor ? 0 : grid.scale_index(0, w_row, 0);
        decode_scale.decode_run(first_scale, blocks, factor.data());
        if (zero_points != nullptr) {
          for (std::int64_t block = 0; block < blocks; ++block) {
            offset[static_cast<std::size_t>(block)] =
                static_cast<float>(zero_points[first_scale + block]);
          }
        }
        return;
      }
      // One scale entry per block the row touches (consecutive entries, as above), spread over
      // its columns: block b's columns are j in [b * block_cols, (b + 1) * block_cols), or for
      // a 4-bit row's segment the j whose 2j + segment lies there. No division per block: at
      // NVFP4's 16-element blocks the bookkeeping would cost more than the products.
      const std::int64_t first_scale = grid.per_tensor ? 0 : grid.scale_index(0, w_row, 0);
      const std::int64_t row_blocks = hwy::DivCeil(k, block_cols);  // 1 per tensor (block = k)
      const auto first_j = [&](std::int64_t column, std::int64_t segment) {
        const std::int64_t j = row.segments == 1 ? column : (column - segment + 1) >> 1;
        return std::min(row.length, j);
      };
      for (std::int64_t block = 0; block < row_blocks; ++block) {
        const std::int64_t s = first_scale + block;
        const float f = decode_scale(s);
        const float zero = zero_points != nullptr ? static_cast<float>(zero_points[s]) : 0.0f;
        const std::int64_t begin_column = block * block_cols;
        const std::int64_t end_column = std::min(k, begin_column + block_cols);
        for (std::int64_t segment = 0; segment < row.segments; ++segment) {
          const std::int64_t at = segment * row.pitch;
          const std::int64_t j0 = first_j(begin_column, segment);
          const std::int64_t j1 = first_j(end_column, segment);
          std::fill(factor.begin() + at + j0, factor.begin() + at + j1, f);
          if (zero_points != nullptr) {
            std::fill(offset.begin() + at + j0, offset.begin() + at + j1, zero);
          }
        }
      }
      const std::uint8_t* codes = bytes + w_row * row_bytes;
      const std::int64_t whole = row.length / lanes * lanes;
      std::fill(tail.begin(), tail.end(), std::uint8_t{0});
      std::copy(codes + whole, codes + row.length, tail.begin());
    };

    const std::int64_t first_row = begin * kRowsPerUnit;
    const std::int64_t last_row = std::min(n, end * kRowsPerUnit);
    if (!decode_once) {
      for (std::int64_t w_row = first_row; w_row < last_row; ++w_row) {
        prepare(w_row);
        const std::uint8_t* codes = bytes + w_row * row_bytes;
        ForRowGroups(
            xs.data(), m, stored, result, n, w_row,
            [&]<int kRows>(const float* const* rows, float* dots) {
              if (!whole_blocks) {
                DotColumns<kFormat, kRows>(row, codes, tail.data(), factor.data(), off, rows, dots);
                return;
              }
              WithBlockForm<kPacked>(
                  zero_points != nullptr, paired, [&]<bool kZeroPoint, bool kPaired>() {
                    DotBlocks<kFormat, kZeroPoint, kPaired, kRows>(
                        codes, blocks, block_codes, row.pitch, factor.data(), off, rows, dots);
                  });
            });
      }
      return;
    }
    for (std::int64_t w_row = first_row; w_row < last_row; w_row += 2) {
      const std::int64_t pair = std::min<std::int64_t>(2, last_row - w_row);
      for (std::int64_t i = 0; i < pair; ++i) {
        prepare(w_row + i);
        const std::uint8_t* codes = bytes + (w_row + i) * row_bytes;
        float* values = decoded.data() + i * stored;
        if (!whole_blocks) {
          DecodeColumns<kFormat>(row, codes, tail.data(), factor.data(), off, values);
          continue;
        }
        WithBlockForm<kPacked>(
            zero_points != nullptr, paired, [&]<bool kZeroPoint, bool kPaired>() {
              DecodeBlocks<kFormat, kZeroPoint, kPaired>(codes, blocks, block_codes, row.pitch,
                                                         factor.data(), off, values);
            });
      }
      const float* w0 = decoded.data();
      const float* w1 = pair == 2 ? w0 + stored : w0;
      float dots0[4], dots1[4];
      for (std::int64_t r = 0; r < m; r += 4) {
        const std::int64_t group = std::min<std::int64_t>(4, m - r);
        const float* rows[4] = {};
        for (std::int64_t i = 0; i < group; ++i) rows[i] = xs.data() + (r + i) * stored;
        switch (group) {
          case 1:
            DotDecoded<1>(w0, w1, stored, rows, dots0, dots1);
            break;
          case 2:
            DotDecoded<2>(w0, w1, stored, rows, dots0, dots1);
            break;
          case 3:
            DotDecoded<3>(w0, w1, stored, rows, dots0, dots1);
            break;
          default:
            DotDecoded<4>(w0, w1, stored, rows, dots0, dots1);
            break;
        }
        for (std::int64_t i = 0; i < group; ++i) {
          result[(r + i) * n + w_row] = dots0[i];
          if (pair == 2) result[(r + i) * n + w_row + 1] = dots1[i];
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
