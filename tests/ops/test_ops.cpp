// The operations' contracts beyond the recipe bytes (which tests/reference checks): argument
// errors, strided inputs, matmul against a double-precision product of the dequantized
// operands, requantize and from_buffer.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/ops.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

Array random_array(const Shape& shape, unsigned seed, float spread = 3.0f) {
  Array x = Array::empty(DType::kF32, shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = normal(rng);
  return x;
}

std::vector<std::uint8_t> bytes_of(const Array& a) {
  const Array c = a.contiguous();
  const auto* p = static_cast<const std::uint8_t*>(c.data());
  return {p, p + c.nbytes()};
}

using ::breccia::test_support::contains;
using ::breccia::test_support::error_message;

// Plain (batch, M, K) x (batch, K, N) product in double, with NumPy batch broadcasting, for
// operands given as fp32 values in row-major order.
std::vector<double> reference_product(const Array& a, const Array& b, const Shape& out_shape) {
  const auto m = a.shape()[a.ndim() - 2], k = a.shape()[a.ndim() - 1];
  const auto n = b.shape()[b.ndim() - 1];
  const std::int64_t batches = checked_numel(out_shape) / (m * n);
  const std::int64_t a_batches = a.numel() / (m * k), b_batches = b.numel() / (k * n);
  std::vector<double> out(static_cast<std::size_t>(batches * m * n), 0.0);
  for (std::int64_t t = 0; t < batches; ++t) {
    // Only broadcasting of a whole operand (batch 1) or equal batches is used below.
    const float* pa = a.data_as<const float>() + (a_batches == 1 ? 0 : t) * m * k;
    const float* pb = b.data_as<const float>() + (b_batches == 1 ? 0 : t) * k * n;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (std::int64_t p = 0; p < k; ++p) sum += double(pa[i * k + p]) * pb[p * n + j];
        out[(t * m + i) * n + j] = sum;
      }
  }
  return out;
}

void expect_close(const Array& got, const std::vector<double>& want) {
  ASSERT_EQ(got.numel(), static_cast<std::int64_t>(want.size()));
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got.data_as<const float>()[i], want[i], 1e-4 * (1 + std::abs(want[i]))) << i;
  }
}

TEST(Cast, RejectsNonFloatInput) {
  const Array x = Array::zeros(DType::kU8, {4, 32});
  const std::string message = error_message<TypeError>([&] { cast(x, Float8CurrentScaling{}); });
  EXPECT_TRUE(contains(message, "x:")) << message;
  EXPECT_TRUE(contains(message, "uint8")) << message;
}

TEST(Cast, RejectsBlockNotDividingTheBlockedAxis) {
  const Array x = random_array({4, 48}, 1);
  const std::string message = error_message<ValueError>([&] { cast(x, MXFP8BlockScaling{}); });
  EXPECT_TRUE(contains(message, "multiple of the block size 32")) << message;
  EXPECT_TRUE(contains(message, "(4, 48)")) << message;
  // Along axis -2 it is the second-to-last dim that must divide.
  EXPECT_NO_THROW(cast(random_array({64, 48}, 1), MXFP8BlockScaling{}, {.axis = -2}));
  EXPECT_THROW(cast(random_array({48, 64}, 1), MXFP8BlockScaling{}, {.axis = -2}), ValueError);
}

TEST(Cast, RejectsOddPackedDimensionAndTooFewDims) {
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         cast(random_array({16, 31}, 2), INT4Scaling{.group_size = 31});
                       }),
                       "must be even"));
  EXPECT_TRUE(
      contains(error_message<ValueError>([] { cast(random_array({64}, 2), MXFP8BlockScaling{}); }),
               "x.ndim >= 2"));
  EXPECT_NO_THROW(cast(random_array({64}, 2), Float8CurrentScaling{}));  // per-tensor: 1-D is fine
}

TEST(Cast, RejectsBadAxisAndMismatchedState) {
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         cast(random_array({2, 32, 32}, 3), MXFP8BlockScaling{}, {.axis = 0});
                       }),
                       "axis"));
  DelayedScalingState state(DelayedScaling{.amax_history_len = 4});
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         cast(random_array({8}, 3), DelayedScaling{}, {.state = &state});
                       }),
                       "state"));
  EXPECT_THROW(cast(random_array({8}, 3), Float8CurrentScaling{}, {.state = &state}), ValueError);
}

TEST(Cast, InvalidRecipeIsRejectedAtTheOp) {
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         cast(random_array({4, 64}, 4), MXFP8BlockScaling{.block_size = 16});
                       }),
                       "block_size"));
}

TEST(Cast, StridedInputGivesTheSameBytesAsItsContiguousCopy) {
  // A transposed view: the cast must read through the strides, never misread the memory.
  const Array base = random_array({64, 96}, 5);
  const Array transposed =
      Array::borrow(base.data(), DType::kF32, {96, 64}, {1, 96}, Device::cpu(), base.owner());
  ASSERT_FALSE(transposed.is_contiguous());
  for (const Recipe& recipe :
       {Recipe{Float8BlockScaling{.block_k = 32}}, Recipe{NVFP4BlockScaling{}},
        Recipe{INT4Scaling{.group_size = 32, .is_signed = false}}}) {
    const ScaledTensor strided = cast(transposed, recipe);
    const ScaledTensor packed = cast(transposed.contiguous(), recipe);
    EXPECT_EQ(bytes_of(strided.data()), bytes_of(packed.data())) << recipe_repr(recipe);
    EXPECT_EQ(bytes_of(strided.scale()), bytes_of(packed.scale())) << recipe_repr(recipe);
  }
}

