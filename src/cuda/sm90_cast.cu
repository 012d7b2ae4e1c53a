// cast() on the GPU. Every block recipe is one fused pass (tile statistics, scale, encode,
// pack) in one of two kernels, each compiled per rule (rules/; the recipe's rule object is a
// template parameter, so a kernel instance holds one rule's code and no branch on the recipe):
// - tile_kernel, the fast path for rows of 16-byte vectors (the last dim a multiple of 8): a
//   block of 256 threads covers 16 * kRows rows x 128 columns, each thread 8 consecutive
//   columns of kRows consecutive rows, held in registers from one read of x. From them it
//   writes 1 x B row tiles (statistics combined by shuffles across the B / 8 lanes of a
//   tile; one lane per tile row computes the scale), R x 1 column tiles (across the R / kRows
//   row groups of a tile through shared memory; a band holds 16 * kRows / R tile rows), both
//   at once (TransformerEngine's rowwise + columnwise quantization), or R x B 2-D tiles.
//   Statistics are maxima over the bits of |x|, taken on 16-bit inputs two at a time.
//   Scales go to the compact scale tensor and, where asked, to a GEMM-ready swizzled copy.
// - warp_tiles_kernel, for every other geometry (an odd last dim, unusual group sizes,
//   per-channel INT4, fp64 input): one warp per tile.
// Per-tensor recipes reduce the amax with CUB first and then run an element-wise pass; with
// a DelayedScalingState the cast uses the state's scale, so the amax is taken in the same pass.
// NVFP4 reduces its tensor amax with CUB before the block pass.
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_reduce.cuh>
#include <cuda/functional>

#include <algorithm>
#include <bit>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "breccia/scale_swizzle.hpp"
#include "cuda/runtime.hpp"
#include "cuda/scale_rules.cuh"

namespace breccia::kernels::cuda {
namespace {

using cuda_detail::TileScale;
using cuda_detail::TileStats;
using cuda_detail::Wide;
using cuda_detail::with_wide;

constexpr int kThreads = 256;
constexpr int kChunks = 16;                  // 8-element chunks across a tile_kernel block
constexpr int kGroups = kThreads / kChunks;  // row groups of a tile_kernel block
constexpr int kBlockCols = kChunks * 8;      // 128 columns
constexpr int kMaxTileRows = 4;              // rows of column tiles in a band (64 rows of 16)

// Where a cast's scales go: the compact scale tensor (batch x rows x cols entries of `bytes`
// each, one per block_rows x block_cols elements), its zero points, and optionally the
// GEMM-ready copy: each matrix padded to 128 x 4 tiles and swizzled (scale_swizzle.hpp), of
// the transposed matrix when `transposed`.
struct ScaleSink {
  void* compact = nullptr;
  int bytes = 4;
  std::int64_t rows = 0, cols = 0;
  std::int64_t block_rows = 1, block_cols = 1;
  std::uint8_t* zero_point = nullptr;
  std::uint8_t* swizzled = nullptr;
  bool transposed = false;
  std::int64_t swizzled_rows = 0, swizzled_cols = 0;
};

__device__ __forceinline__ void store_scale(const ScaleSink& s, std::int64_t b, std::int64_t r,
                                            std::int64_t c, const TileScale& t) {
  const std::int64_t index = (b * s.rows + r) * s.cols + c;
  switch (s.bytes) {
    case 1:
      static_cast<std::uint8_t*>(s.compact)[index] = static_cast<std::uint8_t>(t.stored);
      break;
    case 2:
      static_cast<std::uint16_t*>(s.compact)[index] = static_cast<std::uint16_t>(t.stored);
      break;
    default:
      static_cast<std::uint32_t*>(s.compact)[index] = t.stored;
  }
  if (s.zero_point != nullptr) s.zero_point[index] = t.zero_point;
  if (s.swizzled != nullptr) {
    const std::int64_t row = s.transposed ? c : r;
    const std::int64_t col = s.transposed ? r : c;
    s.swizzled[b * s.swizzled_rows * s.swizzled_cols +
               swizzled_scale_offset(row, col, s.swizzled_cols)] =
        static_cast<std::uint8_t>(t.stored);
  }
}

// The scale of a tile covering element rows [r0, r1) and columns [c0, c1), into every scale
// entry inside it (one, or several when NVFP4 two_d repeats a 16 x 16 tile's scale). Entries
// are spread over `lanes` threads starting at `lane`.
__device__ __forceinline__ void store_tile_scale(const ScaleSink& s, std::int64_t b,
                                                 std::int64_t r0, std::int64_t r1, std::int64_t c0,
                                                 std::int64_t c1, const TileScale& t, int lane,
                                                 int lanes) {
  const std::int64_t first_row = r0 / s.block_rows, last_row = (r1 - 1) / s.block_rows;
  const std::int64_t first_col = c0 / s.block_cols, last_col = (c1 - 1) / s.block_cols;
  const std::int64_t across = last_col - first_col + 1;
  const std::int64_t entries = (last_row - first_row + 1) * across;
  for (std::int64_t e = lane; e < entries; e += lanes) {
    store_scale(s, b, first_row + e / across, first_col + e % across, t);
  }
}

// The bytes of 8 consecutive elements starting at element 8 * v (16-byte aligned), loaded
// apart from their conversion so that all of a thread's loads are in flight together.
template <Wide kWide>
struct Raw8 {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  static constexpr int kWords = static_cast<int>(sizeof(Storage) * 8 / sizeof(uint4));
  uint4 word[kWords];

  __device__ __forceinline__ void load(const Storage* first) {
    const auto* source = reinterpret_cast<const uint4*>(first);
#pragma unroll
    for (int w = 0; w < kWords; ++w) word[w] = source[w];
  }

