// cast() on the CPU: the reference kernels' results, byte for byte, at memory speed. The work is
// cut into chunks of a band of tile rows x a run of whole tiles (about 128 KB of fp32), spread
// over threads (cpu/threads.hpp). Each chunk is converted to fp32 once into a padded scratch,
// then: tile statistics (SIMD |x| maxima, and for unsigned INT4 the range), each tile's scale
// from the recipe's rule (rules/, the reference kernels' own code, once per tile), and every
// element's code from the SIMD form of the rule's encoder (cpu/simd-inl.h). Per-tensor recipes
// and NVFP4 take the tensor's amax in a first pass.
//
// Compiled once per instruction set by Highway (foreach_target) and dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/cast.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/rules/rules.hpp"
#include "cpu/kernels.hpp"
#include "cpu/simd-inl.h"
#include "cpu/threads.hpp"

HWY_BEFORE_NAMESPACE();
namespace breccia::kernels::cpu::HWY_NAMESPACE {

// A vector of fp32 values from `p`: fp32, or bf16/fp16 promoted exactly.
template <class T>
HWY_INLINE VF LoadAsF32(const T* p) {
  const DF df;
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(df, p);
  } else {
    return hn::PromoteTo(df, hn::LoadU(hn::Rebind<T, DF>(), p));
  }
}

// Widens the whole vectors of `width` 16-bit floats (Half: hwy::bfloat16_t or hwy::float16_t)
// at `in` into `out`; returns how many it converted.
template <class Half>
std::int64_t PromoteRun(const std::uint16_t* in, std::int64_t width, float* out) {
  const DF df;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  const auto* halves = reinterpret_cast<const Half*>(in);
  std::int64_t c = 0;
  for (; c + lanes <= width; c += lanes) {
    hn::StoreU(LoadAsF32(halves + c), df, out + c);
  }
  return c;
}

// Rows [row, row + count) of the contiguous (batch * rows, cols) wide-float matrix x, columns
// [col0, col0 + width), into fp32 `dst` (row pitch `pitch`, zero past `width`).
void LoadRows(const Array& x, std::int64_t cols, std::int64_t row, std::int64_t count,
              std::int64_t col0, std::int64_t width, float* dst, std::int64_t pitch) {
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t first = (row + i) * cols + col0;
    float* out = dst + i * pitch;
    std::int64_t c = 0;
    switch (x.dtype()) {
      case DType::kF32:
        std::memcpy(out, x.data_as<const float>() + first, static_cast<std::size_t>(width) * 4);
        c = width;
        break;
      case DType::kBF16:
        c = PromoteRun<hwy::bfloat16_t>(x.data_as<const std::uint16_t>() + first, width, out);
        break;
      case DType::kF16:
        c = PromoteRun<hwy::float16_t>(x.data_as<const std::uint16_t>() + first, width, out);
        break;
      default:  // fp64: element by element below
        break;
    }
    for (; c < width; ++c) out[c] = read_wide(x, first + c);
    std::fill(out + width, out + pitch, 0.0f);
  }
}

// amax from the largest |x| bits of a run (every NaN above inf): the canonical NaN, or the value.
// Inlined: called once a tile, a call (with its vzeroupper) cost a few percent of an MX cast.
HWY_INLINE float AmaxOfBits(std::int32_t bits) {
  return bits > 0x7F800000 ? formats::detail::bits_float(numerics::kCanonicalNanBits)
                           : formats::detail::bits_float(static_cast<std::uint32_t>(bits));
}

// Calls read(p) with x's elements at flat index `first` in place (fp32, or bf16 promoted at each
// read) and returns true when x is one of those and `count` fills whole vectors; else false,
// and the caller converts the run into fp32 first.
template <class Read>
bool ReadInPlace(const Array& x, std::int64_t first, std::int64_t count, Read&& read) {
  if (count % static_cast<std::int64_t>(hn::Lanes(DF())) != 0) return false;
  if (x.dtype() == DType::kF32) {
    read(x.data_as<const float>() + first);
    return true;
  }
  if (x.dtype() == DType::kBF16) {
    read(reinterpret_cast<const hwy::bfloat16_t*>(x.data_as<const std::uint16_t>()) + first);
    return true;
  }
  return false;
}

