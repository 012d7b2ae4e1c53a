// The fast CPU kernels against the reference kernels, byte for byte: every recipe, both axes,
// fp32/bf16/fp16/fp64 input, the shape grid with edge blocks, special-value fills, strided and
// batched input, 1, 2 and several threads, and every SIMD element encoder against its scalar
// rule on every rounding boundary.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"
#include "breccia/ops.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/rules/tile.hpp"
#include "kernel_cases.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using kernel_cases::all_recipes;
using kernel_cases::converted;
using kernel_cases::Fill;
using kernel_cases::kDtypes;
using kernel_cases::kShapes;
using kernel_cases::make_input;
using kernel_cases::mismatched_bytes;

constexpr Context kReference{.kernels = KernelPreference::kReference};

// NaN-aware equality: the bit patterns.
std::vector<std::uint32_t> bits_of(const std::vector<float>& values) {
  std::vector<std::uint32_t> bits;
  for (const float v : values) bits.push_back(std::bit_cast<std::uint32_t>(v));
  return bits;
}

// Restores the thread count a test changed.
class CpuKernels : public ::testing::Test {
 protected:
  void TearDown() override { kernels::cpu::set_num_threads(threads_); }
  const int threads_ = kernels::cpu::num_threads();

  // Casts x with both kernels and compares every output byte, then dequantizes both ways into
  // every output dtype. False when the recipe does not take the shape.
  bool check(const Array& x, const Recipe& recipe, int axis) {
    std::optional<ScaledTensor> reference;
    try {
      reference.emplace(cast(x, recipe, {.axis = axis, .context = kReference}));
    } catch (const ValueError&) {
      return false;
    }
    const ScaledTensor& want = *reference;
    const ScaledTensor got = cast(x, recipe, {.axis = axis, .context = {}});
    EXPECT_EQ(mismatched_bytes(got.data(), want.data()), 0) << "data";
    EXPECT_EQ(mismatched_bytes(got.scale(), want.scale()), 0) << "scale";
    if (want.global_scale()) {
      EXPECT_EQ(mismatched_bytes(*got.global_scale(), *want.global_scale()), 0) << "global_scale";
    }
    if (want.zero_point()) {
      EXPECT_EQ(mismatched_bytes(*got.zero_point(), *want.zero_point()), 0) << "zero_point";
    }
    for (DType out : {DType::kF32, DType::kBF16, DType::kF16, DType::kF64}) {
      EXPECT_EQ(mismatched_bytes(dequantize(got, out), dequantize(want, out, kReference)), 0)
          << "dequantize to " << dtype_name(out);
    }
    return true;
  }

  int sweep(Fill fill) {
    int checked = 0;
    std::uint32_t seed = 1;
    for (const Shape& shape : kShapes) {
      for (DType dtype : kDtypes) {
        const Array x = converted(make_input(shape, fill, seed++), dtype);
        for (const Recipe& recipe : all_recipes()) {
          for (int axis : {-1, -2}) {
            SCOPED_TRACE(recipe_repr(recipe) + " axis=" + std::to_string(axis) +
                         " shape=" + shape_str(shape) + " dtype=" + std::string(dtype_name(dtype)));
            checked += check(x, recipe, axis) ? 1 : 0;
            if (HasFailure()) return checked;
          }
        }
      }
    }
    return checked;
  }
};

TEST_F(CpuKernels, MatchesReferenceOnShapeGrid) {
  EXPECT_GT(sweep(Fill::kRandom), 200);
}

TEST_F(CpuKernels, MatchesReferenceOnSpecialValues) {
  EXPECT_GT(sweep(Fill::kSpecial), 200);
}

