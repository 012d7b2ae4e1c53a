// cast() on the GPU. Three kernel shapes cover every recipe and axis, each one fused pass
// (tile statistics, scale, encode, pack) over whole scaling tiles:
// - RowTiles: 1 x B tiles with B a multiple of 8 and B / 8 <= 32 lanes (every rowwise block
//   recipe at its default size): each thread loads 8 elements with 16-byte loads, a tile's
//   lanes combine their statistics by shuffles, each thread stores its 8 codes at once.
// - ColumnTiles: R x 1 tiles (columnwise blocks): one thread per column (two for packed
//   formats, whose byte pairs two columns), reading down the rows, coalesced across the warp.
// - WarpTiles: anything else (128 x 128 blocks, NVFP4 16 x 16 amax tiles, per-channel INT4,
//   unusual group sizes): one warp per tile, or per pair of tiles when a packed byte would
//   straddle two.
// Per-tensor recipes reduce the amax with CUB first and then run an element-wise pass.
#include <cub/device/device_reduce.cuh>

#include <algorithm>
#include <memory>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/runtime.hpp"
#include "cuda/scale_rules.cuh"

namespace breccia::kernels::cuda {
namespace {

using cuda_detail::RuleParams;
using cuda_detail::TileScale;
using cuda_detail::TileStats;
using cuda_detail::Wide;

constexpr int kThreads = 256;

// Geometry of a block-scaled cast, by value: the plan's grid and amax tiles.
struct Geometry {
  std::int64_t batch, rows, cols;
  std::int64_t tile_rows, tile_cols;    // amax tile
  std::int64_t tiles_down, tiles_across;
  std::int64_t block_rows, block_cols;  // scale block (divides the amax tile)
  std::int64_t scale_rows, scale_cols;
  bool packed;
  int scale_bytes;
};

struct Outputs {
  std::uint8_t* data;
  void* scale;
  std::uint8_t* zero_point;  // unsigned INT4 only
};

__device__ __forceinline__ void store_scale(const Outputs& out, int scale_bytes, std::int64_t index,
                                            const TileScale& t) {
  switch (scale_bytes) {
    case 1:
      static_cast<std::uint8_t*>(out.scale)[index] = static_cast<std::uint8_t>(t.stored);
      break;
    case 2:
      static_cast<std::uint16_t*>(out.scale)[index] = static_cast<std::uint16_t>(t.stored);
      break;
    default:
      static_cast<std::uint32_t*>(out.scale)[index] = t.stored;
  }
  if (out.zero_point != nullptr) out.zero_point[index] = t.zero_point;
}

// Loads 8 consecutive elements starting at element 8 * v (16-byte aligned).
template <Wide kWide>
__device__ __forceinline__ void load8(const void* x, std::int64_t v, float (&values)[8]) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  const auto* base = static_cast<const Storage*>(x) + v * 8;
  if constexpr (sizeof(Storage) == 2) {
    const uint4 raw = *reinterpret_cast<const uint4*>(base);
    const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      values[2 * i] = cuda_detail::to_float<kWide>(static_cast<std::uint16_t>(words[i] & 0xFFFFu));
      values[2 * i + 1] = cuda_detail::to_float<kWide>(static_cast<std::uint16_t>(words[i] >> 16));
    }
  } else if constexpr (sizeof(Storage) == 4) {
    const float4 a = reinterpret_cast<const float4*>(base)[0];
    const float4 b = reinterpret_cast<const float4*>(base)[1];
    values[0] = a.x, values[1] = a.y, values[2] = a.z, values[3] = a.w;
    values[4] = b.x, values[5] = b.y, values[6] = b.z, values[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const double2 pair = reinterpret_cast<const double2*>(base)[i];
      values[2 * i] = cuda_detail::to_float<kWide>(pair.x);
      values[2 * i + 1] = cuda_detail::to_float<kWide>(pair.y);
    }
  }
}

template <Wide kWide>
__device__ __forceinline__ float load1(const void* x, std::int64_t i) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  return cuda_detail::to_float<kWide>(static_cast<const Storage*>(x)[i]);
}

// Stores the 8 codes of vector v: 8 bytes, or 4 bytes of nibble pairs.
__device__ __forceinline__ void store8(std::uint8_t* data, bool packed, std::int64_t v,
                                       const std::uint8_t (&codes)[8]) {
  if (packed) {
    std::uint32_t word = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      word |= static_cast<std::uint32_t>(formats::pack_nibbles(codes[2 * i], codes[2 * i + 1])) << (8 * i);
    }
    reinterpret_cast<std::uint32_t*>(data)[v] = word;
  } else {
    uint2 words{0, 0};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      words.x |= static_cast<std::uint32_t>(codes[i]) << (8 * i);
      words.y |= static_cast<std::uint32_t>(codes[4 + i]) << (8 * i);
    }
    reinterpret_cast<uint2*>(data)[v] = words;
  }
}