  // The values as fp32. Of an input NaN the cast keeps only the sign (the element's code is
  // its sign's NaN code, or the block's), so 16-bit values widen without the payload rules.
  __device__ __forceinline__ void to_float(float (&values)[8]) const {
    if constexpr (sizeof(Storage) == 2) {
      const std::uint32_t words[4] = {word[0].x, word[0].y, word[0].z, word[0].w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const std::uint32_t raw = (words[i / 2] >> (16 * (i % 2))) & 0xFFFFu;
        if constexpr (kWide == Wide::kBF16) {
          values[i] = __uint_as_float(raw << 16);
        } else {  // the conversion would drop a NaN's sign
          const float nan = __uint_as_float(((raw & 0x8000u) << 16) | numerics::kCanonicalNanBits);
          values[i] = (raw & 0x7FFFu) > 0x7C00u
                          ? nan
                          : __half2float(__ushort_as_half(static_cast<unsigned short>(raw)));
        }
      }
    } else if constexpr (sizeof(Storage) == 4) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint4& w = word[i / 4];
        const std::uint32_t bits[4] = {w.x, w.y, w.z, w.w};
        values[i] = __uint_as_float(bits[i % 4]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint4& w = word[i / 2];
        const std::uint64_t bits =
            i % 2 == 0 ? (std::uint64_t{w.y} << 32 | w.x) : (std::uint64_t{w.w} << 32 | w.z);
        values[i] =
            cuda_detail::to_float<kWide>(__longlong_as_double(static_cast<long long>(bits)));
      }
    }
  }

  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int w = 0; w < kWords; ++w) word[w] = uint4{0, 0, 0, 0};
  }

  __device__ __forceinline__ std::uint32_t u32(int i) const {
    const uint4& w = word[i / 4];
    return i % 4 == 0 ? w.x : i % 4 == 1 ? w.y : i % 4 == 2 ? w.z : w.w;
  }
};

__device__ __forceinline__ std::uint32_t max_u16x2(std::uint32_t a, std::uint32_t b) {
  std::uint32_t r;
  asm("max.u16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

// The element-wise max of |x| over rows of 8 (Raw8), as bits in the input's own width: for
// non-negative floats unsigned order is magnitude order with every NaN above inf, so the bit
// max is amax's NaN-propagating max. 16-bit inputs stay two to a word, so a row of 8 costs
// four masks and four packed maxes, instead of a conversion and a max per element.
template <Wide kWide>
struct AbsMax8 {
  static constexpr bool kHalf = sizeof(typename Raw8<kWide>::Storage) == 2;
  static_assert(kHalf || kWide == Wide::kF32, "tile kernels read 16- or 32-bit floats");
  static constexpr int kWords = kHalf ? 4 : 8;
  std::uint32_t word[kWords] = {};

  __device__ __forceinline__ void add(const Raw8<kWide>& row) {
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
      if constexpr (kHalf) {
        word[w] = max_u16x2(word[w], row.u32(w) & 0x7FFF7FFFu);
      } else {
        word[w] = max(word[w], row.u32(w) & 0x7FFFFFFFu);
      }
    }
  }

  // fp32 bits of element j's |x| max (TileStats::amax_bits).
  __device__ __forceinline__ std::uint32_t element_bits(int j) const {
    if constexpr (!kHalf) {
      return word[j];
    } else {
      const std::uint32_t w = word[j / 2];
      return widen(j % 2 == 0 ? w & 0xFFFFu : w >> 16);
    }
  }

  // fp32 bits of the max over all 8 elements.
  __device__ __forceinline__ std::uint32_t bits() const {
    if constexpr (!kHalf) {
      return max(max(max(word[0], word[1]), max(word[2], word[3])),
                 max(max(word[4], word[5]), max(word[6], word[7])));
    } else {
      const std::uint32_t w = max_u16x2(max_u16x2(word[0], word[1]), max_u16x2(word[2], word[3]));
      if constexpr (kWide == Wide::kBF16) return max(w << 16, w & 0xFFFF0000u);
      return widen(max(w & 0xFFFFu, w >> 16));
    }
  }

  // A 16-bit |x| as fp32 bits, order kept (an fp16 NaN becomes the canonical NaN).
  static __device__ __forceinline__ std::uint32_t widen(std::uint32_t half_bits) {
    if constexpr (kWide == Wide::kBF16) return half_bits << 16;
    return half_bits > 0x7C00u ? numerics::kCanonicalNanBits
                               : __float_as_uint(__half2float(
                                     __ushort_as_half(static_cast<unsigned short>(half_bits))));
  }
};

template <Wide kWide>
__device__ __forceinline__ float load1(const void* x, std::int64_t i) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  return cuda_detail::to_float<kWide>(static_cast<const Storage*>(x)[i]);
}

// Stores the codes of elements [8v, 8v + 8): 8 bytes, or 4 bytes of nibble pairs.
template <bool kPacked>
__device__ __forceinline__ void store8(std::uint8_t* data, std::int64_t v, uint2 codes) {
  if constexpr (kPacked) {
    reinterpret_cast<std::uint32_t*>(data)[v] = codes.x;
  } else {
    reinterpret_cast<uint2*>(data)[v] = codes;
  }
}

// The scale that lane `source` of this lane's group of `width` lanes holds: the fields that
// encode8 reads for kFormat (the stored bytes stay with their lane).
template <ElementFormat kFormat>
__device__ __forceinline__ TileScale shuffle_scale(const TileScale& t, int source, int width) {
  constexpr bool kInt4 = is_int4(kFormat);
  TileScale out;
  out.factor = __shfl_sync(0xFFFFFFFFu, t.factor, source, width);
  const std::uint32_t flags = static_cast<std::uint32_t>(t.nan_block) |
                              static_cast<std::uint32_t>(t.fast) << 1 |
                              static_cast<std::uint32_t>(t.zero_point) << 8;
  const std::uint32_t got = __shfl_sync(0xFFFFFFFFu, flags, source, width);
  out.nan_block = (got & 1u) != 0;
  out.fast = (got & 2u) != 0;
  if constexpr (kInt4) {
    out.inverse = __shfl_sync(0xFFFFFFFFu, t.inverse, source, width);
    out.zero_point = static_cast<std::uint8_t>(got >> 8);
  }
  return out;
}

// One output of tile_kernel: codes (null: not written) and where its scales go.
struct TileOutput {
  std::uint8_t* data = nullptr;
  ScaleSink scale;
};

// Where tile_kernel reads and writes: everything but the rule.
struct TileGeometry {
  const void* x = nullptr;
  std::int64_t rows = 0, cols = 0;  // of each batch matrix
  unsigned bands = 0;               // bands of 16 * kRows rows per batch matrix (grid x)
  int tile_lanes = 0;               // row / 2-D tiles: tile width / 8 (a power of two <= 16)
  int tile_shift = 0;               // log2 of the tile width
  bool two_d = false;               // `row` holds 2-D tiles
  int tile_groups = kGroups;        // column / 2-D tiles: row groups per tile (tile rows / kRows)
  TileOutput row;                   // 1 x (8 * tile_lanes) tiles, or the 2-D tiles
  TileOutput column;                // (tile_groups * kRows) x 1 tiles; with two_d, scales only
};

