// cast_for_gemm: both axes and GEMM-ready scales from one call. Each output must be the very
// cast() of its axis, the swizzled scales must follow the 128 x 4 tile formula (checked here
// entry by entry, independently of swizzle_scales), and the shortcuts (one tensor for both
// axes, shared codes) must hold only where the bytes are the same.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using ::breccia::test_support::contains;
using ::breccia::test_support::error_message;

Array random_array(const Shape& shape, unsigned seed) {
  Array x = Array::empty(DType::kF32, shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  float* values = x.data_as<float>();
  for (std::int64_t i = 0; i < x.numel(); ++i) values[i] = normal(rng);
  values[x.numel() / 3] = std::numeric_limits<float>::quiet_NaN();  // one NaN block per tensor
  return x;
}

bool same_bytes(const Array& a, const Array& b) {
  return a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.nbytes())) == 0;
}

void expect_same_tensor(const ScaledTensor& got, const ScaledTensor& want) {
  EXPECT_EQ(got.layout(), want.layout());
  EXPECT_TRUE(same_bytes(got.data(), want.data())) << "data";
  EXPECT_TRUE(same_bytes(got.scale(), want.scale())) << "scale";
  ASSERT_EQ(got.global_scale().has_value(), want.global_scale().has_value());
  if (want.global_scale()) EXPECT_TRUE(same_bytes(*got.global_scale(), *want.global_scale()));
  ASSERT_EQ(got.zero_point().has_value(), want.zero_point().has_value());
  if (want.zero_point()) EXPECT_TRUE(same_bytes(*got.zero_point(), *want.zero_point()));
}

// Every byte of `swizzled` (batch x padded rows x padded cols) against the compact scale
// matrices (batch x R x C, read transposed when `transposed`): entry (r, c) of the GEMM
// matrix lives in 128 x 4 tile (r / 128, c / 4) at (r % 32) * 16 + (r % 128 / 32) * 4 + c % 4;
// padding is zero.
void expect_swizzled(const Array& swizzled, const Array& compact, bool transposed) {
  const std::int64_t rows = transposed ? compact.dim(-1) : compact.dim(-2);
  const std::int64_t cols = transposed ? compact.dim(-2) : compact.dim(-1);
  const std::int64_t padded_rows = (rows + 127) / 128 * 128, padded_cols = (cols + 3) / 4 * 4;
  ASSERT_EQ(swizzled.dim(-2), padded_rows);
  ASSERT_EQ(swizzled.dim(-1), padded_cols);
  const std::int64_t batch = compact.numel() / (rows * cols);
  const auto* got = static_cast<const std::uint8_t*>(swizzled.data());
  const auto* scale = static_cast<const std::uint8_t*>(compact.data());
  std::int64_t wrong = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t r = 0; r < padded_rows; ++r) {
      for (std::int64_t c = 0; c < padded_cols; ++c) {
        const std::int64_t tile = (r / 128) * (padded_cols / 4) + c / 4;
        const std::int64_t at =
            b * padded_rows * padded_cols + tile * 512 + (r % 32) * 16 + (r % 128 / 32) * 4 + c % 4;
        std::uint8_t want = 0;
        if (r < rows && c < cols) {
          want = transposed ? scale[(b * cols + c) * rows + r] : scale[(b * rows + r) * cols + c];
        }
        wrong += got[at] != want;
      }
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST(CastForGemm, EachAxisIsTheCastOfThatAxis) {
  const std::vector<Recipe> recipes = {
      Float8BlockScaling{},
      MXFP8BlockScaling{},
      MXFP8BlockScaling{Fp8Format::kE5M2, 32, MXScaleRounding::kRceil},
      NVFP4BlockScaling{},
      NVFP4BlockScaling{"E2M1", 16, "E4M3", true},
      INT4Scaling{},
      INT4Scaling{32, false, Int4ScaleDType::kBF16}};
  for (const Shape& shape : std::vector<Shape>{{256, 384}, {2, 128, 256}}) {
    const Array x = random_array(shape, 3);
    for (const Recipe& recipe : recipes) {
      SCOPED_TRACE(recipe_repr(recipe) + " " + shape_str(shape));
      const GemmCast both = cast_for_gemm(x, recipe);
      ASSERT_TRUE(both.rowwise && both.columnwise);
      expect_same_tensor(*both.rowwise, cast(x, recipe, {.axis = -1}));
      expect_same_tensor(*both.columnwise, cast(x, recipe, {.axis = -2}));
      EXPECT_FALSE(both.rowwise_swizzled_scale || both.columnwise_swizzled_scale);
      const GemmCast columns = cast_for_gemm(x, recipe, {.rowwise = false});
      EXPECT_FALSE(columns.rowwise);
      expect_same_tensor(*columns.columnwise, *both.columnwise);
    }
  }
}

TEST(CastForGemm, SwizzledScalesFollowTheTileFormula) {
  const std::vector<Recipe> recipes = {MXFP8BlockScaling{}, NVFP4BlockScaling{},
                                       NVFP4BlockScaling{"E2M1", 16, "E4M3", true}};
  // 160 x 416: neither scale matrix fills whole 128 x 4 tiles, in either orientation.
  for (const Shape& shape : std::vector<Shape>{{160, 416}, {3, 64, 256}}) {
    const Array x = random_array(shape, 5);
    for (const Recipe& recipe : recipes) {
      SCOPED_TRACE(recipe_repr(recipe) + " " + shape_str(shape));
      const GemmCast out = cast_for_gemm(x, recipe, {.swizzled_scales = true});
      ASSERT_TRUE(out.rowwise_swizzled_scale && out.columnwise_swizzled_scale);
      expect_swizzled(*out.rowwise_swizzled_scale, out.rowwise->scale(), false);
      expect_swizzled(*out.columnwise_swizzled_scale, out.columnwise->scale(), true);
    }
  }
}

TEST(CastForGemm, SharesWhatBothAxesHaveInCommon) {
  const Array x = random_array({128, 256}, 7);
  // Per-tensor scaling and square 2-D blocks: the same tensor under both axes.
  for (const Recipe& recipe : std::vector<Recipe>{
           Float8CurrentScaling{}, Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true}}) {
    const GemmCast out = cast_for_gemm(x, recipe);
    EXPECT_EQ(out.rowwise->data().data(), out.columnwise->data().data()) << recipe_repr(recipe);
    EXPECT_EQ(out.rowwise->scale().data(), out.columnwise->scale().data());
    expect_same_tensor(*out.columnwise, cast(x, recipe, {.axis = -2}));
  }
  // NVFP4 two_d: the codes (one scale per 16 x 16 tile) and the global scale are shared, the
  // scale tensors are laid out per axis.
  const GemmCast nvfp4 = cast_for_gemm(x, NVFP4BlockScaling{"E2M1", 16, "E4M3", true});
  EXPECT_EQ(nvfp4.rowwise->data().data(), nvfp4.columnwise->data().data());
  EXPECT_EQ(nvfp4.rowwise->global_scale()->data(), nvfp4.columnwise->global_scale()->data());
  EXPECT_NE(nvfp4.rowwise->scale().shape(), nvfp4.columnwise->scale().shape());
  // 1-D blocks: separate codes.
  const GemmCast mx = cast_for_gemm(x, MXFP8BlockScaling{});
  EXPECT_NE(mx.rowwise->data().data(), mx.columnwise->data().data());
}