// 1 x (8 * lanes_per_tile) tiles; the tile of vector v is v / lanes_per_tile, which is also its
// scale index (rowwise tiles are the scale blocks, in row-major order).
template <Wide kWide>
__global__ void __launch_bounds__(kThreads) row_tiles_kernel(const void* x, Outputs out,
                                                             std::int64_t vectors,
                                                             int lanes_per_tile, int scale_bytes,
                                                             bool packed, RuleParams rule) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool active = v < vectors;  // a whole tile is active or not, so shuffles stay full
  float values[8] = {};
  if (active) load8<kWide>(x, v, values);
  TileStats stats;
#pragma unroll
  for (int i = 0; i < 8; ++i) stats.add(values[i]);
  stats.reduce_lanes(lanes_per_tile);
  if (!active) return;
  const TileScale scale = cuda_detail::tile_scale(rule, stats);
  std::uint8_t codes[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) codes[i] = cuda_detail::encode_element(rule, scale, values[i]);
  store8(out.data, packed, v, codes);
  // lanes_per_tile is a power of two: mask and shift instead of 64-bit division.
  if ((v & (lanes_per_tile - 1)) == 0) store_scale(out, scale_bytes, v >> (__ffs(lanes_per_tile) - 1), scale);
}

// R x 1 tiles: thread = one column (packed: two adjacent columns, which share a byte) of one
// band of tile_rows rows.
template <Wide kWide>
__global__ void __launch_bounds__(kThreads) column_tiles_kernel(const void* x, Outputs out,
                                                                Geometry g, RuleParams rule) {
  const int width = g.packed ? 2 : 1;
  const std::int64_t units = g.cols / width;
  const std::int64_t unit = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t band = blockIdx.y;  // batch * tiles_down + tile row
  if (unit >= units) return;
  const std::int64_t b = band / g.tiles_down;
  const std::int64_t row0 = (band % g.tiles_down) * g.tile_rows;
  const std::int64_t row_end = min(row0 + g.tile_rows, g.rows);
  const std::int64_t col0 = unit * width;
  const std::int64_t base = b * g.rows * g.cols;

  TileStats stats[2];
  for (std::int64_t r = row0; r < row_end; ++r) {
    for (int j = 0; j < width; ++j) stats[j].add(load1<kWide>(x, base + r * g.cols + col0 + j));
  }
  TileScale scales[2];
  for (int j = 0; j < width; ++j) {
    scales[j] = cuda_detail::tile_scale(rule, stats[j]);
    const std::int64_t c = col0 + j;
    for (std::int64_t r = row0; r < row_end; r += g.block_rows) {
      store_scale(out, g.scale_bytes, (b * g.scale_rows + r / g.block_rows) * g.scale_cols + c / g.block_cols,
                  scales[j]);
    }
  }
  for (std::int64_t r = row0; r < row_end; ++r) {
    const std::int64_t i = base + r * g.cols + col0;
    if (g.packed) {
      const std::uint8_t even = cuda_detail::encode_element(rule, scales[0], load1<kWide>(x, i));
      const std::uint8_t odd = cuda_detail::encode_element(rule, scales[1], load1<kWide>(x, i + 1));
      out.data[i / 2] = formats::pack_nibbles(even, odd);
    } else {
      out.data[i] = cuda_detail::encode_element(rule, scales[0], load1<kWide>(x, i));
    }
  }
}

