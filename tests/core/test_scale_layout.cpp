#include "breccia/scale_layout.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <tuple>

#include "breccia/error.hpp"

namespace breccia {
namespace {

Array random_codes(Shape shape, DType dtype, std::mt19937& random) {
  Array array = Array::empty(dtype, std::move(shape));
  for (std::int64_t i = 0; i < array.numel(); ++i) {
    array.data_as<std::uint8_t>()[i] = static_cast<std::uint8_t>(random());
  }
  return array;
}

const std::uint8_t* bytes(const Array& array) {
  return array.data_as<const std::uint8_t>();
}

TEST(ScaleLayout, PadsRowsTo128AndColumnsTo4) {
  EXPECT_EQ(padded_scale_rows(0), 0);
  EXPECT_EQ(padded_scale_rows(1), 128);
  EXPECT_EQ(padded_scale_rows(128), 128);
  EXPECT_EQ(padded_scale_rows(129), 256);
  EXPECT_EQ(padded_scale_cols(1), 4);
  EXPECT_EQ(padded_scale_cols(4), 4);
  EXPECT_EQ(padded_scale_cols(5), 8);
  EXPECT_THROW(padded_scale_rows(-1), ValueError);
}

// The cuBLAS description read as an array: the swizzled matrix is
// [row_tiles][col_tiles][32][4][4], entry [t][u][a][b][c] holding row t*128 + b*32 + a and
// column u*4 + c of the compact matrix. Independent of the implementation's offset formula.
std::uint8_t swizzled_entry(const Array& swizzled, std::int64_t batch, std::int64_t row,
                            std::int64_t col) {
  const std::int64_t rows = swizzled.dim(-2);
  const std::int64_t cols = swizzled.dim(-1);
  const std::int64_t t = row / 128, b = (row % 128) / 32, a = row % 32;
  const std::int64_t u = col / 4, c = col % 4;
  const std::int64_t index = (((t * (cols / 4) + u) * 32 + a) * 4 + b) * 4 + c;
  return bytes(swizzled)[batch * rows * cols + index];
}

TEST(ScaleLayout, SwizzlePlacesEveryEntryWhereTheGemmReadsIt) {
  std::mt19937 random(7);
  for (const auto& [batch, rows, cols] :
       {std::tuple<int, int, int>{1, 1, 1}, {1, 128, 4}, {1, 130, 5}, {2, 256, 12}, {3, 7, 9}}) {
    const Shape shape = batch == 1 ? Shape{rows, cols} : Shape{batch, rows, cols};
    const Array compact = random_codes(shape, DType::kE8M0, random);
    const Array swizzled = swizzle_scales(compact);
    ASSERT_EQ(swizzled.dtype(), DType::kE8M0);
    ASSERT_EQ(swizzled.dim(-2), padded_scale_rows(rows));
    ASSERT_EQ(swizzled.dim(-1), padded_scale_cols(cols));
    for (int n = 0; n < batch; ++n) {
      for (int r = 0; r < swizzled.dim(-2); ++r) {
        for (int c = 0; c < swizzled.dim(-1); ++c) {
          const std::uint8_t expected =
              r < rows && c < cols ? bytes(compact)[(n * rows + r) * cols + c] : 0;
          ASSERT_EQ(swizzled_entry(swizzled, n, r, c), expected) << n << "," << r << "," << c;
        }
      }
    }
    const Array back = unswizzle_scales(swizzled, rows, cols);
    ASSERT_EQ(back.shape(), shape);
    EXPECT_EQ(std::memcmp(back.data(), compact.data(), compact.nbytes()), 0);
  }
}

TEST(ScaleLayout, TheFirstTileFollowsTheDocumentedIndex) {
  // (r % 32) * 16 + (r / 32) * 4 + c inside a 128 x 4 tile (numerics.md §4).
  Array compact = Array::empty(DType::kU8, {128, 4});
  for (int i = 0; i < 512; ++i)
    compact.data_as<std::uint8_t>()[i] = static_cast<std::uint8_t>(i % 251);
  const Array swizzled = swizzle_scales(compact);
  for (int r = 0; r < 128; ++r) {
    for (int c = 0; c < 4; ++c) {
      EXPECT_EQ(bytes(swizzled)[(r % 32) * 16 + (r / 32) * 4 + c], (r * 4 + c) % 251);
    }
  }
}

TEST(ScaleLayout, PadAndUnpadRoundTripWithZeroPadding) {
  std::mt19937 random(11);
  const Array compact = random_codes({2, 130, 6}, DType::kE4M3, random);
  const Array padded = pad_scales(compact);
  ASSERT_EQ(padded.shape(), (Shape{2, 256, 8}));
  for (int n = 0; n < 2; ++n) {
    for (int r = 0; r < 256; ++r) {
      for (int c = 0; c < 8; ++c) {
        const std::uint8_t expected = r < 130 && c < 6 ? bytes(compact)[(n * 130 + r) * 6 + c] : 0;
        ASSERT_EQ(bytes(padded)[(n * 256 + r) * 8 + c], expected);
      }
    }
  }
  const Array back = unpad_scales(padded, 130, 6);
  EXPECT_EQ(std::memcmp(back.data(), compact.data(), compact.nbytes()), 0);
}

TEST(ScaleLayout, RejectsWhatIsNotAByteScaleMatrix) {
  EXPECT_THROW(swizzle_scales(Array::zeros(DType::kU8, {8})), ValueError);
  EXPECT_THROW(swizzle_scales(Array::zeros(DType::kF32, {8, 4})), TypeError);
  EXPECT_THROW(pad_scales(Array::zeros(DType::kF16, {8, 4})), TypeError);
  try {
    unswizzle_scales(Array::zeros(DType::kU8, {128, 4}), 129, 4);
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& error) {
    EXPECT_NE(std::string(error.what()).find("(256, 4)"), std::string::npos) << error.what();
  }
  EXPECT_THROW(unpad_scales(Array::zeros(DType::kU8, {128, 8}), 10, 3), ValueError);
}

}  // namespace
}  // namespace breccia