template <class Rule>
struct TileArgs : TileGeometry {
  Rule rule;
  const std::uint32_t* tensor_amax = nullptr;  // rules that read the tensor's amax: its bits
};

// The rule with what it takes from the whole tensor (NVFP4's amax) bound.
template <class Rule>
__device__ __forceinline__ Rule bound_rule(Rule rule, const std::uint32_t* tensor_amax) {
  if constexpr (Rule::kNeedsTensorAmax) {
    rule.bind_tensor_amax(cuda_detail::amax_from_bits(*tensor_amax));
  }
  return rule;
}

// Per-group partial statistics of a block's columns or 2-D tiles, merged through shared
// memory; lo/hi only for unsigned INT4.
// Slot of a block column: columns j of every chunk side by side, so that one store
// instruction of a warp (a fixed j, consecutive chunks) meets no bank twice.
__device__ __forceinline__ int column_slot(int column) {
  return (column % 8) * kChunks + column / 8;
}

template <bool kRange>
struct SharedPartials {
  std::uint32_t amax[kGroups][kBlockCols];
  __device__ void put(int group, int slot, const TileStats& s) { amax[group][slot] = s.amax_bits; }
  __device__ void merge_into(TileStats& s, int group, int slot) const {
    s.amax_bits = max(s.amax_bits, amax[group][slot]);
  }
};
template <>
struct SharedPartials<true> {
  std::uint32_t amax[kGroups][kBlockCols];
  float lo[kGroups][kBlockCols];
  float hi[kGroups][kBlockCols];
  __device__ void put(int group, int slot, const TileStats& s) {
    amax[group][slot] = s.amax_bits, lo[group][slot] = s.lo, hi[group][slot] = s.hi;
  }
  __device__ void merge_into(TileStats& s, int group, int slot) const {
    TileStats other;
    other.amax_bits = amax[group][slot], other.lo = lo[group][slot], other.hi = hi[group][slot];
    s.merge(other);
  }
};

// The statistics of `slot` merged over the block's row groups (call after a barrier).
template <bool kRange>
__device__ __forceinline__ TileStats merge_groups(const SharedPartials<kRange>& partials, int slot,
                                                  int first = 0, int count = kGroups) {
  TileStats s;
  for (int g = first; g < first + count; ++g) partials.merge_into(s, g, slot);
  return s;
}

// Three blocks (768 threads) per SM, enough 16-byte loads in flight to keep HBM busy; two
// where eight rows per thread would spill at 80 registers (fp32 and fp16 input, whose
// widening needs more registers, and unsigned INT4, which carries lo/hi per column).
template <Wide kWide, ElementFormat kFormat, int kRows>
constexpr int kTileMinBlocks =
    kRows <= 4 || (kWide == Wide::kBF16 && kFormat != ElementFormat::kInt4Unsigned) ? 3 : 2;

// A thread's share of a tile_kernel block: kRows consecutive rows x 8 consecutive columns of
// x, read once into registers, and the positions every tile geometry needs. 64-bit positions
// are block-uniform; a thread's place in the block is a 32-bit offset (tile_plan keeps
// kBandRows * cols below 2^31).
template <Wide kWide, class Rule, int kRows>
struct ThreadRows {
  static constexpr bool kPacked = is_packed(Rule::kElement);
  static constexpr int kBandRows = kGroups * kRows;

  const TileArgs<Rule>& a;
  // A rule that reads the tensor's amax is bound once per thread; the others are read from the
  // kernel's parameter space where used, holding no registers across the kernel.
  Rule bound;
  int chunk, group, first_row, band_rows, cols;
  bool col_active;
  std::int64_t b, band_row0, band_row_end, block_col0, block_first, row0, col;
  // The raw words stay live, not their fp32 values: each row is widened where it is used.
  Raw8<kWide> raw[kRows];

  __device__ __forceinline__ explicit ThreadRows(const TileArgs<Rule>& args)
      : a(args),
        bound(bound_rule(args.rule, args.tensor_amax)),
        chunk(static_cast<int>(threadIdx.x) % kChunks),
        group(static_cast<int>(threadIdx.x) / kChunks),
        first_row(group * kRows),
        b(blockIdx.z),
        band_row0(static_cast<std::int64_t>(blockIdx.x) * kBandRows),
        block_col0(static_cast<std::int64_t>(blockIdx.y) * kBlockCols) {
    band_row_end = min(band_row0 + kBandRows, a.rows);
    block_first = (b * a.rows + band_row0) * a.cols + block_col0;
    band_rows = static_cast<int>(band_row_end - band_row0);
    cols = static_cast<int>(a.cols);
    col_active = chunk * 8 < cols - static_cast<int>(block_col0);
    row0 = band_row0 + first_row;
    col = block_col0 + chunk * 8;
    // Every load issued before the first is used: a row or column outside the matrix reads
    // the block's first vector and then counts as zeros, which no statistic notices.
    const auto* x_block = static_cast<const typename Raw8<kWide>::Storage*>(a.x) + block_first;
#pragma unroll
    for (int i = 0; i < kRows; ++i) raw[i].load(x_block + (row_valid(i) ? offset_of(i) : 0));
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (!row_valid(i)) raw[i].clear();
    }
  }

  __device__ __forceinline__ const Rule& rule() const {
    return Rule::kNeedsTensorAmax ? bound : a.rule;
  }
  __device__ __forceinline__ int offset_of(int i) const {
    return (first_row + i) * cols + chunk * 8;
  }
  __device__ __forceinline__ bool row_valid(int i) const {
    return col_active && first_row + i < band_rows;
  }
  // Codes of row i into `data` (the block's part of it).
  __device__ __forceinline__ void store_row(std::uint8_t* data, int i, uint2 codes) const {
    store8<kPacked>(data + (kPacked ? block_first / 2 : block_first), offset_of(i) / 8, codes);
  }
  template <class ScaleOf>
  __device__ __forceinline__ uint2 encode_row(int i, bool fast, ScaleOf scale_of) const {
    float v[8];
    raw[i].to_float(v);
    return cuda_detail::encode8(rule(), v, fast, scale_of);
  }
  __device__ __forceinline__ void add_range(TileStats& s, int i) const {
    float v[8];
    raw[i].to_float(v);
#pragma unroll
    for (int j = 0; j < 8; ++j) s.add_range(v[j]);
  }
  // Statistics of the thread's kRows x 8 elements.
  __device__ __forceinline__ TileStats stats() const {
    TileStats s;
    AbsMax8<kWide> m;
#pragma unroll
    for (int i = 0; i < kRows; ++i) m.add(raw[i]);
    s.amax_bits = m.bits();
    if constexpr (Rule::kReadsRange) {
#pragma unroll
      for (int i = 0; i < kRows; ++i) add_range(s, i);
    }
    return s;
  }
};