// Any tile shape: one warp per unit of `tiles_per_unit` (1, or 2 when a packed byte would
// straddle two odd-width tiles) horizontally adjacent tiles.
template <Wide kWide>
__global__ void __launch_bounds__(kThreads) warp_tiles_kernel(const void* x, Outputs out,
                                                              Geometry g, int tiles_per_unit,
                                                              std::int64_t units,
                                                              RuleParams rule) {
  const int lane = threadIdx.x % 32;
  const std::int64_t unit = (static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
  if (unit >= units) return;  // whole warps leave together
  const std::int64_t units_across = (g.tiles_across + tiles_per_unit - 1) / tiles_per_unit;
  const std::int64_t band = unit / units_across;
  const std::int64_t b = band / g.tiles_down;
  const std::int64_t row0 = (band % g.tiles_down) * g.tile_rows;
  const std::int64_t rows = min(g.tile_rows, g.rows - row0);
  const std::int64_t col0 = (unit % units_across) * tiles_per_unit * g.tile_cols;
  const std::int64_t cols = min(g.tile_cols * tiles_per_unit, g.cols - col0);
  const std::int64_t base = b * g.rows * g.cols + row0 * g.cols + col0;

  TileStats stats[2];
  for (std::int64_t e = lane; e < rows * cols; e += 32) {
    const cuda_detail::DivMod at = cuda_detail::divmod(e, cols);
    const std::int64_t c = at.remainder;
    const float value = load1<kWide>(x, base + at.quotient * g.cols + c);
    if (c < g.tile_cols) {
      stats[0].add(value);
    } else {
      stats[1].add(value);
    }
  }
  TileScale scales[2];
  for (int t = 0; t < tiles_per_unit; ++t) {
    stats[t].reduce_lanes(32);
    scales[t] = cuda_detail::tile_scale(rule, stats[t]);
    // The scale blocks inside this tile all take its scale (NVFP4 two_d repeats it).
    const std::int64_t tile_col0 = col0 + t * g.tile_cols;
    const std::int64_t tile_cols = min(g.tile_cols, g.cols - tile_col0);
    if (tile_cols <= 0) continue;
    const std::int64_t blocks_down = (rows + g.block_rows - 1) / g.block_rows;
    const std::int64_t blocks_across = (tile_cols + g.block_cols - 1) / g.block_cols;
    for (std::int64_t k = lane; k < blocks_down * blocks_across; k += 32) {
      const cuda_detail::DivMod at = cuda_detail::divmod(k, blocks_across);
      const std::int64_t r = row0 + at.quotient * g.block_rows;
      const std::int64_t c = tile_col0 + at.remainder * g.block_cols;
      store_scale(out, g.scale_bytes,
                  (b * g.scale_rows + r / g.block_rows) * g.scale_cols + c / g.block_cols, scales[t]);
    }
  }
  const int per_code = g.packed ? 2 : 1;
  for (std::int64_t e = lane * per_code; e < rows * cols; e += 32 * per_code) {
    const cuda_detail::DivMod at = cuda_detail::divmod(e, cols);
    const std::int64_t c = at.remainder;
    const std::int64_t i = base + at.quotient * g.cols + c;
    const std::uint8_t code =
        cuda_detail::encode_element(rule, scales[c < g.tile_cols ? 0 : 1], load1<kWide>(x, i));
    if (g.packed) {
      const std::int64_t c1 = c + 1;
      const std::uint8_t odd =
          cuda_detail::encode_element(rule, scales[c1 < g.tile_cols ? 0 : 1], load1<kWide>(x, i + 1));
      out.data[i / 2] = formats::pack_nibbles(code, odd);
    } else {
      out.data[i] = code;
    }
  }
}

// Per-tensor FP8: 8 elements per thread (any alignment; the tail handled element-wise).
template <Wide kWide>
__global__ void __launch_bounds__(kThreads) tensor_kernel(const void* x, Outputs out,
                                                          std::int64_t count, bool vectorized,
                                                          RuleParams rule) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  TileStats stats;
  stats.amax = rule.tensor_amax != nullptr ? *rule.tensor_amax : 0.0f;
  const TileScale scale = cuda_detail::tile_scale(rule, stats);
  if (v == 0) store_scale(out, 4, 0, scale);
  if (vectorized && (v + 1) * 8 <= count) {
    float values[8];
    load8<kWide>(x, v, values);
    std::uint8_t codes[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) codes[i] = cuda_detail::encode_element(rule, scale, values[i]);
    store8(out.data, false, v, codes);
    return;
  }
  for (std::int64_t i = v * 8; i < min(v * 8 + 8, count); ++i) {
    out.data[i] = cuda_detail::encode_element(rule, scale, load1<kWide>(x, i));
  }
}

struct NanMax {
  __device__ float operator()(float a, float b) const { return numerics::nan_max(a, b); }
};

template <Wide kWide>
struct WideToAbs {
  __device__ float operator()(typename cuda_detail::WideStorage<kWide>::type raw) const {
    return numerics::abs_value(cuda_detail::to_float<kWide>(raw));
  }
};

template <Wide kWide>
void launch_amax(const void* x, std::int64_t count, float* result, const Context& context,
                 Device device) {
  using Storage = typename cuda_detail::WideStorage<kWide>::type;
  const auto* in = static_cast<const Storage*>(x);
  const auto stream = detail::stream_of(context);
  std::size_t temp_bytes = 0;
  detail::check(cub::DeviceReduce::TransformReduce(nullptr, temp_bytes, in, result, count, NanMax{},
                                                   WideToAbs<kWide>{}, 0.0f, stream),
                "cub::DeviceReduce::TransformReduce (size query)");
  const std::shared_ptr<void> temp = detail::scratch(context, static_cast<std::int64_t>(temp_bytes), device);
  detail::check(cub::DeviceReduce::TransformReduce(temp.get(), temp_bytes, in, result, count, NanMax{},
                                                   WideToAbs<kWide>{}, 0.0f, stream),
                "cub::DeviceReduce::TransformReduce");
}

