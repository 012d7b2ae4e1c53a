// transpose (a view for one-byte formats, repacked codes for packed 4-bit ones) and linear
// (x @ dequantize(w)^T + bias for a weight stored (N, K)), on every recipe.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "breccia/recipe_spec.hpp"
#include "kernel_cases.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using kernel_cases::all_recipes;
using kernel_cases::Fill;
using kernel_cases::make_input;
using test_support::contains;
using test_support::error_message;

// A recipe's ScaledTensor of (rows, cols), blocked along the last axis; per-channel FP8 too.
ScaledTensor quantized(const Recipe& recipe, std::int64_t rows, std::int64_t cols, unsigned seed) {
  return cast(make_input({rows, cols}, Fill::kRandom, seed), recipe);
}

// The fp32 values of a 2-D array, transposed (read through its strides).
std::vector<float> transposed_values(const Array& values) {
  const Array x = values.contiguous();
  const std::int64_t rows = x.shape()[0], cols = x.shape()[1];
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      out[c * rows + r] = x.data_as<const float>()[r * cols + c];
  return out;
}

bool same_bits(const Array& got, const std::vector<float>& want) {
  const Array c = got.contiguous();
  return c.numel() == static_cast<std::int64_t>(want.size()) &&
         std::memcmp(c.data(), want.data(), want.size() * sizeof(float)) == 0;
}

// Every recipe whose cast has a transposed form (not INT4's one group per row: PerChannel).
std::vector<Recipe> transposable_recipes() {
  std::vector<Recipe> recipes;
  for (const Recipe& recipe : all_recipes()) {
    if (spec_of(recipe).columnwise_layout) recipes.push_back(recipe);
  }
  return recipes;
}

TEST(Transpose, DequantizesToTheTransposeOfEveryRecipeExactly) {
  for (const Recipe& recipe : transposable_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor x = quantized(recipe, 256, 384, 7);
    const ScaledTensor t = transpose(x);
    EXPECT_EQ(t.logical_shape(), (Shape{384, 256}));
    EXPECT_TRUE(same_bits(dequantize(t), transposed_values(dequantize(x))));
    // Twice is the original tensor, layout and values.
    const ScaledTensor back = transpose(t);
    EXPECT_EQ(back.layout(), x.layout());
    EXPECT_TRUE(same_bits(dequantize(back), transposed_values(dequantize(t))));
  }
}

TEST(Transpose, IsAViewForOneByteFormatsAndACopyForPackedOnes) {
  for (const Recipe& recipe : transposable_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor x = quantized(recipe, 64, 128, 3);
    const ScaledTensor t = transpose(x);
    if (x.spec().packed) {
      EXPECT_NE(t.data().data(), x.data().data());
      EXPECT_TRUE(t.data().is_contiguous());
    } else {
      EXPECT_EQ(t.data().data(), x.data().data());
      EXPECT_EQ(t.data().strides(), (Strides{1, 128}));
    }
    if (x.scale().ndim() == 2) EXPECT_EQ(t.scale().data(), x.scale().data());
  }
}

TEST(Transpose, SwapsTheLayoutsBlockShape) {
  const ScaledTensor rowwise = quantized(Float8BlockScaling{}, 256, 256, 1);
  EXPECT_EQ(transpose(rowwise).layout(), (Layout{PerBlockMN{128, 1}}));
  const ScaledTensor tiles =
      quantized(Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true}, 256, 256, 1);
  EXPECT_EQ(transpose(tiles).layout(), tiles.layout());
  const ScaledTensor nvfp4 = quantized(NVFP4BlockScaling{}, 32, 64, 1);
  EXPECT_EQ(transpose(nvfp4).layout(), (Layout{PerBlockMN{16, 1}}));
}

TEST(Transpose, RefusesWhatHasNoTransposedForm) {
  // Packed codes need an even count along the new last axis.
  const ScaledTensor odd = quantized(MXFP4BlockScaling{}, 3, 64, 1);
  EXPECT_TRUE(contains(error_message<ValueError>([&] { transpose(odd); }),
                       "needs an even last dim after the transpose"));
  // One scale per row (torchao's row-wise FP8) has no layout once rows become columns.
  const ScaledTensor per_channel =
      from_buffer(Array::zeros(DType::kE4M3, {8, 16}), Array::zeros(DType::kF32, {8}),
                  Float8CurrentScaling{}, PerChannel{});
  ASSERT_TRUE(std::holds_alternative<PerChannel>(per_channel.layout()));
  EXPECT_TRUE(
      contains(error_message<UnsupportedError>([&] { transpose(per_channel); }), "PerChannel"));
}