// Every element code of every recipe (all byte values for the 8-bit and packed 4-bit
// formats, all 64 codes for FP6), scaled as a cast of real data scales it, dequantizes to the
// reference's bits: the SIMD decoders' subnormal, NaN and infinity codes included.
TEST_F(CpuKernels, EveryElementCodeDequantizesLikeTheReference) {
  const Array x = make_input({32, 512}, Fill::kRandom, 11);
  for (const Recipe& recipe : all_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    ScaledTensor scaled = cast(x, recipe, {.context = kReference});
    const ElementFormat element = scaled.spec().element;
    const int codes = is_packed(element) ? 256 : 1 << element_bits(element);
    auto* bytes = scaled.data().data_as<std::uint8_t>();
    for (std::int64_t i = 0; i < scaled.data().nbytes(); ++i) {
      bytes[i] = static_cast<std::uint8_t>((i * 7) % codes);  // every code, under many scales
    }
    for (DType out : {DType::kF32, DType::kBF16, DType::kF16}) {
      EXPECT_EQ(mismatched_bytes(dequantize(scaled, out), dequantize(scaled, out, kReference)), 0)
          << "dequantize to " << dtype_name(out);
    }
  }
}

TEST_F(CpuKernels, MatchesReferenceWithOneTwoAndSeveralThreads) {
  const Array x = make_input({256, 1024}, Fill::kSpecial, 7);
  for (int threads : {1, 2, 3, 8}) {
    kernels::cpu::set_num_threads(threads);
    int checked = 0;
    for (const Recipe& recipe : all_recipes()) {
      for (int axis : {-1, -2}) {
        SCOPED_TRACE(recipe_repr(recipe) + " threads=" + std::to_string(threads));
        checked += check(x, recipe, axis) ? 1 : 0;
      }
    }
    EXPECT_GE(checked, 2 * static_cast<int>(all_recipes().size()) - 1);  // per-channel: one axis
  }
}

// A row longer than one work unit (32768 fp32) and a 1-D tensor, so units split rows.
TEST_F(CpuKernels, MatchesReferenceOnLongRows) {
  for (const Shape& shape : {Shape{2, 40960}, Shape{81920}}) {
    const Array x = make_input(shape, Fill::kRandom, 11);
    for (const Recipe& recipe : all_recipes()) {
      SCOPED_TRACE(recipe_repr(recipe) + " shape=" + shape_str(shape));
      check(x, recipe, -1);
    }
  }
}

// linear(x, w) on the CPU against the exact product of x and dequantize(w): within
// gamma_K * sum_k |x_k w_k| (gamma_K = K u / (1 - K u), u = 2^-24), and NaN or infinite exactly
// where the exact product is.
void expect_within_summation_bound(const Array& x, const ScaledTensor& w) {
  const Array w32 = dequantize(w, DType::kF32);  // (N, K)
  const float* wv = w32.data_as<const float>();
  const Array got = linear(x, w, std::nullopt, DType::kF32);
  const std::int64_t m = x.shape()[0], k = x.shape()[1], n = w32.shape()[0];
  const float* xv = x.data_as<const float>();
  const float* out = got.data_as<const float>();
  const double unit = std::ldexp(1.0, -24);
  const double gamma = static_cast<double>(k) * unit / (1 - static_cast<double>(k) * unit);
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t c = 0; c < n; ++c) {
      double exact = 0, magnitude = 0;
      for (std::int64_t i = 0; i < k; ++i) {
        const double product = static_cast<double>(xv[r * k + i]) * wv[c * k + i];
        exact += product;
        magnitude += std::fabs(product);
      }
      const double value = out[r * n + c];
      // Partial sums beyond fp32's range overflow in any order; nothing to bound.
      if (magnitude > 1e38) continue;
      if (std::isnan(exact) || std::isinf(exact)) {
        ASSERT_EQ(std::isnan(value), std::isnan(exact)) << "row " << r << " col " << c;
        if (std::isinf(exact)) ASSERT_EQ(value, exact) << "row " << r << " col " << c;
        continue;
      }
      ASSERT_LE(std::fabs(value - exact), gamma * magnitude + 1e-45) << "row " << r << " col " << c;
    }
  }
}