// amax (fp32 bits) of count contiguous values (a multiple of the vector length).
template <class T>
HWY_INLINE std::int32_t MaxAbsBits(const T* x, std::int64_t count) {
  const DF df;
  const DI di;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  VI m = hn::Zero(di);
  for (std::int64_t i = 0; i < count; i += lanes) m = hn::Max(m, AbsBits(LoadAsF32(x + i)));
  return hn::GetLane(hn::MaxOfLanes(di, m));
}

// One tile's TileStats (amax, and the range [min(x, 0), max(x, 0)] with NaN ignored, as
// TileStats::add keeps them) from `count` values, a whole number of vectors.
template <class T>
HWY_INLINE rules::TileStats RangeOfTile(const T* x, std::int64_t count) {
  const DF df;
  const DI di;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  VI m = hn::Zero(di);
  VF lo = hn::Zero(df), hi = hn::Zero(df);
  for (std::int64_t i = 0; i < count; i += lanes) {
    const VF v = LoadAsF32(x + i);
    m = hn::Max(m, AbsBits(v));
    lo = hn::IfThenElse(hn::Lt(v, lo), v, lo);
    hi = hn::IfThenElse(hn::Gt(v, hi), v, hi);
  }
  rules::TileStats stats;
  stats.amax = AmaxOfBits(hn::GetLane(hn::MaxOfLanes(di, m)));
  stats.lo = hn::GetLane(hn::MinOfLanes(df, lo));
  stats.hi = hn::GetLane(hn::MaxOfLanes(df, hi));
  return stats;
}

// The tensor's amax (NaN winning), in parallel over runs of at most kChunkFloats elements.
float TensorAmax(const Array& x, const ScaleGrid& grid) {
  const std::int64_t rows = grid.batch * grid.rows;
  const std::int64_t width = std::min(grid.cols, kChunkFloats);
  const std::int64_t runs_per_row = hwy::DivCeil(grid.cols, width);
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(DF()));
  const std::int64_t pitch = hwy::DivCeil(width, lanes) * lanes;
  const std::int64_t units = rows * runs_per_row;
  std::vector<std::int32_t> partial(static_cast<std::size_t>(units), 0);
  parallel_for(units, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> scratch(static_cast<std::size_t>(pitch));
    for (std::int64_t u = begin; u < end; ++u) {
      const std::int64_t col0 = (u % runs_per_row) * width;
      const std::int64_t count = std::min(width, grid.cols - col0);
      const std::int64_t first = (u / runs_per_row) * grid.cols + col0;
      auto& amax_bits = partial[static_cast<std::size_t>(u)];
      if (ReadInPlace(x, first, count,
                      [&](const auto* run) { amax_bits = MaxAbsBits(run, count); })) {
        continue;
      }
      LoadRows(x, grid.cols, u / runs_per_row, 1, col0, count, scratch.data(), pitch);
      amax_bits = MaxAbsBits(scratch.data(), pitch);
    }
  });
  std::int32_t bits = 0;
  for (const std::int32_t p : partial) bits = std::max(bits, p);
  return AmaxOfBits(bits);
}

// `bytes` bytes of packed pairs from 2 * bytes 4-bit codes (one per byte), the even code low.
void PackNibbles(const std::uint8_t* codes, std::int64_t bytes, std::uint8_t* out) {
  std::int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  // Each 16-bit lane holds an (even, odd) pair of codes: even | odd << 4 fits its low byte.
  const hn::Full128<std::int16_t> d16;  // signed: the packing saturate-narrow takes int16
  const hn::Rebind<std::uint8_t, decltype(d16)> d8;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d16));
  for (; i + lanes <= bytes; i += lanes) {
    const auto pairs = hn::LoadU(d16, reinterpret_cast<const std::int16_t*>(codes + 2 * i));
    const auto packed = hn::Or(hn::And(pairs, hn::Set(d16, 0x000F)),
                               hn::And(hn::ShiftRight<4>(pairs), hn::Set(d16, 0x00F0)));
    hn::StoreU(hn::DemoteTo(d8, packed), d8, out + i);
  }