// Row tiles, 1 x (8 * tile_lanes): statistics combined across the lanes of a tile.
template <Wide kWide, class Rule, int kRows>
__device__ __forceinline__ void row_tiles(const ThreadRows<kWide, Rule, kRows>& t) {
  constexpr bool kRange = Rule::kReadsRange;
  const TileArgs<Rule>& a = t.a;
  TileStats s[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    AbsMax8<kWide> m;
    m.add(t.raw[i]);
    s[i].amax_bits = m.bits();
    if constexpr (kRange) t.add_range(s[i], i);
    s[i].reduce_lanes<kRange>(a.tile_lanes);
  }
  const int tile_lane = t.chunk & (a.tile_lanes - 1);
  if (a.tile_lanes >= kRows) {
    // Lane i of a tile works out (and stores) the scale of row i, and every lane reads its
    // rows' scales from those lanes: one scale computation per tile, not one per lane.
    TileStats mine = s[0];
#pragma unroll
    for (int i = 1; i < kRows; ++i) mine = tile_lane == i ? s[i] : mine;
    const TileScale scale = cuda_detail::tile_scale(t.rule(), mine);
    if (tile_lane < kRows && t.row_valid(tile_lane)) {
      store_scale(a.row.scale, t.b, t.row0 + tile_lane, t.col >> a.tile_shift, scale);
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const TileScale si = shuffle_scale<Rule::kElement>(scale, i, a.tile_lanes);
      if (!t.row_valid(i)) continue;
      t.store_row(a.row.data, i, t.encode_row(i, si.fast, [&](int) { return si; }));
    }
  } else {
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const TileScale scale = cuda_detail::tile_scale(t.rule(), s[i]);
      if (!t.row_valid(i)) continue;
      if (tile_lane == 0) store_scale(a.row.scale, t.b, t.row0 + i, t.col >> a.tile_shift, scale);
      t.store_row(a.row.data, i, t.encode_row(i, scale.fast, [&](int) { return scale; }));
    }
  }
}

// Column tiles, (tile_groups * kRows) x 1: statistics combined across the row groups of a
// tile through shared memory; a band holds kGroups / tile_groups tile rows.
template <Wide kWide, class Rule, int kRows>
__device__ __forceinline__ void column_tiles(const ThreadRows<kWide, Rule, kRows>& t,
                                             SharedPartials<Rule::kReadsRange>& partials) {
  // The tiles' scales, per tile row of the band, one array per field: a thread reads its
  // eight columns' factors as two 16-byte words, and a warp's reads meet no bank twice.
  __shared__ __align__(16) float column_factor[kMaxTileRows][kBlockCols];
  __shared__ __align__(16) float column_inverse[kMaxTileRows][kBlockCols];
  __shared__ __align__(16) std::uint32_t
      column_flags[kMaxTileRows][kBlockCols];  // nan_block | fast << 1 | zero_point << 8
  const TileArgs<Rule>& a = t.a;
  TileStats s[8];
  {
    AbsMax8<kWide> m;
#pragma unroll
    for (int i = 0; i < kRows; ++i) m.add(t.raw[i]);
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j].amax_bits = m.element_bits(j);
  }
  if constexpr (Rule::kReadsRange) {
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      float v[8];
      t.raw[i].to_float(v);
#pragma unroll
      for (int j = 0; j < 8; ++j) s[j].add_range(v[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) partials.put(t.group, column_slot(t.chunk * 8 + j), s[j]);
  __syncthreads();
  const int tile_height = a.tile_groups * kRows;
  for (int e = static_cast<int>(threadIdx.x); e < kBlockCols * (kGroups / a.tile_groups);
       e += kThreads) {
    const int r = e / kBlockCols, c = e % kBlockCols;
    const TileScale scale = cuda_detail::tile_scale(
        t.rule(), merge_groups(partials, column_slot(c), r * a.tile_groups, a.tile_groups));
    column_factor[r][c] = scale.factor;
    column_inverse[r][c] = scale.inverse;
    column_flags[r][c] = static_cast<std::uint32_t>(scale.nan_block) |
                         static_cast<std::uint32_t>(scale.fast) << 1 |
                         static_cast<std::uint32_t>(scale.zero_point) << 8;
    const std::int64_t tile_row0 = t.band_row0 + r * tile_height;
    if (t.block_col0 + c < a.cols && tile_row0 < a.rows) {
      store_scale(a.column.scale, t.b, tile_row0 / tile_height, t.block_col0 + c, scale);
    }
  }
  __syncthreads();
  TileScale column_scales[8];
  {
    const int tile_row = t.group / a.tile_groups;
    const auto* factors = reinterpret_cast<const float4*>(&column_factor[tile_row][t.chunk * 8]);
    const auto* inverses = reinterpret_cast<const float4*>(&column_inverse[tile_row][t.chunk * 8]);
    const auto* flags = reinterpret_cast<const uint4*>(&column_flags[tile_row][t.chunk * 8]);
    const float4 f[2] = {factors[0], factors[1]}, r[2] = {inverses[0], inverses[1]};
    const uint4 m[2] = {flags[0], flags[1]};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float4& fj = f[j / 4];
      const float4& rj = r[j / 4];
      const uint4& mj = m[j / 4];
      const std::uint32_t bits = (j % 4 == 0 ? mj.x : j % 4 == 1 ? mj.y : j % 4 == 2 ? mj.z : mj.w);
      column_scales[j].factor = j % 4 == 0 ? fj.x : j % 4 == 1 ? fj.y : j % 4 == 2 ? fj.z : fj.w;
      column_scales[j].inverse = j % 4 == 0 ? rj.x : j % 4 == 1 ? rj.y : j % 4 == 2 ? rj.z : rj.w;
      column_scales[j].nan_block = (bits & 1u) != 0;
      column_scales[j].fast = (bits & 2u) != 0;
      column_scales[j].zero_point = static_cast<std::uint8_t>(bits >> 8);
    }
  }
  bool fast = true;
#pragma unroll
  for (int j = 0; j < 8; ++j) fast = fast && column_scales[j].fast;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    if (!t.row_valid(i)) continue;
    t.store_row(a.column.data, i, t.encode_row(i, fast, [&](int j) { return column_scales[j]; }));
  }
}