Wide wide_of(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return Wide::kF32;
    case DType::kBF16:
      return Wide::kBF16;
    case DType::kF16:
      return Wide::kF16;
    case DType::kF64:
      return Wide::kF64;
    default:
      fail<TypeError>("x: expected float32, float16, bfloat16 or float64 on the GPU, got ",
                      dtype_name(dtype));
  }
}

// Calls f.template operator()<kWide>() for the runtime dtype.
template <class F>
void with_wide(DType dtype, F&& f) {
  switch (wide_of(dtype)) {
    case Wide::kF32:
      return f.template operator()<Wide::kF32>();
    case Wide::kBF16:
      return f.template operator()<Wide::kBF16>();
    case Wide::kF16:
      return f.template operator()<Wide::kF16>();
    case Wide::kF64:
      return f.template operator()<Wide::kF64>();
  }
}

RuleParams rule_of(const QuantPlan& plan) {
  RuleParams p;
  p.format = plan.format;
  p.scale_dtype = plan.scale_dtype;
  const Recipe& recipe = plan.recipe;
  if (const auto* r = std::get_if<Float8CurrentScaling>(&recipe)) {
    p.rule = cuda_detail::Rule::kFp8Current;
    p.power_2_scale = r->power_2_scale;
  } else if (const auto* r = std::get_if<DelayedScaling>(&recipe)) {
    p.rule = cuda_detail::Rule::kFp8Delayed;
    p.margin = static_cast<int>(r->margin);
  } else if (const auto* r = std::get_if<Float8BlockScaling>(&recipe)) {
    p.rule = cuda_detail::Rule::kFp8Current;
    p.power_2_scale = r->power_2_scale;
  } else if (const auto* r = std::get_if<MXFP8BlockScaling>(&recipe)) {
    p.rule = r->scale_rounding == MXScaleRounding::kFloor ? cuda_detail::Rule::kMxFloor
                                                          : cuda_detail::Rule::kMxRceil;
  } else if (std::holds_alternative<NVFP4BlockScaling>(recipe)) {
    p.rule = cuda_detail::Rule::kNvfp4;
  } else {
    p.rule = std::get<INT4Scaling>(recipe).is_signed ? cuda_detail::Rule::kInt4Signed
                                                     : cuda_detail::Rule::kInt4Unsigned;
  }
  return p;
}