#endif
  for (; i < bytes; ++i) {
    out[i] = static_cast<std::uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
  }
}

// Each tile's scale from its statistics: the rule's scale(), tile by tile, inlined (called,
// its returned TileScale went through the stack and a misaligned reload that stalled on store
// forwarding: a fifth of an MXFP8 cast).
template <class Rule>
HWY_FLATTEN void TileScales(const Rule& rule, const rules::TileStats* stats, std::int64_t count,
                            rules::TileScale* out) {
  for (std::int64_t t = 0; t < count; ++t) out[t] = rule.scale(stats[t]);
}

// NVFP4's rule a vector of tiles at a time (its scalar form costs an E4M3 encode and two
// divisions per 16 elements): the same operations, lane by lane, as Nvfp4Rule::scale.
void TileScales(const rules::Nvfp4Rule& rule, const rules::TileStats* stats, std::int64_t count,
                rules::TileScale* out) {
  const DF df;
  const DI di;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  const float to_block = rule.tensor_encode * (1.0f / kElementMax<ElementFormat::kE2M1>);
  const float decode_tensor = 1.0f / rule.tensor_encode;
  static_assert(sizeof(rules::TileStats) == 3 * sizeof(float));  // amax, lo, hi: no padding
  const VI stride = hn::Mul(hn::Iota(di, 0), hn::Set(di, 3));
  HWY_ALIGN std::int32_t codes[hn::MaxLanes(df)];
  HWY_ALIGN float factors[hn::MaxLanes(df)];
  std::int64_t t = 0;
  for (; t + lanes <= count; t += lanes) {
    // The tiles' amax fields, gathered: filling an array lane by lane and loading it whole
    // stalled on store forwarding (a third of the NVFP4 scale rule's time).
    const VF amax = hn::GatherIndex(df, &stats[t].amax, stride);
    const VI code = EncodeMinifloat<ElementFormat::kE4M3>(hn::Mul(amax, hn::Set(df, to_block)));
    const VF factor =
        hn::Div(hn::Set(df, 1.0f),
                hn::Mul(DecodeMinifloat<ElementFormat::kE4M3>(code), hn::Set(df, decode_tensor)));
    const auto finite =
        hn::Lt(hn::Abs(factor), hn::Set(df, std::numeric_limits<float>::infinity()));
    hn::Store(code, di, codes);
    hn::Store(hn::IfThenElse(finite, factor, hn::Set(df, numerics::kFloatMax)), df, factors);
    for (std::int64_t i = 0; i < lanes; ++i) {
      rules::TileScale& scale = out[t + i];
      scale = rules::TileScale{};
      scale.stored = static_cast<std::uint32_t>(codes[i]);
      scale.nan_block = formats::E4M3::is_nan(scale.stored);
      scale.factor = scale.nan_block ? 1.0f : factors[i];
    }
  }
  for (; t < count; ++t) out[t] = rule.scale(stats[t]);
}