// 2-D tiles, (tile_groups * kRows) x (8 * tile_lanes): statistics combined across lanes, then
// across row groups through shared memory.
template <Wide kWide, class Rule, int kRows>
__device__ __forceinline__ void two_d_tiles(const ThreadRows<kWide, Rule, kRows>& t,
                                            SharedPartials<Rule::kReadsRange>& partials) {
  __shared__ TileScale shared_scales[kBlockCols];
  const TileArgs<Rule>& a = t.a;
  TileStats s = t.stats();
  s.reduce_lanes<Rule::kReadsRange>(a.tile_lanes);
  // Tile (tile_row, tile) of the band: tile_groups row groups down, tile_lanes chunks across.
  const int tile = t.chunk / a.tile_lanes;
  const int tiles = kChunks / a.tile_lanes;
  const int tile_row = t.group / a.tile_groups;
  const int tile_rows = kGroups / a.tile_groups;
  if ((t.chunk & (a.tile_lanes - 1)) == 0) partials.put(t.group, tile, s);
  __syncthreads();
  if (threadIdx.x < tiles * tile_rows) {
    const int r = static_cast<int>(threadIdx.x) / tiles;
    shared_scales[threadIdx.x] = cuda_detail::tile_scale(
        t.rule(), merge_groups(partials, static_cast<int>(threadIdx.x) % tiles, r * a.tile_groups,
                               a.tile_groups));
  }
  __syncthreads();
  const TileScale& scale = shared_scales[tile_row * tiles + tile];
  // The tile's threads spread its scale entries between them.
  const std::int64_t tile_row0 =
      t.band_row0 + static_cast<std::int64_t>(tile_row) * a.tile_groups * kRows;
  const std::int64_t tile_col0 = t.block_col0 + static_cast<std::int64_t>(tile) * a.tile_lanes * 8;
  if (tile_row0 < a.rows && tile_col0 < a.cols) {
    const std::int64_t tile_row_end = min(tile_row0 + a.tile_groups * kRows, t.band_row_end);
    const std::int64_t tile_col_end = min(tile_col0 + a.tile_lanes * 8, a.cols);
    const int lane = (t.group % a.tile_groups) * a.tile_lanes + (t.chunk & (a.tile_lanes - 1));
    const int lanes = a.tile_groups * a.tile_lanes;
    store_tile_scale(a.row.scale, t.b, tile_row0, tile_row_end, tile_col0, tile_col_end, scale,
                     lane, lanes);
    if (a.column.scale.compact != nullptr) {
      store_tile_scale(a.column.scale, t.b, tile_row0, tile_row_end, tile_col0, tile_col_end, scale,
                       lane, lanes);
    }
  }
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    if (!t.row_valid(i)) continue;
    t.store_row(a.row.data, i, t.encode_row(i, scale.fast, [&](int) { return scale; }));
  }
}

// One read of a band's 16 * kRows x 128 block of x, then each geometry the arguments ask for.
template <Wide kWide, class Rule, int kRows>
__global__ void __launch_bounds__(kThreads, (kTileMinBlocks<kWide, Rule::kElement, kRows>))
    tile_kernel(TileArgs<Rule> a) {
  __shared__ SharedPartials<Rule::kReadsRange> partials;  // column and 2-D tiles (not both)
  const ThreadRows<kWide, Rule, kRows> rows(a);
  if (a.row.data != nullptr && !a.two_d) row_tiles(rows);
  if (a.column.data != nullptr) column_tiles(rows, partials);
  if (a.two_d) two_d_tiles(rows, partials);
}

// The general kernel: one warp per tile of any shape, element by element. A tile is
// `tile_rows` x `tile_cols`; a packed byte whose two elements straddle two odd-width tiles
// is written by the warp of the pair (`tiles_per_unit` = 2).
struct WarpGeometry {
  std::int64_t rows, cols;
  std::int64_t tile_rows, tile_cols;
  std::int64_t tiles_down, tiles_across;
  int tiles_per_unit;
  std::int64_t units;
  bool packed;
};