bool aligned(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

std::int64_t blocks_for(std::int64_t threads) { return (threads + kThreads - 1) / kThreads; }

void cast_per_tensor(const QuantPlan& plan, const Array& x, const reference::CastOutputs& out,
                     DelayedScalingState* state, const Context& context, RuleParams rule) {
  const auto stream = detail::stream_of(context);
  const std::int64_t count = x.numel();
  // The amax needs its own 4 bytes: every block of the cast kernel reads it.
  const std::shared_ptr<void> amax_memory = detail::scratch(context, sizeof(float), x.device());
  auto* amax = static_cast<float*>(amax_memory.get());
  if (count == 0) {
    detail::check(cudaMemsetAsync(amax, 0, sizeof(float), stream), "cudaMemsetAsync");
  } else {
    with_wide(x.dtype(), [&]<Wide kWide>() { launch_amax<kWide>(x.data(), count, amax, context, x.device()); });
  }
  float host_amax = 0.0f;
  if (state != nullptr) {
    detail::check(cudaMemcpyAsync(&host_amax, amax, sizeof(float), cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync (amax for DelayedScalingState)");
    detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    rule.rule = cuda_detail::Rule::kFp8Fixed;
    rule.fixed_encode = state->encode_scale();
  }
  rule.tensor_amax = amax;
  const Outputs outputs{out.data.data_as<std::uint8_t>(), out.scale.data(), nullptr};
  const bool vectorized = aligned(x.data(), 16) && aligned(out.data.data(), 8);
  const std::int64_t threads = std::max<std::int64_t>(1, (count + 7) / 8);
  with_wide(x.dtype(), [&]<Wide kWide>() {
    tensor_kernel<kWide><<<blocks_for(threads), kThreads, 0, stream>>>(x.data(), outputs, count,
                                                                         vectorized, rule);
  });
  detail::check_launch("cast (per-tensor FP8)");
  if (state != nullptr) state->update(host_amax);
}

}  // namespace

void amax(const Array& x, const Array& amax_out, const Context& context) {
  detail::require_cuda(x, "x");
  detail::require_cuda(amax_out, "amax_out");
  if (x.numel() == 0) {
    detail::check(cudaMemsetAsync(amax_out.data(), 0, sizeof(float), detail::stream_of(context)),
                  "cudaMemsetAsync");
    return;
  }
  with_wide(x.dtype(), [&]<Wide kWide>() {
    launch_amax<kWide>(x.data(), x.numel(), amax_out.data_as<float>(), context, x.device());
  });
}

void cast(const QuantPlan& plan, const Array& x, const reference::CastOutputs& out,
          DelayedScalingState* state, const Context& context) {
  detail::require_cuda(x, "x");
  detail::DeviceGuard guard(x.device());
  RuleParams rule = rule_of(plan);
  if (plan.grid.per_tensor) {
    cast_per_tensor(plan, x, out, state, context, rule);
    return;
  }
  const ScaleGrid& grid = plan.grid;
  if (x.numel() == 0) return;
  const auto stream = detail::stream_of(context);
  if (plan.has_global_scale) {
    // NVFP4: the tensor amax goes to global_scale's memory; a one-thread kernel turns it into
    // amax / 2688 after the block pass has read it.
    with_wide(x.dtype(), [&]<Wide kWide>() {
      launch_amax<kWide>(x.data(), x.numel(), out.global_scale.data_as<float>(), context, x.device());
    });
    rule.tensor_amax = out.global_scale.data_as<float>();
  }

  Geometry g{};
  g.batch = grid.batch;
  g.rows = grid.rows;
  g.cols = grid.cols;
  g.tile_rows = plan.amax_block_rows;
  g.tile_cols = plan.amax_block_cols;
  g.tiles_down = (g.rows + g.tile_rows - 1) / g.tile_rows;
  g.tiles_across = (g.cols + g.tile_cols - 1) / g.tile_cols;
  g.block_rows = grid.block_rows;
  g.block_cols = grid.block_cols;
  g.scale_rows = grid.scale_rows;
  g.scale_cols = grid.scale_cols;
  g.packed = is_packed(plan.format);
  g.scale_bytes = itemsize(plan.scale_dtype);
  const Outputs outputs{out.data.data_as<std::uint8_t>(), out.scale.data(),
                        plan.has_zero_point ? out.zero_point.data_as<std::uint8_t>() : nullptr};

  const int lanes_per_tile = static_cast<int>(g.tile_cols / 8);
  const bool row_tiles = g.tile_rows == 1 && g.tile_cols % 8 == 0 && lanes_per_tile <= 32 &&
                         (lanes_per_tile & (lanes_per_tile - 1)) == 0 &&
                         g.block_rows == 1 && g.block_cols == g.tile_cols &&
                         aligned(x.data(), 16) && aligned(out.data.data(), 8);
  const bool column_tiles = g.tile_cols == 1 && g.block_cols == 1 && g.block_rows == g.tile_rows &&
                            g.batch * g.tiles_down <= 65535;  // the grid's y limit
  with_wide(x.dtype(), [&]<Wide kWide>() {
    if (row_tiles) {
      const std::int64_t vectors = x.numel() / 8;
      row_tiles_kernel<kWide><<<blocks_for(vectors), kThreads, 0, stream>>>(
          x.data(), outputs, vectors, lanes_per_tile, g.scale_bytes, g.packed, rule);
    } else if (column_tiles) {
      const std::int64_t units = g.cols / (g.packed ? 2 : 1);
      const dim3 blocks(static_cast<unsigned>(blocks_for(units)),
                        static_cast<unsigned>(g.batch * g.tiles_down));
      column_tiles_kernel<kWide><<<blocks, kThreads, 0, stream>>>(x.data(), outputs, g, rule);
    } else {
      const int tiles_per_unit = g.packed && g.tile_cols % 2 != 0 ? 2 : 1;
      const std::int64_t units =
          g.batch * g.tiles_down * ((g.tiles_across + tiles_per_unit - 1) / tiles_per_unit);
      warp_tiles_kernel<kWide><<<blocks_for(units * 32), kThreads, 0, stream>>>(
          x.data(), outputs, g, tiles_per_unit, units, rule);
    }
  });
  detail::check_launch("cast (block-scaled)");
  if (plan.has_global_scale) detail::finish_nvfp4_global_scale(out.global_scale.data_as<float>(), stream);
}

}  // namespace breccia::kernels::cuda