// One cast: a plan's geometry, its outputs and its rule.
template <class Rule>
class TileCast {
 public:
  // `fixed`: the one scale of a per-tensor cast, for every element.
  TileCast(const QuantPlan& plan, const Array& x, const CastOutputs& out, const Rule& rule,
           std::optional<rules::TileScale> fixed = std::nullopt)
      : plan_(plan), grid_(plan.grid), x_(x), out_(out), rule_(rule), fixed_(fixed) {
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(DF()));
    if (fixed_) {  // "tiles" are runs of whole vectors sharing the one scale
      tile_rows_ = 1;
      tile_cols_ = std::min(hwy::DivCeil(grid_.cols, lanes) * lanes, kChunkFloats);
    } else {
      tile_rows_ = plan.amax_block_rows;
      tile_cols_ = plan.amax_block_cols;
    }
    // A chunk: one band of tile rows, as many whole tiles across as fit kChunkFloats.
    const std::int64_t tiles_across = hwy::DivCeil(grid_.cols, tile_cols_);
    const std::int64_t fit = std::max<std::int64_t>(1, kChunkFloats / (tile_rows_ * tile_cols_));
    tiles_per_chunk_ = std::min(tiles_across, fit);
    chunk_cols_ = tiles_per_chunk_ * tile_cols_;
    pitch_ = hwy::DivCeil(chunk_cols_, lanes) * lanes;
    chunks_across_ = hwy::DivCeil(tiles_across, tiles_per_chunk_);
    bands_ = hwy::DivCeil(grid_.rows, tile_rows_);
    // Whole vectors per tile: statistics and codes a tile at a time, its scale broadcast.
    uniform_tiles_ = tile_cols_ % lanes == 0;
  }

  void Run() {
    const std::int64_t units = grid_.batch * bands_ * chunks_across_;
    parallel_for(units, [&](std::int64_t begin, std::int64_t end) {
      Scratch scratch(tile_rows_ * pitch_, pitch_);
      for (std::int64_t u = begin; u < end; ++u) Chunk(u, scratch);
    });
  }

 private:
  struct Scratch {
    Scratch(std::int64_t floats, std::int64_t pitch)
        : values(static_cast<std::size_t>(floats)),
          codes(static_cast<std::size_t>(pitch)),
          column_amax(static_cast<std::size_t>(pitch)),
          column_lo(static_cast<std::size_t>(pitch)),
          column_hi(static_cast<std::size_t>(pitch)),
          column_factor(static_cast<std::size_t>(pitch)),
          column_zero_point(static_cast<std::size_t>(pitch)) {}
    std::vector<float> values;
    std::vector<std::uint8_t> codes;
    std::vector<std::int32_t> column_amax;
    std::vector<float> column_lo, column_hi, column_factor, column_zero_point;
    std::vector<rules::TileScale> scales;
    std::vector<rules::TileStats> stats;
  };

  void Chunk(std::int64_t unit, Scratch& s) const {
    const std::int64_t chunk = unit % chunks_across_;
    const std::int64_t band = (unit / chunks_across_) % bands_;
    const std::int64_t b = unit / (chunks_across_ * bands_);
    const std::int64_t row0 = band * tile_rows_;
    const std::int64_t rows = std::min(tile_rows_, grid_.rows - row0);
    const std::int64_t col0 = chunk * chunk_cols_;
    const std::int64_t width = std::min(chunk_cols_, grid_.cols - col0);
    const std::int64_t tiles = hwy::DivCeil(width, tile_cols_);
    const DF df;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
    // Columns [0, vectors) are read and encoded a vector at a time; past `width` they are zeros.
    const std::int64_t vectors = hwy::DivCeil(width, lanes) * lanes;
    const std::int64_t first_row = b * grid_.rows + row0;
    const Span span{b, row0, rows, col0, width, tiles, vectors, first_row};
    // fp32 and bf16 rows of whole vectors are read in place (bf16 promoted in registers, at
    // every read); anything else is converted and padded into fp32 first.
    if (ReadInPlace(x_, first_row * grid_.cols + col0, width,
                    [&](const auto* in) { Body(s, span, in, grid_.cols); })) {
      return;
    }
    LoadRows(x_, grid_.cols, first_row, rows, col0, width, s.values.data(), pitch_);
    Body(s, span, s.values.data(), pitch_);
  }

  // Where a chunk lies: batch b, rows [row0, row0 + rows), columns [col0, col0 + width) of
  // `tiles` tiles, read as `vectors` columns (whole vectors); first_row counts batches' rows.
  struct Span {
    std::int64_t b, row0, rows, col0, width, tiles, vectors, first_row;
  };

  // One-row tiles of whole vectors (MX, NVFP4, FP8 1 x 128, INT4 along a row): a vector's
  // worth of tiles at a time, their statistics, scales (NVFP4's rule runs a vector of tiles at
  // once) and codes in turn while their values are in L1. Two passes over a whole chunk (every
  // tile's statistics, then every tile's codes, from L2) left the first waiting on memory and
  // the second on arithmetic.
  template <class T>
  HWY_FLATTEN void FusedTiles(Scratch& s, const Span& span, const T* row) const {
    const auto [b, row0, rows, col0, width, tiles, vectors, first_row] = span;
    const DF df;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
    const bool in_place = !is_packed(Rule::kElement) && width % lanes == 0;
    std::uint8_t* const codes =
        in_place ? out_.data.data_as<std::uint8_t>() + first_row * grid_.cols + col0
                 : s.codes.data();
    s.scales.resize(static_cast<std::size_t>(tiles));
    s.stats.resize(static_cast<std::size_t>(tiles));
    for (std::int64_t group = 0; group < tiles; group += lanes) {
      const std::int64_t group_end = std::min(group + lanes, tiles);
      for (std::int64_t t = group; t < group_end; ++t) {
        const std::int64_t c = t * tile_cols_;
        const std::int64_t count = std::min(tile_cols_, vectors - c);
        rules::TileStats& stats = s.stats[static_cast<std::size_t>(t)];
        if constexpr (Rule::kReadsRange) {
          stats = RangeOfTile(row + c, count);
        } else {
          stats = rules::TileStats{};
          stats.amax = AmaxOfBits(MaxAbsBits(row + c, count));
        }
      }
      TileScales(rule_, s.stats.data() + group, group_end - group, s.scales.data() + group);
      for (std::int64_t t = group; t < group_end; ++t) {
        TileCodes(row, t, vectors, width, s.scales[static_cast<std::size_t>(t)], codes);
      }
    }
    StoreScales(s, b, row0, rows, col0, width);
    if (!in_place) StoreRow(codes, first_row, col0, width);
  }

  // Tile t's codes in one row of whole-vector tiles (columns [0, vectors) readable, the first
  // `width` real): each value encoded under the tile's scale, or, in a NaN tile, the rule's
  // block code whatever the value.
  template <class T>
  HWY_INLINE void TileCodes(const T* row, std::int64_t t, std::int64_t vectors, std::int64_t width,
                            const rules::TileScale& scale, std::uint8_t* codes) const {
    const DF df;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
    const std::int64_t first = t * tile_cols_;
    if (scale.nan_block) {
      std::fill(codes + first, codes + std::min(first + tile_cols_, width),
                rule_.encode(0.0f, scale));
      return;
    }
    const VF factor = hn::Set(df, scale.factor);
    const VF zero_point = hn::Set(df, static_cast<float>(scale.zero_point));
    const std::int64_t end = std::min(first + tile_cols_, vectors);
    for (std::int64_t c = first; c < end; c += lanes) {
      StoreCodes(Encode(LoadAsF32(row + c), factor, zero_point), codes + c);
    }
  }

  // A chunk's statistics, scales and codes from its values (`stride` elements a row).
  template <class T>
  void Body(Scratch& s, const Span& span, const T* values, std::int64_t stride) const {
    const auto [b, row0, rows, col0, width, tiles, vectors, first_row] = span;
    const DF df;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
    if (!fixed_ && rows == 1 && uniform_tiles_) return FusedTiles(s, span, values);

    // Tile statistics, then scales.
    s.scales.resize(static_cast<std::size_t>(tiles));
    s.stats.resize(static_cast<std::size_t>(tiles));
    if (fixed_) {
      std::fill(s.scales.begin(), s.scales.end(), *fixed_);
    } else {
      ColumnStats(s, values, stride, rows, vectors);
      for (std::int64_t t = 0; t < tiles; ++t) {
        rules::TileStats stats;
        std::int32_t bits = 0;
        const std::int64_t end = std::min((t + 1) * tile_cols_, width);
        for (std::int64_t c = t * tile_cols_; c < end; ++c) {
          const auto i = static_cast<std::size_t>(c);
          bits = std::max(bits, s.column_amax[i]);
          if constexpr (Rule::kReadsRange) {
            stats.lo = s.column_lo[i] < stats.lo ? s.column_lo[i] : stats.lo;
            stats.hi = s.column_hi[i] > stats.hi ? s.column_hi[i] : stats.hi;
          }
        }
        stats.amax = AmaxOfBits(bits);
        s.stats[static_cast<std::size_t>(t)] = stats;
      }
      TileScales(rule_, s.stats.data(), tiles, s.scales.data());
    }
    StoreScales(s, b, row0, rows, col0, width);

    // Codes, row by row: one byte each straight into the output when the row is whole vectors,
    // else through the padded buffer (and packed two a byte).
    if (!uniform_tiles_) {
      for (std::int64_t c = 0; c < vectors; ++c) {
        const rules::TileScale& t =
            s.scales[static_cast<std::size_t>(std::min(c, width - 1) / tile_cols_)];
        s.column_factor[static_cast<std::size_t>(c)] = t.factor;
        s.column_zero_point[static_cast<std::size_t>(c)] = static_cast<float>(t.zero_point);
      }
    }
    const bool in_place = !is_packed(Rule::kElement) && width % lanes == 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* row = values + r * stride;
      std::uint8_t* codes =
          in_place ? out_.data.data_as<std::uint8_t>() + (first_row + r) * grid_.cols + col0
                   : s.codes.data();
      if (uniform_tiles_) {
        for (std::int64_t t = 0; t < tiles; ++t) {
          TileCodes(row, t, vectors, width, s.scales[static_cast<std::size_t>(t)], codes);
        }
      } else {
        for (std::int64_t c = 0; c < vectors; c += lanes) {
          StoreCodes(Encode(LoadAsF32(row + c), hn::LoadU(df, s.column_factor.data() + c),
                            hn::LoadU(df, s.column_zero_point.data() + c)),
                     codes + c);
        }
        // A NaN tile's elements all take the rule's block code, whatever their values.
        for (std::int64_t t = 0; t < tiles; ++t) {
          const rules::TileScale& scale = s.scales[static_cast<std::size_t>(t)];
          if (!scale.nan_block) continue;
          const std::int64_t end = std::min((t + 1) * tile_cols_, width);
          std::fill(codes + t * tile_cols_, codes + end, rule_.encode(0.0f, scale));
        }
      }
      if (!in_place) StoreRow(codes, first_row + r, col0, width);
    }
  }

  // Per-column |x| maxima (and range) over the chunk's rows, row by row: each row's run is
  // read once, in order, into accumulators that stay in L1 (a column at a time down the rows
  // read every cache line once per vector across it, from rows a whole row apart).
  template <class T>
  void ColumnStats(Scratch& s, const T* values, std::int64_t stride, std::int64_t rows,
                   std::int64_t vectors) const {
    const DF df;
    const DI di;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
    std::int32_t* amax = s.column_amax.data();
    float* lo = s.column_lo.data();
    float* hi = s.column_hi.data();
    for (std::int64_t c = 0; c < vectors; c += lanes) {
      hn::StoreU(hn::Zero(di), di, amax + c);
      if constexpr (Rule::kReadsRange) {
        hn::StoreU(hn::Zero(df), df, lo + c);
        hn::StoreU(hn::Zero(df), df, hi + c);
      }
    }
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* row = values + r * stride;
      for (std::int64_t c = 0; c < vectors; c += lanes) {
        const VF v = LoadAsF32(row + c);
        hn::StoreU(hn::Max(hn::LoadU(di, amax + c), AbsBits(v)), di, amax + c);
        if constexpr (Rule::kReadsRange) {  // TileStats::add: x < lo ? x : lo, NaN ignored
          const VF l = hn::LoadU(df, lo + c), h = hn::LoadU(df, hi + c);
          hn::StoreU(hn::IfThenElse(hn::Lt(v, l), v, l), df, lo + c);
          hn::StoreU(hn::IfThenElse(hn::Gt(v, h), v, h), df, hi + c);
        }
      }
    }
  }

  HWY_INLINE VI Encode(VF x, VF factor, VF zero_point) const {
    constexpr ElementFormat kFormat = Rule::kElement;
    if constexpr (kFormat == ElementFormat::kInt4Signed) {
      return EncodeInt4Signed(x, factor);
    } else if constexpr (kFormat == ElementFormat::kInt4Unsigned) {
      return EncodeInt4Unsigned(x, factor, zero_point);
    } else {  // every floating-point rule: encode_element(mul(x, factor))
      (void)zero_point;
      return EncodeMinifloat<kFormat>(hn::Mul(x, factor));
    }
  }

  // Every scale entry of the chunk's tiles (several per tile for NVFP4's 16 x 16 two_d tiles).
  void StoreScales(const Scratch& s, std::int64_t b, std::int64_t row0, std::int64_t rows,
                   std::int64_t col0, std::int64_t width) const {
    if (fixed_) return;  // written once by the caller
    // Scale entries run along a row one per block: indices by addition (scale_index divides).
    // Everything the loops read is in locals: stores through byte pointers may alias any
    // memory, which would make the compiler reload it after every store.
    const std::int64_t first_block = col0 / grid_.block_cols;
    const std::int64_t last_block = (col0 + width - 1) / grid_.block_cols;
    const std::int64_t blocks_per_tile = tile_cols_ / grid_.block_cols;
    const std::int64_t block_rows = grid_.block_rows;
    const rules::TileScale* const scales = s.scales.data();
    const auto tiles = static_cast<std::int64_t>(s.scales.size());
    std::uint8_t* const zero_points =
        plan_.has_zero_point ? out_.zero_point.data_as<std::uint8_t>() : nullptr;
    const auto store = [&]<class Bits>(Bits* entries) {
      for (std::int64_t r = row0; r < row0 + rows; r += block_rows) {
        const std::int64_t row_first = grid_.scale_index(b, r, col0) - first_block;
        for (std::int64_t t = 0; t < tiles; ++t) {
          const std::int64_t begin = first_block + t * blocks_per_tile;
          const std::int64_t end = std::min(begin + blocks_per_tile, last_block + 1);
          const auto stored = static_cast<Bits>(scales[t].stored);
          const std::uint8_t zero_point = scales[t].zero_point;
          for (std::int64_t block = begin; block < end; ++block) {
            entries[row_first + block] = stored;
            if (zero_points != nullptr) zero_points[row_first + block] = zero_point;
          }
        }
      }
    };
    // with_scale_entries' choice of width, written out here: a lambda of this SIMD target
    // passed through that (target-less) template would not be inlined (12% of an NVFP4 cast
    // in StoreScales against 8%).
    switch (itemsize(out_.scale.dtype())) {
      case 1:
        store(out_.scale.data_as<std::uint8_t>());
        break;
      case 2:
        store(out_.scale.data_as<std::uint16_t>());
        break;
      default:
        store(out_.scale.data_as<std::uint32_t>());
    }
  }

  void StoreRow(const std::uint8_t* codes, std::int64_t row, std::int64_t col0,
                std::int64_t width) const {
    const std::int64_t first = row * grid_.cols + col0;
    auto* data = out_.data.data_as<std::uint8_t>();
    if constexpr (is_packed(Rule::kElement)) {  // two codes a byte, the even one low
      PackNibbles(codes, width / 2, data + first / 2);
    } else {
      std::memcpy(data + first, codes, static_cast<std::size_t>(width));
    }
  }

  const QuantPlan& plan_;
  const ScaleGrid& grid_;
  const Array& x_;
  const CastOutputs& out_;
  const Rule rule_;
  const std::optional<rules::TileScale> fixed_;
  std::int64_t tile_rows_ = 1, tile_cols_ = 1;
  std::int64_t tiles_per_chunk_ = 1, chunk_cols_ = 1, pitch_ = 1, chunks_across_ = 1, bands_ = 1;
  bool uniform_tiles_ = false;
};