// linear() for up to 16 rows decodes the weight in registers instead of dequantizing it: the
// weight values are dequantize()'s, only the order of the fp32 sums differs from the BLAS, so
// each output is within gamma_K * sum_k |x_k w_k| (gamma_K = K u / (1 - K u), u = 2^-24) of
// the exact product, and NaN or infinite exactly where the exact product is. Every recipe,
// weights blocked along K (axis -1) and along N (axis -2), K with tails shorter than a vector,
// weights with special values, 1, 2 and 3 threads. INT4 in groups of 16 beside NVFP4: with 16
// fp32 lanes a vector of 4-bit codes spans two such blocks, with and without zero points.
TEST_F(CpuKernels, DecodingLinearIsWithinTheFp32SummationBoundOfTheDequantizedProduct) {
  int checked = 0;
  std::uint32_t seed = 100;
  std::vector<Recipe> recipes = all_recipes();
  recipes.push_back(INT4Scaling{16, false, Int4ScaleDType::kF32});
  recipes.push_back(INT4Scaling{16, true, Int4ScaleDType::kBF16});
  for (int threads : {1, 2, 3}) {
    kernels::cpu::set_num_threads(threads);
    for (const Shape& w_shape : {Shape{127, 4096}, Shape{160, 416}, Shape{32, 6}, Shape{384, 200},
                                 Shape{16, 48}, Shape{1, 32}}) {
      for (const Fill fill : {Fill::kRandom, Fill::kSpecial}) {
        const Array w_values = make_input(w_shape, fill, seed++);
        for (const Recipe& recipe : recipes) {
          for (int axis : {-1, -2}) {
            std::optional<ScaledTensor> w;
            try {
              w.emplace(cast(w_values, recipe, {.axis = axis}));
            } catch (const ValueError&) {
              continue;  // the recipe does not take the shape
            }
            for (std::int64_t m : {1, 5, 16}) {
              SCOPED_TRACE(recipe_repr(recipe) + " axis=" + std::to_string(axis) +
                           " w=" + shape_str(w_shape) + " M=" + std::to_string(m) +
                           " threads=" + std::to_string(threads));
              expect_within_summation_bound(make_input({m, w_shape[1]}, Fill::kRandom, seed++), *w);
              ++checked;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 300);
}

// The 4-bit paths that depend on the vector width (E2M1 decoded by a lane permute from 8 lanes
// up, blocks of half a vector paired at 16 lanes) on every SIMD target this machine runs, not
// only the best: dequantize bit for bit against the reference, linear within the bound.
TEST_F(CpuKernels, FourBitDecodingMatchesOnEverySimdTarget) {
  const std::vector<Recipe> recipes = {NVFP4BlockScaling{}, MXFP4BlockScaling{},
                                       INT4Scaling{16, false, Int4ScaleDType::kF32}};
  int targets = 0;
  for (std::int64_t rest = hwy::SupportedTargets() & HWY_TARGETS; rest != 0; rest &= rest - 1) {
    const std::int64_t target = rest & -rest;
    hwy::SetSupportedTargetsForTest(target);
    ++targets;
    for (const Shape& w_shape : {Shape{16, 416}, Shape{8, 4096}}) {
      const Array w_values = make_input(w_shape, Fill::kSpecial, 7);
      for (const Recipe& recipe : recipes) {
        SCOPED_TRACE(recipe_repr(recipe) + " target=" + hwy::TargetName(target) +
                     " w=" + shape_str(w_shape));
        const ScaledTensor w = cast(w_values, recipe);
        EXPECT_EQ(
            mismatched_bytes(dequantize(w, DType::kF32), dequantize(w, DType::kF32, kReference)),
            0);
        for (std::int64_t m : {1, 5}) {
          expect_within_summation_bound(make_input({m, w_shape[1]}, Fill::kRandom, 8), w);
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to every target the machine has
  EXPECT_GT(targets, 0);
}

// Weights near fp32's largest value (block factors of 2^119 and more) and tiny activations:
// no intermediate of the decoding kernel may overflow where the exact product does not.
TEST_F(CpuKernels, DecodingLinearOfFp8WeightsNearTheFp32RangeStaysWithinTheBound) {
  const std::int64_t n = 8, k = 256;
  Array w = Array::empty(DType::kF32, {n, k});
  Array x = Array::empty(DType::kF32, {1, k});
  std::mt19937 random(3);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (std::int64_t i = 0; i < n * k; ++i) w.data_as<float>()[i] = unit(random) * 3.3e38f;
  for (std::int64_t i = 0; i < k; ++i) x.data_as<float>()[i] = (i % 7 == 0) ? 1e-36f : 0.0f;
  for (const Recipe& recipe :
       {Recipe{Float8CurrentScaling{}}, Recipe{Float8CurrentScaling{Fp8Format::kE5M2}},
        Recipe{Float8BlockScaling{.block_m = 128, .power_2_scale = false}}}) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor q = cast(w, recipe);
    const Array w32 = dequantize(q, DType::kF32);
    const Array got = linear(x, q, std::nullopt, DType::kF32);
    for (std::int64_t c = 0; c < n; ++c) {
      double exact = 0, magnitude = 0;
      for (std::int64_t i = 0; i < k; ++i) {
        const double product = static_cast<double>(x.data_as<const float>()[i]) *
                               w32.data_as<const float>()[c * k + i];
        exact += product;
        magnitude += std::fabs(product);
      }
      const double gamma = k * std::ldexp(1.0, -24) / (1 - k * std::ldexp(1.0, -24));
      EXPECT_LE(std::fabs(got.data_as<const float>()[c] - exact), gamma * magnitude) << c;
    }
  }
}

// Freed blocks of 4 MiB and more are reused without zeroing: outputs written into poisoned
// reused memory must still be the reference's bytes (a kernel that OR-ed codes into a fresh,
// zeroed byte would fail here).
TEST_F(CpuKernels, OutputsInReusedLargeBlocksMatchTheReference) {
  const Array x = make_input({4096, 2048}, Fill::kRandom, 21);
  for (const Recipe& recipe : {Recipe{Float8BlockScaling{}}, Recipe{MXFP4BlockScaling{}},
                               Recipe{NVFP4BlockScaling{}}, Recipe{INT4Scaling{}}}) {
    SCOPED_TRACE(recipe_repr(recipe));
    for (std::int64_t megabytes : {4, 8, 32}) {  // the sizes of the outputs below, poisoned
      const Array poison = Array::empty(DType::kU8, {megabytes << 20});
      std::memset(poison.data(), 0xA5, static_cast<std::size_t>(poison.nbytes()));
    }
    const ScaledTensor got = cast(x, recipe);
    const ScaledTensor want = cast(x, recipe, {.context = kReference});
    EXPECT_EQ(mismatched_bytes(got.data(), want.data()), 0) << "data";
    EXPECT_EQ(mismatched_bytes(got.scale(), want.scale()), 0) << "scale";
    EXPECT_EQ(
        mismatched_bytes(dequantize(got, DType::kF32), dequantize(want, DType::kF32, kReference)),
        0);
  }
}

TEST_F(CpuKernels, StridedInputMatchesItsContiguousCopy) {
  const Array base = make_input({256, 64}, Fill::kRandom, 5);
  // The transpose: a (64, 256) view with strides (1, 64).
  const Array view =
      Array::borrow(base.data(), DType::kF32, {64, 256}, {1, 64}, base.device(), base.owner());
  for (const Recipe& recipe : all_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor from_view = cast(view, recipe);
    const ScaledTensor from_copy = cast(view.contiguous(), recipe, {.context = kReference});
    EXPECT_EQ(mismatched_bytes(from_view.data(), from_copy.data()), 0);
    EXPECT_EQ(mismatched_bytes(from_view.scale(), from_copy.scale()), 0);
  }
}

TEST_F(CpuKernels, DelayedScalingStateAdvancesAsWithTheReference) {
  for (std::int64_t margin : {0, 3, 32}) {
    const DelayedScaling recipe{Fp8Format::kE4M3, 4, margin};
    DelayedScalingState fast(recipe), reference(recipe);
    for (int step = 0; step < 6; ++step) {
      const Array x = make_input({32, 256}, step == 3 ? Fill::kSpecial : Fill::kRandom, 30 + step);
      const ScaledTensor got = cast(x, recipe, {.state = &fast, .context = {}});
      const ScaledTensor want = cast(x, recipe, {.state = &reference, .context = kReference});
      EXPECT_EQ(mismatched_bytes(got.data(), want.data()), 0) << "step " << step;
      EXPECT_EQ(mismatched_bytes(got.scale(), want.scale()), 0) << "step " << step;
      EXPECT_EQ(bits_of(fast.amax_history()), bits_of(reference.amax_history()));
      EXPECT_EQ(std::bit_cast<std::uint32_t>(fast.encode_scale()),
                std::bit_cast<std::uint32_t>(reference.encode_scale()));
    }
  }
}

// A given tensor amax (a fused projection's shared one) replaces x's own in NVFP4's global
// scale: both kernels agree byte for byte; x's own amax gives the plain cast's bytes; a larger
// one gives the global scale of a tensor with that amax. amax() is the cast's statistic.
TEST_F(CpuKernels, Nvfp4CastWithAGivenTensorAmaxMatchesTheReference) {
  const Array x = make_input({64, 256}, Fill::kRandom, 77);
  for (const Recipe recipe :
       {Recipe{NVFP4BlockScaling{}}, Recipe{NVFP4BlockScaling{.two_d = true}}}) {
    const float own = kernels::cpu::amax(x);
    const ScaledTensor plain = cast(x, recipe);
    const ScaledTensor same = cast(x, recipe, {.tensor_amax = own});
    EXPECT_EQ(mismatched_bytes(same.data(), plain.data()), 0);
    EXPECT_EQ(mismatched_bytes(same.scale(), plain.scale()), 0);
    EXPECT_EQ(mismatched_bytes(*same.global_scale(), *plain.global_scale()), 0);

    const float shared = own * 3.5f;
    Array scaled_up = Array::zeros(DType::kF32, {1, 16});  // a tensor whose amax is `shared`
    scaled_up.data_as<float>()[0] = shared;
    const ScaledTensor got = cast(x, recipe, {.context = {}, .tensor_amax = shared});
    const ScaledTensor want = cast(x, recipe, {.context = kReference, .tensor_amax = shared});
    EXPECT_EQ(mismatched_bytes(got.data(), want.data()), 0);
    EXPECT_EQ(mismatched_bytes(got.scale(), want.scale()), 0);
    EXPECT_EQ(mismatched_bytes(*got.global_scale(), *want.global_scale()), 0);
    EXPECT_EQ(mismatched_bytes(*got.global_scale(), *cast(scaled_up, recipe).global_scale()), 0);
  }
  EXPECT_TRUE(test_support::contains(test_support::error_message<ValueError>([&] {
                                       cast(x, MXFP4BlockScaling{}, {.tensor_amax = 1.0f});
                                     }),
                                     "tensor_amax: only NVFP4's global scale"));
  Array with_nan = make_input({4, 64}, Fill::kRandom, 5);
  with_nan.data_as<float>()[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(kernels::cpu::amax(with_nan)));
  EXPECT_EQ(kernels::cpu::amax(converted(x, DType::kBF16)),
            kernels::cpu::amax(converted(converted(x, DType::kBF16), DType::kF32)));
}

// fp32 values around every rounding boundary of the element formats: each bit pattern with a
// 2^16 stride, plus every pattern whose low 16 bits are within 2 of a multiple of 2^k (the
// ties and their neighbours for every mantissa width), and the specials.
std::vector<float> boundary_values() {
  std::vector<float> values;
  for (std::uint64_t high = 0; high < (1u << 16); ++high) {
    for (std::uint32_t low : {0u, 1u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) {
      values.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(high << 16) | low));
    }
    for (int k = 17; k < 23; ++k) {  // ties below the 16-bit boundary, for 0-6 mantissa bits
      const std::uint32_t bits = static_cast<std::uint32_t>(high << 16) & ~((1u << k) - 1);
      for (std::uint32_t delta : {0u, 1u, 2u}) {
        values.push_back(std::bit_cast<float>((bits | (1u << (k - 1))) + delta));
        values.push_back(std::bit_cast<float>((bits | (1u << (k - 1))) - delta));
      }
    }
  }
  return values;
}

// The scalar rule's code (rules/tile.hpp) for a value already multiplied by its scale.
std::uint8_t scalar_code(ElementFormat format, float value) {
  switch (format) {
    case ElementFormat::kE4M3:
      return rules::encode_element<ElementFormat::kE4M3>(value);
    case ElementFormat::kE5M2:
      return rules::encode_element<ElementFormat::kE5M2>(value);
    case ElementFormat::kE2M3:
      return rules::encode_element<ElementFormat::kE2M3>(value);
    case ElementFormat::kE3M2:
      return rules::encode_element<ElementFormat::kE3M2>(value);
    default:
      return rules::encode_element<ElementFormat::kE2M1>(value);
  }
}

TEST(CpuEncoders, EveryFloatEncoderMatchesItsScalarRuleOnRoundingBoundaries) {
  const std::vector<float> values = boundary_values();
  std::vector<std::uint8_t> codes(values.size());
  for (ElementFormat format : {ElementFormat::kE4M3, ElementFormat::kE5M2, ElementFormat::kE2M3,
                               ElementFormat::kE3M2, ElementFormat::kE2M1}) {
    kernels::cpu::encode_elements(format, values, codes);
    std::int64_t wrong = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::uint8_t want = scalar_code(format, values[i]);
      if (codes[i] != want && wrong++ < 5) {
        ADD_FAILURE() << to_string(format) << ": 0x" << std::hex
                      << std::bit_cast<std::uint32_t>(values[i]) << " -> 0x" << +codes[i]
                      << ", want 0x" << +want;
      }
    }
    EXPECT_EQ(wrong, 0) << to_string(format) << " of " << values.size();
  }
}

TEST(CpuEncoders, RefuseFormatsWithoutAFloatEncoderAndMismatchedSizes) {
  std::vector<float> values(4);
  std::vector<std::uint8_t> codes(3);
  EXPECT_TRUE(test_support::contains(test_support::error_message<ValueError>([&] {
                                       kernels::cpu::encode_elements(ElementFormat::kE4M3, values,
                                                                     codes);
                                     }),
                                     "codes: expected 4 entries"));
  codes.resize(4);
  EXPECT_TRUE(test_support::contains(test_support::error_message<ValueError>([&] {
                                       kernels::cpu::encode_elements(ElementFormat::kInt4Signed,
                                                                     values, codes);
                                     }),
                                     "format"));
}

TEST_F(CpuKernels, ThreadCountMustBePositive) {
  EXPECT_TRUE(test_support::contains(
      test_support::error_message<ValueError>([] { kernels::cpu::set_num_threads(0); }),
      "expected at least 1, got 0"));
}

TEST_F(CpuKernels, NamesTheInstructionSetItRuns) {
  EXPECT_FALSE(kernels::cpu::simd_target().empty());
}

}  // namespace
}  // namespace breccia
