// reencode_fp4_as_fp8: MXFP4 as FP8 blocks with no value changed (DeepSeek-V4's routed experts,
// re-encoded for Hopper's FP8 GEMMs). Every element is an E2M1 value v times its block's E8M0
// scale 2^e; the tile's scale is 2^(e_max - 6), so v * 2^(e - e_max + 6) is at most 6 * 2^6 =
// 384 and fits E4M3. Each block's shift k = e - e_tile selects one 16-entry table of E4M3 codes.
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/ops.hpp"
#include "breccia/rules/tile.hpp"
#include "cpu/threads.hpp"

namespace breccia {
namespace {

constexpr int kFp4Block = 32;
constexpr int kMaxShift = 6;  // 6 * 2^6 = 384 <= 448, the largest shift E4M3 holds
constexpr int kE8M0Codes = 255;

// The E4M3 code of every E2M1 code shifted by 2^k, k in [kMaxShift - 254, kMaxShift], and
// whether it holds the value exactly (a shift far below the tile's largest underflows E4M3).
struct ShiftTables {
  std::vector<std::array<std::uint8_t, 16>> codes;
  std::vector<std::array<bool, 16>> exact;

  ShiftTables() : codes(kE8M0Codes), exact(kE8M0Codes) {
    for (int index = 0; index < kE8M0Codes; ++index) {
      const int shift = kMaxShift - index;
      for (std::uint32_t nibble = 0; nibble < 16; ++nibble) {
        const double value = std::ldexp(static_cast<double>(formats::E2M1::decode(nibble)), shift);
        const std::uint8_t code =
            rules::encode_element<ElementFormat::kE4M3>(static_cast<float>(value));
        codes[index][nibble] = code;
        exact[index][nibble] = static_cast<double>(formats::E4M3::decode(code)) == value;
      }
    }
  }
};

const ShiftTables& shift_tables() {
  static const ShiftTables tables;
  return tables;
}

void require_mxfp4(const ScaledTensor& x, std::int64_t tile) {
  const RecipeSpec& spec = x.spec();
  if (spec.family != RuleFamily::kMx || spec.element != ElementFormat::kE2M1 ||
      x.layout() != Layout{PerBlockMN{1, kFp4Block}} || x.ndim() != 2) {
    fail<ValueError>(
        "x: expected a 2-D MXFP4 tensor blocked along its rows (PerBlockMN(1, 32)), "
        "got ",
        x.repr());
  }
  if (!x.device().is_cpu()) {
    fail<DeviceError>("x: reencode_fp4_as_fp8 runs on the CPU, got data on ", x.device().str());
  }
  if (tile <= 0 || tile % kFp4Block != 0) {
    fail<ValueError>("tile: expected a positive multiple of 32 (the FP4 block), got ", tile);
  }
}

}  // namespace

ScaledTensor reencode_fp4_as_fp8(const ScaledTensor& x, std::int64_t tile) {
  require_mxfp4(x, tile);
  const Array data = x.data().contiguous();
  const Array scale = x.scale().contiguous();
  const std::int64_t rows = x.logical_shape()[0];
  const std::int64_t cols = x.logical_shape()[1];
  const std::int64_t blocks_per_row = scale.dim(1);
  const std::int64_t tile_rows = (rows + tile - 1) / tile;
  const std::int64_t tile_cols = (cols + tile - 1) / tile;
  const auto* codes = data.data_as<const std::uint8_t>();
  const auto* exponents = scale.data_as<const std::uint8_t>();

  Array out = Array::empty(DType::kE4M3, {rows, cols});
  Array out_scale = Array::empty(DType::kF32, {tile_rows, tile_cols});
  auto* out_codes = out.data_as<std::uint8_t>();
  auto* out_scales = out_scale.data_as<float>();
  const ShiftTables& tables = shift_tables();
  const std::int64_t blocks_per_tile = tile / kFp4Block;

  kernels::cpu::parallel_for(tile_rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t ti = begin; ti < end; ++ti) {
      const std::int64_t r0 = ti * tile;
      const std::int64_t r1 = std::min(rows, r0 + tile);
      for (std::int64_t tj = 0; tj < tile_cols; ++tj) {
        const std::int64_t b0 = tj * blocks_per_tile;
        const std::int64_t b1 = std::min(blocks_per_row, b0 + blocks_per_tile);
        int largest = 0;
        for (std::int64_t r = r0; r < r1; ++r) {
          for (std::int64_t b = b0; b < b1; ++b) {
            const int e = exponents[r * blocks_per_row + b];
            if (e == numerics::kE8M0Nan) {
              fail<ValueError>("x: the block scale at row ", r, ", block ", b,
                               " is NaN; a NaN block has no FP8 encoding");
            }
            largest = std::max(largest, e);
          }
        }
        // E8M0 stops at 2^-127: a tile whose largest scale is below 2^-121 keeps 2^-127.
        const int tile_code = std::max(largest - kMaxShift, 0);
        out_scales[ti * tile_cols + tj] =
            formats::E8M0::decode(static_cast<std::uint32_t>(tile_code));
        for (std::int64_t r = r0; r < r1; ++r) {
          for (std::int64_t b = b0; b < b1; ++b) {
            const int index = kMaxShift - (exponents[r * blocks_per_row + b] - tile_code);
            const auto& table = tables.codes[index];
            const auto& exact = tables.exact[index];
            const std::int64_t c1 = std::min(cols, (b + 1) * kFp4Block);
            for (std::int64_t c = b * kFp4Block; c < c1; ++c) {
              const std::uint8_t byte = codes[r * (cols / 2) + c / 2];
              const std::uint8_t nibble = (c % 2 == 0) ? (byte & 0xF) : (byte >> 4);
              if (!exact[nibble]) {
                fail<ValueError>("x: element (", r, ", ", c,
                                 ") is not exact in E4M3 under its tile's scale: "
                                 "its block scale 2^",
                                 exponents[r * blocks_per_row + b] - 127,
                                 " lies more than 2^14 below the "
                                 "tile's largest, 2^",
                                 largest - 127, "; dequantize this tensor instead");
              }
              out_codes[r * cols + c] = table[nibble];
            }
          }
        }
      }
    }
  });
  return ScaledTensor(
      std::move(out), std::move(out_scale),
      Float8BlockScaling{
          .fp8_format = Fp8Format::kE4M3, .block_k = tile, .block_m = tile, .power_2_scale = true},
      PerBlockMN{tile, tile});
}

}  // namespace breccia