void CastImpl(const QuantPlan& plan, const Array& x, const CastOutputs& out,
              DelayedScalingState* state, std::optional<float> given_tensor_amax) {
  const bool needs_amax = plan.grid.per_tensor || plan.has_global_scale || state != nullptr;
  const float tensor_amax =
      given_tensor_amax ? *given_tensor_amax : (needs_amax ? TensorAmax(x, plan.grid) : 0.0f);
  rules::with_rule(plan.spec, [&](auto rule) {
    using Rule = decltype(rule);
    rules::bind_state(rule, state);
    if constexpr (Rule::kNeedsTensorAmax) rule.bind_tensor_amax(tensor_amax);
    if (plan.grid.per_tensor) {
      // One tile, the whole tensor: its scale from the tensor's amax, broadcast to every chunk.
      rules::TileStats stats;
      stats.amax = tensor_amax;
      const rules::TileScale scale = rule.scale(stats);
      store_scale_bits(out.scale, 0, scale.stored);
      TileCast<Rule>(plan, x, out, rule, scale).Run();
    } else {
      TileCast<Rule>(plan, x, out, rule).Run();
    }
    if constexpr (requires { Rule::global_scale(0.0f); }) {
      out.global_scale.data_as<float>()[0] = Rule::global_scale(tensor_amax);
    }
  });
  if (state != nullptr) state->update(tensor_amax);
}