// x @ w^T in double from the dequantized operands, and the sum of the products' magnitudes
// (what an fp32 GEMM's rounding error scales with).
struct Product {
  std::vector<double> value;
  std::vector<double> magnitude;
};

Product product_with_transposed(const Array& x32, const Array& w32) {
  const std::int64_t m = x32.shape()[0], k = x32.shape()[1], n = w32.shape()[0];
  Product out{std::vector<double>(static_cast<std::size_t>(m * n)),
              std::vector<double>(static_cast<std::size_t>(m * n))};
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0, magnitude = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double term =
            double(x32.data_as<const float>()[i * k + p]) * w32.data_as<const float>()[j * k + p];
        sum += term;
        magnitude += std::abs(term);
      }
      out.value[i * n + j] = sum;
      out.magnitude[i * n + j] = magnitude;
    }
  }
  return out;
}

void expect_close(const Array& got, const Product& want) {
  ASSERT_EQ(got.numel(), static_cast<std::int64_t>(want.value.size()));
  for (std::size_t i = 0; i < want.value.size(); ++i) {
    const double value = got.data_as<const float>()[i];
    if (std::isnan(want.value[i])) {
      EXPECT_TRUE(std::isnan(value)) << i;
    } else {
      EXPECT_NEAR(value, want.value[i], 1e-5 * want.magnitude[i] + 1e-30) << i;
    }
  }
}

TEST(Linear, IsTheProductWithTheDequantizedWeightTransposedForEveryRecipe) {
  const Array x = make_input({5, 256}, Fill::kRandom, 11);
  for (const Recipe& recipe : all_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor w = quantized(recipe, 96, 256, 12);  // (N, K), blocked along K
    const Array out = linear(x, w);
    ASSERT_EQ(out.shape(), (Shape{5, 96}));
    expect_close(out, product_with_transposed(x, dequantize(w)));
  }
}

TEST(Linear, AddsTheBiasInFp32AndRoundsOnce) {
  const ScaledTensor x = quantized(MXFP8BlockScaling{}, 4, 64, 1);
  const ScaledTensor w = quantized(NVFP4BlockScaling{}, 48, 64, 2);
  Array bias = make_input({48}, Fill::kRandom, 3);
  const Array plain = linear(x, w);
  const Array with_bias = linear(x, w, bias);
  const Array rounded = linear(x, w, bias, DType::kBF16);
  Array expected32 = Array::empty(DType::kF32, {4, 48});
  for (std::int64_t i = 0; i < 4 * 48; ++i) {
    expected32.data_as<float>()[i] =
        plain.data_as<const float>()[i] + bias.data_as<const float>()[i % 48];
  }
  EXPECT_EQ(std::memcmp(with_bias.data(), expected32.data(), 4 * 48 * sizeof(float)), 0);
  Array expected16 = Array::empty(DType::kBF16, {4, 48});
  kernels::reference::convert(expected32, expected16);
  EXPECT_EQ(std::memcmp(rounded.data(), expected16.data(), 4 * 48 * 2), 0);
}

TEST(Linear, TakesLeadingDimsOfXAndPlainWeights) {
  const Array x = make_input({2, 3, 32}, Fill::kRandom, 5);
  const Array w = make_input({8, 32}, Fill::kRandom, 6);
  const Array out = linear(x, w);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 8}));
  expect_close(out, product_with_transposed(x.reshaped({6, 32}), w));
}

TEST(Linear, NamesTheArgumentThatDoesNotFit) {
  const Array x = make_input({4, 32}, Fill::kRandom, 1);
  const Array w = make_input({8, 32}, Fill::kRandom, 2);
  EXPECT_TRUE(
      contains(error_message<ValueError>([&] { linear(x, make_input({32, 8}, Fill::kRandom, 3)); }),
               "linear: x's last dimension (K=32"));
  EXPECT_TRUE(contains(
      error_message<ValueError>([&] { linear(x, make_input({2, 8, 32}, Fill::kRandom, 3)); }),
      "w: expected a 2-D weight of shape (N, K)"));
  EXPECT_TRUE(
      contains(error_message<ValueError>([&] { linear(x, w, make_input({32}, Fill::kRandom, 4)); }),
               "bias: expected shape (N,) = (8,), got (32,)"));
  EXPECT_TRUE(
      contains(error_message<TypeError>([&] { linear(x, w, Array::zeros(DType::kU8, {8})); }),
               "bias: expected a float32"));
}

}  // namespace
}  // namespace breccia