template <Wide kWide, class Rule>
__global__ void __launch_bounds__(kThreads)
    warp_tiles_kernel(const void* x, std::uint8_t* data, ScaleSink sink, WarpGeometry g,
                      Rule unbound_rule, const std::uint32_t* tensor_amax) {
  const int lane = threadIdx.x % 32;
  const std::int64_t unit = (static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
  if (unit >= g.units) return;  // whole warps leave together
  const Rule rule = bound_rule(unbound_rule, tensor_amax);
  const std::int64_t units_across = (g.tiles_across + g.tiles_per_unit - 1) / g.tiles_per_unit;
  const std::int64_t band = unit / units_across;
  const std::int64_t b = band / g.tiles_down;
  const std::int64_t row0 = (band % g.tiles_down) * g.tile_rows;
  const std::int64_t rows = min(g.tile_rows, g.rows - row0);
  const std::int64_t col0 = (unit % units_across) * g.tiles_per_unit * g.tile_cols;
  const std::int64_t cols = min(g.tile_cols * g.tiles_per_unit, g.cols - col0);
  const std::int64_t base = b * g.rows * g.cols + row0 * g.cols + col0;

  TileStats stats[2];
  for (std::int64_t e = lane; e < rows * cols; e += 32) {
    const cuda_detail::DivMod at = cuda_detail::divmod(e, cols);
    const float value = load1<kWide>(x, base + at.quotient * g.cols + at.remainder);
    stats[at.remainder < g.tile_cols ? 0 : 1].add(value);
  }
  TileScale scales[2];
  for (int t = 0; t < g.tiles_per_unit; ++t) {
    stats[t].reduce_lanes<true>(32);
    scales[t] = cuda_detail::tile_scale(rule, stats[t]);
    const std::int64_t tile_col0 = col0 + t * g.tile_cols;
    if (tile_col0 >= g.cols) continue;
    store_tile_scale(sink, b, row0, row0 + rows, tile_col0, min(tile_col0 + g.tile_cols, g.cols),
                     scales[t], lane, 32);
  }
  const int per_code = g.packed ? 2 : 1;
  for (std::int64_t e = lane * per_code; e < rows * cols; e += 32 * per_code) {
    const cuda_detail::DivMod at = cuda_detail::divmod(e, cols);
    const std::int64_t c = at.remainder;
    const std::int64_t i = base + at.quotient * g.cols + c;
    const std::uint8_t code = rule.encode(load1<kWide>(x, i), scales[c < g.tile_cols ? 0 : 1]);
    if (g.packed) {
      const std::uint8_t odd =
          rule.encode(load1<kWide>(x, i + 1), scales[c + 1 < g.tile_cols ? 0 : 1]);
      data[i / 2] = formats::pack_nibbles(code, odd);
    } else {
      data[i] = code;
    }
  }
}

// Per-tensor FP8: 8 elements per thread, kVectors vectors in flight; the tail (or unaligned
// data) element by element. With `amax_out`, the tensor's amax (bits) is also reduced into it.
constexpr int kVectors = 4;

template <Wide kWide, class Rule>
__global__ void __launch_bounds__(kThreads)
    tensor_kernel(const void* x, std::uint8_t* data, void* scale, std::int64_t count,
                  bool vectorized, Rule rule, const std::uint32_t* tensor_amax,
                  std::uint32_t* amax_out) {
  TileStats tensor;
  if (tensor_amax != nullptr) tensor.amax_bits = *tensor_amax;
  const TileScale t = cuda_detail::tile_scale(rule, tensor);
  if (blockIdx.x == 0 && threadIdx.x == 0) *static_cast<std::uint32_t*>(scale) = t.stored;
  const std::int64_t first =
      (static_cast<std::int64_t>(blockIdx.x) * kVectors * kThreads + threadIdx.x);
  std::uint32_t amax_bits = 0;
  // Every load issued before the first is used (a vector past the end reads the last whole
  // one, or the first when there is none, and is not used).
  const std::int64_t whole_vectors = vectorized ? count / 8 : 0;
  Raw8<kWide> raw[kVectors];
#pragma unroll
  for (int u = 0; u < kVectors; ++u) {
    if (whole_vectors > 0) {
      raw[u].load(static_cast<const typename Raw8<kWide>::Storage*>(x) +
                  min(first + u * kThreads, whole_vectors - 1) * 8);
    }
  }
#pragma unroll
  for (int u = 0; u < kVectors; ++u) {
    const std::int64_t vector = first + u * kThreads;
    if (vector < whole_vectors) {
      float v[8];
      raw[u].to_float(v);
      TileStats s;
      if constexpr (kWide == Wide::kF64) {
#pragma unroll
        for (int j = 0; j < 8; ++j) s.add(v[j]);
      } else {
        AbsMax8<kWide> m;
        m.add(raw[u]);
        s.amax_bits = m.bits();
      }
      amax_bits = max(amax_bits, s.amax_bits);
      store8<false>(data, vector,
                    cuda_detail::encode8(rule, v, s.nan_free(), [&](int) { return t; }));
    } else {
      for (std::int64_t i = vector * 8; i < min(vector * 8 + 8, count); ++i) {
        const float value = load1<kWide>(x, i);
        amax_bits = max(amax_bits, __float_as_uint(value) & 0x7FFFFFFFu);
        data[i] = rule.encode(value, t);
      }
    }
  }
  if (amax_out != nullptr) {
    using BlockMax = cub::BlockReduce<std::uint32_t, kThreads>;
    __shared__ typename BlockMax::TempStorage temp;
    const std::uint32_t block_amax =
        BlockMax(temp).Reduce(amax_bits, ::cuda::maximum<std::uint32_t>{});
    if (threadIdx.x == 0) atomicMax(amax_out, block_amax);
  }
}

template <Wide kWide>
struct AbsBits {
  __device__ std::uint32_t operator()(typename cuda_detail::WideStorage<kWide>::type raw) const {
    return __float_as_uint(cuda_detail::to_float<kWide>(raw)) & 0x7FFFFFFFu;
  }
};

// amax of x as fp32 bits (cuda_detail::amax_from_bits reads them), through CUB.
template <Wide kWide>
void launch_amax_bits(const void* x, std::int64_t count, std::uint32_t* result,
                      const Context& context, Device device) {
  const auto stream = detail::stream_of(context);
  if (count == 0) {
    detail::check(cudaMemsetAsync(result, 0, sizeof(std::uint32_t), stream), "cudaMemsetAsync");
    return;
  }
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  const auto* in = static_cast<const Storage*>(x);
  std::size_t temp_bytes = 0;
  detail::check(cub::DeviceReduce::TransformReduce(nullptr, temp_bytes, in, result, count,
                                                   ::cuda::maximum<std::uint32_t>{},
                                                   AbsBits<kWide>{}, std::uint32_t{0}, stream),
                "cub::DeviceReduce::TransformReduce (size query)");
  const std::shared_ptr<void> temp =
      detail::scratch(context, static_cast<std::int64_t>(temp_bytes), device);
  detail::check(cub::DeviceReduce::TransformReduce(temp.get(), temp_bytes, in, result, count,
                                                   ::cuda::maximum<std::uint32_t>{},
                                                   AbsBits<kWide>{}, std::uint32_t{0}, stream),
                "cub::DeviceReduce::TransformReduce");
}

__global__ void store_bits(std::uint32_t* to, std::uint32_t bits) {
  *to = bits;
}

bool aligned(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

std::int64_t blocks_for(std::int64_t threads) {
  return (threads + kThreads - 1) / kThreads;
}

ScaleSink sink_of(const CastTarget& target) {
  const QuantPlan& plan = *target.plan;
  ScaleSink s;
  s.compact = target.out.scale.data();
  s.bytes = scale_bytes(plan.spec.scale);
  s.rows = plan.grid.scale_rows;
  s.cols = plan.grid.scale_cols;
  s.block_rows = plan.grid.block_rows;
  s.block_cols = plan.grid.block_cols;
  s.zero_point = plan.has_zero_point ? target.out.zero_point.data_as<std::uint8_t>() : nullptr;
  if (target.swizzled.defined()) {
    s.swizzled = target.swizzled.data_as<std::uint8_t>();
    s.transposed = plan.axis == -2;
    s.swizzled_rows = target.swizzled.dim(-2);
    s.swizzled_cols = target.swizzled.dim(-1);
  }
  return s;
}

void cast_per_tensor(const CastTarget& target, const Array& x, DelayedScalingState* state,
                     const Context& context) {
  const QuantPlan& plan = *target.plan;
  const auto stream = detail::stream_of(context);
  const std::int64_t count = x.numel();
  // 4 bytes for the amax: every block of the cast kernel reads it (or, with a state, adds to it).
  const std::shared_ptr<void> amax_memory =
      detail::scratch(context, sizeof(std::uint32_t), x.device());
  auto* amax = static_cast<std::uint32_t*>(amax_memory.get());
  if (state != nullptr) {
    detail::check(cudaMemsetAsync(amax, 0, sizeof(std::uint32_t), stream), "cudaMemsetAsync");
  } else {
    with_wide(x.dtype(), "x", [&]<Wide kWide>() {
      launch_amax_bits<kWide>(x.data(), count, amax, context, x.device());
    });
  }
  const bool vectorized = aligned(x.data(), 16) && aligned(target.out.data.data(), 8);
  const std::int64_t vectors = std::max<std::int64_t>(1, (count + 7) / 8);
  const auto blocks =
      static_cast<unsigned>((vectors + kVectors * kThreads - 1) / (kVectors * kThreads));
  rules::with_rule(plan.spec, [&](auto rule) {
    using Rule = decltype(rule);
    constexpr bool kFp8 =
        Rule::kElement == ElementFormat::kE4M3 || Rule::kElement == ElementFormat::kE5M2;
    if constexpr (std::is_base_of_v<rules::Fp8Encoder<kFp8 ? Rule::kElement : ElementFormat::kE4M3>,
                                    Rule>) {  // the FP8 rules, per tensor
      rules::bind_state(rule, state);
      with_wide(x.dtype(), "x", [&]<Wide kWide>() {
        tensor_kernel<kWide, Rule><<<blocks, kThreads, 0, stream>>>(
            x.data(), target.out.data.data_as<std::uint8_t>(), target.out.scale.data(), count,
            vectorized, rule, state != nullptr ? nullptr : amax, state != nullptr ? amax : nullptr);
      });
    } else {
      fail<UnsupportedError>("cast: ", plan.spec.name, " has no per-tensor kernel");
    }
  });
  detail::check_launch("cast (per-tensor FP8)");
  if (state != nullptr) {
    std::uint32_t amax_bits = 0;
    detail::check(
        cudaMemcpyAsync(&amax_bits, amax, sizeof(amax_bits), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (amax for DelayedScalingState)");
    detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    state->update(amax_bits > cuda_detail::kInfinityBits
                      ? std::bit_cast<float>(numerics::kCanonicalNanBits)
                      : std::bit_cast<float>(amax_bits));
  }
}

// Rows per thread for a tile_kernel band of `band_rows` (16, 32, 64 or 128), or 0.
// (Tiles of 16 or 32 rows are valid column tiles; their bands are widened to 64 rows.)
int rows_per_thread(std::int64_t band_rows) {
  switch (band_rows) {
    case 16:
      return 1;
    case 32:
      return 2;
    case 64:
      return 4;
    case 128:
      return 8;
    default:
      return 0;
  }
}

bool is_row_tile_width(std::int64_t width) {
  return width == 16 || width == 32 || width == 64 || width == 128;
}

template <Wide kWide, class Rule>
void launch_tile_kernel(int rows_per_thread, const TileArgs<Rule>& args, std::int64_t batch,
                        cudaStream_t stream) {
  const dim3 blocks(args.bands, static_cast<unsigned>((args.cols + kBlockCols - 1) / kBlockCols),
                    static_cast<unsigned>(batch));
  // Bands are 64 or 128 rows (tile_plan widens 16- and 32-row tiles to 64-row bands), so
  // only these two instances exist per rule.
  if (rows_per_thread == 4) {
    return tile_kernel<kWide, Rule, 4><<<blocks, kThreads, 0, stream>>>(args);
  }
  return tile_kernel<kWide, Rule, 8><<<blocks, kThreads, 0, stream>>>(args);
}

// The tile_kernel arguments that cast `targets` (one plan, or the rowwise and columnwise plans
// of one recipe) in one pass, or nothing when the geometry needs the general kernel.
std::optional<std::pair<TileGeometry, int>> tile_plan(const Array& x,
                                                      std::span<const CastTarget> targets) {
  const QuantPlan& first = *targets[0].plan;
  const ScaleGrid& grid = first.grid;
  const bool fp64 =
      x.dtype() == DType::kF64;  // rare: the general kernel keeps the instance count down
  // Grid limits (column blocks and batch in 16 bits) and the kernel's 32-bit offsets.
  if (fp64 || grid.cols % 8 != 0 || grid.cols > std::int64_t{65535} * kBlockCols ||
      grid.batch > 65535 || !aligned(x.data(), 16)) {
    return std::nullopt;
  }
  for (const CastTarget& t : targets) {
    if (!aligned(t.out.data.data(), 8)) return std::nullopt;
  }
  TileGeometry a;
  a.x = x.data();
  a.rows = grid.rows;
  a.cols = grid.cols;
  int band_rows = 64;  // rowwise tiles alone: four rows per thread in flight
  const CastTarget* row = nullptr;
  const CastTarget* column = nullptr;
  for (const CastTarget& t : targets) (t.plan->amax_block_rows == 1 ? row : column) = &t;

  if (targets.size() == 2 && first.amax_block_rows > 1 && first.amax_block_cols > 1) {
    // 2-D tiles under both axes (128 x 128, NVFP4 two_d): the same tiles and codes, two scale
    // layouts.
    if (targets[1].plan->amax_block_rows != first.amax_block_rows ||
        targets[1].plan->amax_block_cols != first.amax_block_cols) {
      return std::nullopt;
    }
    row = &targets[0], column = &targets[1];
  }
  if (row != nullptr && row->plan->amax_block_rows == 1) {
    if (!is_row_tile_width(row->plan->amax_block_cols)) return std::nullopt;
    a.tile_lanes = static_cast<int>(row->plan->amax_block_cols / 8);
    a.row = {row->out.data.data_as<std::uint8_t>(), sink_of(*row)};
  }
  if (column != nullptr) {
    const QuantPlan& plan = *column->plan;
    band_rows = plan.amax_block_rows;
    if (plan.amax_block_cols == 1) {
      a.column = {column->out.data.data_as<std::uint8_t>(), sink_of(*column)};
    } else {  // 2-D tiles
      if (!is_row_tile_width(plan.amax_block_cols)) return std::nullopt;
      a.two_d = true;
      a.tile_lanes = static_cast<int>(plan.amax_block_cols / 8);
      const CastTarget& main = row != nullptr ? *row : *column;
      a.row = {main.out.data.data_as<std::uint8_t>(), sink_of(main)};
      if (row != nullptr) a.column.scale = sink_of(*column);
    }
  }
  // Column and 2-D tiles shorter than 64 rows: several tile rows per band, so that each thread
  // has four rows' loads in flight.
  const std::int64_t tile_rows = band_rows;
  if (column != nullptr && rows_per_thread(tile_rows) != 0) {
    band_rows = std::max<std::int64_t>(band_rows, 64);
  }
  const int per_thread = rows_per_thread(band_rows);
  if (per_thread != 4 && per_thread != 8) return std::nullopt;  // the two launched instances
  if (column != nullptr) a.tile_groups = static_cast<int>(tile_rows / per_thread);
  const std::int64_t bands = (a.rows + band_rows - 1) / band_rows;
  if (bands > 0x7FFFFFFF) return std::nullopt;
  a.bands = static_cast<unsigned>(bands);
  a.tile_shift = std::countr_zero(static_cast<unsigned>(a.tile_lanes * 8));
  return std::pair{a, per_thread};
}

void launch_warp_tiles(const CastTarget& target, const Array& x, const std::uint32_t* tensor_amax,
                       cudaStream_t stream) {
  const QuantPlan& plan = *target.plan;
  WarpGeometry g{};
  g.rows = plan.grid.rows;
  g.cols = plan.grid.cols;
  g.tile_rows = plan.amax_block_rows;
  g.tile_cols = plan.amax_block_cols;
  g.tiles_down = (g.rows + g.tile_rows - 1) / g.tile_rows;
  g.tiles_across = (g.cols + g.tile_cols - 1) / g.tile_cols;
  g.packed = plan.spec.packed;
  g.tiles_per_unit = g.packed && g.tile_cols % 2 != 0 ? 2 : 1;
  g.units =
      plan.grid.batch * g.tiles_down * ((g.tiles_across + g.tiles_per_unit - 1) / g.tiles_per_unit);
  rules::with_rule(plan.spec, [&](auto rule) {
    if constexpr (!decltype(rule)::kPerTensorOnly) {  // block recipes only come here
      with_wide(x.dtype(), "x", [&]<Wide kWide>() {
        warp_tiles_kernel<kWide><<<blocks_for(g.units * 32), kThreads, 0, stream>>>(
            x.data(), target.out.data.data_as<std::uint8_t>(), sink_of(target), g, rule,
            tensor_amax);
      });
    }
  });
}

}  // namespace

void cast(const Array& x, std::span<const CastTarget> targets, DelayedScalingState* state,
          const Context& context, std::optional<float> given_tensor_amax) {
  detail::require_cuda(x, "x");
  if (targets.empty() || targets.size() > 2) {
    fail<ValueError>("targets: expected one or two cast outputs, got ", targets.size());
  }
  detail::DeviceGuard guard(x.device());
  const auto stream = detail::stream_of(context);
  for (const CastTarget& t : targets) {  // the padding of GEMM-ready scales is zero
    if (t.swizzled.defined()) {
      detail::check(cudaMemsetAsync(t.swizzled.data(), 0,
                                    static_cast<std::size_t>(t.swizzled.nbytes()), stream),
                    "cudaMemsetAsync (swizzled scale padding)");
    }
  }
  const QuantPlan& first = *targets[0].plan;
  if (first.grid.per_tensor) {
    if (targets.size() != 1) {
      fail<ValueError>(
          "targets: a per-tensor cast has one output (both axes give the same bytes), got ",
          targets.size());
    }
    cast_per_tensor(targets[0], x, state, context);
    return;
  }
  if (targets.size() == 2 && first.amax_block_rows > 1 && first.amax_block_cols > 1 &&
      targets[0].out.data.data() != targets[1].out.data.data()) {
    fail<ValueError>(
        "targets: both axes of a 2-D tiled recipe give the same codes and must share one "
        "data array");
  }
  std::uint32_t* tensor_amax = nullptr;
  if (first.has_global_scale) {
    // NVFP4: the tensor amax goes to (the first) global_scale's memory as bits; a one-thread
    // kernel turns it into amax / 2688 for every target after the block pass has read it.
    tensor_amax = targets[0].out.global_scale.data_as<std::uint32_t>();
    if (given_tensor_amax) {  // non-negative or the canonical NaN (ops::cast): its bits as is
      store_bits<<<1, 1, 0, stream>>>(tensor_amax,
                                      std::bit_cast<std::uint32_t>(*given_tensor_amax));
      detail::check_launch("store_bits (given tensor amax)");
    } else {
      with_wide(x.dtype(), "x", [&]<Wide kWide>() {
        launch_amax_bits<kWide>(x.data(), x.numel(), tensor_amax, context, x.device());
      });
    }
  }
  if (x.numel() == 0) {
    // Nothing to cast; NVFP4's global_scale (of amax 0) is still written below.
  } else if (auto tiled = tile_plan(x, targets)) {
    const auto& [geometry, per_thread] = *tiled;
    rules::with_rule(first.spec, [&](auto rule) {
      using Rule = decltype(rule);
      if constexpr (!Rule::kPerTensorOnly) {  // block recipes only come here
        TileArgs<Rule> args;
        static_cast<TileGeometry&>(args) = geometry;
        args.rule = rule;
        args.tensor_amax = tensor_amax;
        with_wide(x.dtype(), "x", [&]<Wide kWide>() {
          if constexpr (kWide != Wide::kF64) {
            launch_tile_kernel<kWide, Rule>(per_thread, args, first.grid.batch, stream);
          }
        });
      }
    });
    detail::check_launch("cast (block-scaled tiles)");
  } else {
    for (const CastTarget& t : targets) {
      launch_warp_tiles(t, x, tensor_amax, stream);
      detail::check_launch("cast (block-scaled, general tiles)");
    }
  }
  if (tensor_amax != nullptr) {
    std::vector<float*> global_scales;
    for (const CastTarget& t : targets)
      global_scales.push_back(t.out.global_scale.data_as<float>());
    detail::finish_nvfp4_global_scale(tensor_amax, global_scales, stream);
  }
}

}  // namespace breccia::kernels::cuda