template <ElementFormat kFormat>
void EncodeRun(const float* values, std::uint8_t* codes, std::int64_t count) {
  const DF df;
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(df));
  std::int64_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    StoreCodes(EncodeMinifloat<kFormat>(hn::LoadU(df, values + i)), codes + i);
  }
  if (i < count) {  // the tail through a padded copy
    std::vector<float> tail(static_cast<std::size_t>(lanes), 0.0f);
    std::vector<std::uint8_t> tail_codes(static_cast<std::size_t>(lanes));
    std::copy(values + i, values + count, tail.begin());
    StoreCodes(EncodeMinifloat<kFormat>(hn::LoadU(df, tail.data())), tail_codes.data());
    std::copy(tail_codes.begin(), tail_codes.begin() + (count - i), codes + i);
  }
}

void EncodeElementsImpl(ElementFormat format, const float* values, std::uint8_t* codes,
                        std::int64_t count) {
  constexpr std::int64_t kRun = 1 << 16;
  parallel_for(hwy::DivCeil(count, kRun), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t run = begin; run < end; ++run) {
      const std::int64_t first = run * kRun;
      const std::int64_t n = std::min(kRun, count - first);
      with_element_format(format, [&]<ElementFormat kFormat>() {
        if constexpr (!is_int4(kFormat)) EncodeRun<kFormat>(values + first, codes + first, n);
      });
    }
  });
}