TEST(Cast, DeviceArraysAreNotCopiedToTheHost) {
  // Host memory labelled cuda:0: whatever the build, the op must refuse rather than read it as
  // host data (no CUDA kernels: UnsupportedError; with them: no device allocator given).
  const Array host = random_array({4, 32}, 6);
  const Array on_gpu =
      Array::borrow(host.data(), DType::kF32, host.shape(), {}, Device::cuda(0), host.owner());
  try {
    cast(on_gpu, Float8CurrentScaling{});
    ADD_FAILURE() << "cast read device memory as host memory";
  } catch (const std::exception& error) {
    EXPECT_TRUE(contains(error.what(), "cuda:0"));
  }
}

TEST(Dequantize, RejectsNonFloatOutput) {
  const ScaledTensor st = cast(random_array({4, 32}, 7), Float8CurrentScaling{});
  EXPECT_THROW(dequantize(st, DType::kU8), TypeError);
}

TEST(Matmul, MatchesTheProductOfTheDequantizedOperands) {
  const Array a = random_array({3, 16, 64}, 8);
  const Array b = random_array({3, 64, 24}, 9);
  const ScaledTensor qa = cast(a, MXFP8BlockScaling{});
  const ScaledTensor qb = cast(b, NVFP4BlockScaling{}, {.axis = -2});
  const Array out = matmul(qa, qb);
  EXPECT_EQ(out.shape(), (Shape{3, 16, 24}));
  expect_close(out, reference_product(dequantize(qa), dequantize(qb), out.shape()));
}

TEST(Matmul, BroadcastsBatchDimsAndAcceptsPlainOperands) {
  const Array a = random_array({2, 3, 8, 32}, 10);
  const Array w = random_array({32, 16}, 11);
  const ScaledTensor qw = cast(w, INT4Scaling{.group_size = 32}, {.axis = -2});
  const Array out = matmul(a, qw);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 8, 16}));
  expect_close(out, reference_product(a, dequantize(qw), out.shape()));
}

TEST(Matmul, RoundsToTheRequestedOutputDtype) {
  const Array a = random_array({4, 32}, 12);
  const Array b = random_array({32, 8}, 13);
  const Array f32 = matmul(a, b);
  const Array bf16 = matmul(a, b, DType::kBF16);
  ASSERT_EQ(bf16.dtype(), DType::kBF16);
  for (std::int64_t i = 0; i < f32.numel(); ++i) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f32.data_as<float>()[i]);
    // Round to nearest even on the top 16 bits (no NaN or overflow here).
    const std::uint32_t rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
    EXPECT_EQ(bf16.data_as<std::uint16_t>()[i], rounded) << i;
  }
}

TEST(Matmul, RejectsMismatchedShapesDtypesAndDevices) {
  const Array a = random_array({4, 32}, 14);
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         matmul(a, random_array({16, 8}, 15));
                       }),
                       "K=32"));
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         matmul(random_array({2, 4, 32}, 1), random_array({3, 32, 8}, 1));
                       }),
                       "broadcast"));
  EXPECT_THROW(matmul(random_array({32}, 1), random_array({32, 8}, 1)), ValueError);
  EXPECT_THROW(matmul(Array::zeros(DType::kI32, {4, 32}), random_array({32, 8}, 1)), TypeError);
  const Array on_gpu =
      Array::borrow(a.data(), DType::kF32, {32, 4}, {}, Device::cuda(0), a.owner());
  EXPECT_THROW(matmul(a, on_gpu), DeviceError);
}

TEST(Requantize, SameRecipeKeepsTheBytesAndOtherRecipesEqualCastOfDequantize) {
  const Array x = random_array({8, 64}, 16);
  const ScaledTensor st = cast(x, Float8CurrentScaling{});
  const ScaledTensor same = requantize(st, Float8CurrentScaling{});
  EXPECT_EQ(same.data().data(), st.data().data());

  const ScaledTensor mx = requantize(st, MXFP8BlockScaling{});
  const ScaledTensor expected = cast(dequantize(st), MXFP8BlockScaling{});
  EXPECT_EQ(bytes_of(mx.data()), bytes_of(expected.data()));
  EXPECT_EQ(bytes_of(mx.scale()), bytes_of(expected.scale()));
}

TEST(FromBuffer, WrapsTheBuffersWithoutCopying) {
  const ScaledTensor st = cast(random_array({4, 64}, 17), NVFP4BlockScaling{});
  const ScaledTensor wrapped =
      from_buffer(st.data(), st.scale(), st.recipe(), st.layout(), st.global_scale(), std::nullopt);
  EXPECT_EQ(wrapped.data().data(), st.data().data());
  EXPECT_EQ(wrapped.scale().data(), st.scale().data());
  EXPECT_EQ(wrapped.global_scale()->data(), st.global_scale()->data());
  // Writing through one is visible through the other.
  st.data().data_as<std::uint8_t>()[0] = 0x5A;
  EXPECT_EQ(wrapped.data().data_as<std::uint8_t>()[0], 0x5A);
}

TEST(FromBuffer, ValidatesLikeTheConstructor) {
  const ScaledTensor st = cast(random_array({4, 64}, 18), MXFP8BlockScaling{});
  const Array wrong_scale = Array::zeros(DType::kU8, {4, 3});
  const std::string message = error_message<ValueError>(
      [&] { from_buffer(st.data(), wrong_scale, st.recipe(), st.layout()); });
  EXPECT_TRUE(contains(message, "(4, 2)")) << message;
  EXPECT_TRUE(contains(message, "(4, 3)")) << message;
}

}  // namespace
}  // namespace breccia
