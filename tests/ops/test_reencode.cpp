// reencode_fp4_as_fp8: every E2M1 code under every E8M0 block scale the re-encode can hold
// keeps its value bit for bit; what it cannot hold is refused by name.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/ops.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using test_support::contains;
using test_support::error_message;

// An MXFP4 tensor of `rows` x `cols` whose packed codes and E8M0 scale codes come from the
// given functions of (row, column) and (row, block).
template <class Code, class Scale>
ScaledTensor mxfp4(std::int64_t rows, std::int64_t cols, Code code, Scale scale) {
  Array data = Array::empty(DType::kU8, {rows, cols / 2});
  Array scales = Array::empty(DType::kE8M0, {rows, cols / 32});
  auto* bytes = data.data_as<std::uint8_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; c += 2) {
      bytes[r * cols / 2 + c / 2] = static_cast<std::uint8_t>(code(r, c) & 0xF) |
                                    static_cast<std::uint8_t>(code(r, c + 1) << 4);
    }
    for (std::int64_t b = 0; b < cols / 32; ++b) {
      scales.data_as<std::uint8_t>()[r * (cols / 32) + b] = static_cast<std::uint8_t>(scale(r, b));
    }
  }
  return ScaledTensor(std::move(data), std::move(scales), MXFP4BlockScaling{}, PerBlockMN{1, 32});
}

void expect_same_bits(const Array& got, const Array& want) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.nbytes(), want.nbytes());
  const auto* a = got.data_as<const std::uint32_t>();
  const auto* b = want.data_as<const std::uint32_t>();
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) mismatches += a[i] != b[i];
  EXPECT_EQ(mismatches, 0);
}

// Tile t (32 x 32, one FP4 block per row) has largest scale code t; row r's block sits
// r % 15 codes below it (clamped at code 0), the widest spread the re-encode holds, and its
// 32 elements run through the 16 E2M1 codes twice: every code under every shift, for every
// largest scale E8M0 has.
TEST(ReencodeFp4AsFp8, EveryCodeAndScaleKeepsItsValueBitForBit) {
  constexpr std::int64_t kTiles = 255;
  const ScaledTensor x = mxfp4(
      32, 32 * kTiles, [](std::int64_t r, std::int64_t c) { return (c + r) % 16; },
      [](std::int64_t r, std::int64_t b) { return std::max<std::int64_t>(b - r % 15, 0); });
  const ScaledTensor y = reencode_fp4_as_fp8(x, 32);
  EXPECT_EQ(
      y.recipe(),
      (Recipe{Float8BlockScaling{
          .fp8_format = Fp8Format::kE4M3, .block_k = 32, .block_m = 32, .power_2_scale = true}}));
  EXPECT_EQ(y.layout(), (Layout{PerBlockMN{32, 32}}));
  expect_same_bits(dequantize(y), dequantize(x));
  // Each tile's scale is its largest block scale over 2^6, never below E8M0's 2^-127.
  for (std::int64_t t = 0; t < kTiles; ++t) {
    const float scale = y.scale().data_as<const float>()[t];
    EXPECT_EQ(scale, std::ldexp(1.0f, static_cast<int>(std::max<std::int64_t>(t - 6, 0)) - 127))
        << "tile " << t;
  }
}

// The default 128 x 128 tile over a shape that is not a multiple of it: partial tiles take the
// largest scale of the blocks they have.
TEST(ReencodeFp4AsFp8, PartialTilesOfTheDefaultTile) {
  const ScaledTensor x = mxfp4(
      200, 352, [](std::int64_t r, std::int64_t c) { return (r * 7 + c * 3) % 16; },
      [](std::int64_t r, std::int64_t b) { return 120 + (r * 5 + b) % 9; });
  const ScaledTensor y = reencode_fp4_as_fp8(x);
  EXPECT_EQ(y.scale().shape(), (Shape{2, 3}));
  expect_same_bits(dequantize(y), dequantize(x));
}

TEST(ReencodeFp4AsFp8, RefusesAnElementThatWouldUnderflow) {
  // Row 1's block is 2^15 below row 0's in the same tile: its 0.5 would be 2^-10 in E4M3.
  const auto scale = [](std::int64_t r, std::int64_t) { return r == 1 ? 100 : 115; };
  const ScaledTensor x = mxfp4(32, 32, [](std::int64_t, std::int64_t) { return 1; }, scale);
  const std::string message = error_message<ValueError>([&] { reencode_fp4_as_fp8(x, 32); });
  EXPECT_TRUE(contains(message, "element (1, 0) is not exact in E4M3"));
  EXPECT_TRUE(contains(message, "2^-27"));
  // Zeros are exact under any scale: the same scales over zero codes re-encode.
  const ScaledTensor zeros =
      mxfp4(32, 32, [](std::int64_t r, std::int64_t c) { return r == 1 ? 8 * (c % 2) : 1; }, scale);
  expect_same_bits(dequantize(reencode_fp4_as_fp8(zeros, 32)), dequantize(zeros));
}

TEST(ReencodeFp4AsFp8, RefusesWhatIsNotMxfp4) {
  const ScaledTensor nan_block = mxfp4(
      32, 64, [](std::int64_t, std::int64_t) { return 3; },
      [](std::int64_t r, std::int64_t b) { return r == 5 && b == 1 ? 0xFF : 127; });
  EXPECT_TRUE(contains(error_message<ValueError>([&] { reencode_fp4_as_fp8(nan_block, 32); }),
                       "block scale at row 5, block 1 is NaN"));
  const ScaledTensor ok = mxfp4(
      32, 64, [](std::int64_t, std::int64_t) { return 3; },
      [](std::int64_t, std::int64_t) { return 127; });
  EXPECT_TRUE(contains(error_message<ValueError>([&] { reencode_fp4_as_fp8(ok, 48); }),
                       "tile: expected a positive multiple of 32"));
  Array x = Array::zeros(DType::kF32, {32, 128});
  const ScaledTensor fp8 = cast(x, Float8BlockScaling{});
  EXPECT_TRUE(contains(error_message<ValueError>([&] { reencode_fp4_as_fp8(fp8); }),
                       "x: expected a 2-D MXFP4 tensor"));
}

}  // namespace
}  // namespace breccia