// The amax of a contiguous array, read as rows of its last dimension.
float AmaxImpl(const Array& x) {
  ScaleGrid grid;
  grid.cols = x.ndim() == 0 ? 1 : x.shape().back();
  grid.rows = grid.cols == 0 ? 0 : x.numel() / grid.cols;
  return TensorAmax(x, grid);
}

}  // namespace breccia::kernels::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace breccia::kernels::cpu {

HWY_EXPORT(CastImpl);
HWY_EXPORT(AmaxImpl);
HWY_EXPORT(EncodeElementsImpl);

void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out, DelayedScalingState* state,
          std::optional<float> tensor_amax) {
  HWY_DYNAMIC_DISPATCH(CastImpl)(plan, x, out, state, tensor_amax);
}

float amax(const Array& x) {
  if (!is_wide_float(x.dtype()) || !x.device().is_cpu()) {
    fail<ValueError>("x: expected a float array on the CPU, got ", dtype_name(x.dtype()), " on ",
                     x.device().str());
  }
  return HWY_DYNAMIC_DISPATCH(AmaxImpl)(x.contiguous());
}

void encode_elements(ElementFormat format, std::span<const float> values,
                     std::span<std::uint8_t> codes) {
  if (is_int4(format)) {
    fail<ValueError>("format: expected a floating-point element format, got ", to_string(format));
  }
  if (codes.size() != values.size()) {
    fail<ValueError>("codes: expected ", values.size(), " entries (one per value), got ",
                     codes.size());
  }
  HWY_DYNAMIC_DISPATCH(EncodeElementsImpl)(format, values.data(), codes.data(),
                                           static_cast<std::int64_t>(values.size()));
}

}  // namespace breccia::kernels::cpu
#endif