TEST(CastForGemm, AdvancesADelayedScalingStateOnce) {
  const DelayedScaling recipe{Fp8Format::kE4M3, 4, 0};
  DelayedScalingState once(recipe), expected(recipe);
  const Array x = random_array({64, 128}, 9);
  const GemmCast out = cast_for_gemm(x, recipe, {.state = &once});
  const ScaledTensor want = cast(x, recipe, {.state = &expected});
  expect_same_tensor(*out.rowwise, want);
  ASSERT_EQ(once.amax_history().size(), expected.amax_history().size());
  for (std::size_t i = 0; i < once.amax_history().size(); ++i) {  // bitwise: the NaN entry too
    EXPECT_EQ(std::bit_cast<std::uint32_t>(once.amax_history()[i]),
              std::bit_cast<std::uint32_t>(expected.amax_history()[i]));
  }
  EXPECT_EQ(once.encode_scale(), expected.encode_scale());
}

TEST(CastForGemm, RefusesWhatItCannotDo) {
  const Array x = random_array({64, 128}, 11);
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         cast_for_gemm(x, MXFP8BlockScaling{},
                                       {.rowwise = false, .columnwise = false});
                       }),
                       "expected rowwise, columnwise or both"));
  EXPECT_TRUE(contains(
      error_message<ValueError>(
          [&] { cast_for_gemm(x, Float8BlockScaling{}, {.swizzled_scales = true}); }),
      "swizzled_scales: GEMM-ready swizzled scales exist for recipes with one-byte block scales"));
  // Per-channel INT4 has no columnwise form.
  EXPECT_TRUE(contains(error_message<ValueError>(
                           [&] { cast_for_gemm(x, INT4Scaling{-1, true, Int4ScaleDType::kF16}); }),
                       "axis"));
  // 40 rows: no 32-row columnwise blocks.
  EXPECT_TRUE(contains(error_message<ValueError>(
                           [&] { cast_for_gemm(random_array({40, 64}, 1), MXFP8BlockScaling{}); }),
                       "multiple of the block size 32"));
  EXPECT_THROW(cast_for_gemm(Array::zeros(DType::kI32, {4, 32}), MXFP8BlockScaling{}), TypeError);
}

}  // namespace
}  // namespace breccia
