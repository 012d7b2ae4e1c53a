// breccia::cast against the independent model in oracle.hpp, byte for byte: data, scale,
// global_scale and zero_point, for every recipe and option on shapes that put blocks at the
// edges, zero/NaN/inf/subnormal blocks and values on rounding midpoints.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "breccia/ops.hpp"
#include "reference/oracle.hpp"

namespace breccia {
namespace {

using oracle::checks::cast_and_compare;
using oracle::checks::compare_cast;
using oracle::checks::typed_array;
using oracle::inputs::add_special_lines;
using oracle::inputs::midpoint_line;
using oracle::inputs::random_values;

struct Case {
  Shape shape;
  int axis = -1;
};

// Random values with the special lines, under every shape of the list.
void check_recipe(const Recipe& recipe, const std::vector<Case>& cases, std::uint32_t seed) {
  for (const Case& c : cases) {
    std::vector<float> x = random_values(c.shape, seed++);
    cast_and_compare(x, c.shape, recipe, c.axis, "random");
    if (c.shape.size() >= 2) {
      add_special_lines(c.shape, x, c.axis);
      cast_and_compare(x, c.shape, recipe, c.axis, "special lines");
    }
  }
}

// Per-tensor recipes: one amax for everything, so each special case gets its own tensor.
std::vector<std::vector<float>> per_tensor_inputs(std::int64_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> inputs;
  inputs.push_back(random_values({n}, 1));
  inputs.push_back(std::vector<float>(n, 0.0f));
  auto with = [&](std::int64_t index, float value) {
    std::vector<float> x = random_values({n}, 2);
    x[index] = value;
    return x;
  };
  inputs.push_back(with(n / 2, std::numeric_limits<float>::quiet_NaN()));
  inputs.push_back(with(0, inf));
  inputs.push_back(with(n - 1, -inf));
  inputs.push_back(with(n / 3, std::numeric_limits<float>::max()));  // s_enc tiny
  std::vector<float> subnormal(n);
  for (std::int64_t i = 0; i < n; ++i)
    subnormal[i] = std::ldexp(static_cast<float>(i % 5) - 2, -149);
  inputs.push_back(subnormal);  // amax 2^-148: fmax / amax overflows to FLT_MAX
  std::vector<float> tiny = random_values({n}, 3);
  for (float& v : tiny) v = std::ldexp(v, -100);
  inputs.push_back(tiny);
  return inputs;
}

const Shape kPerTensorShapes[] = {{64}, {7}, {1}, {3, 5, 64}, {2, 33}};

TEST(CastRecipes, Float8CurrentScaling) {
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    for (bool power_2 : {false, true}) {
      const Float8CurrentScaling recipe{format, power_2};
      for (const Shape& shape : kPerTensorShapes) {
        cast_and_compare(random_values(shape, 10), shape, recipe, -1, "random");
      }
      for (const auto& x : per_tensor_inputs(96)) cast_and_compare(x, {96}, recipe, -1, "special");
      // Power-of-two scale: amax fmax/8 makes s_enc exactly 8, so these sit on midpoints.
      const float fmax = format == Fp8Format::kE4M3 ? 448.0f : 57344.0f;
      const auto& spec = format == Fp8Format::kE4M3 ? oracle::kE4M3 : oracle::kE5M2;
      for (std::int64_t offset : {0, 1, 2}) {
        const auto x = midpoint_line(spec, 300, fmax / 8, 3, offset);
        cast_and_compare(x, {3, 100}, recipe, -1, "midpoints");
      }
    }
  }
}

TEST(CastRecipes, DelayedScalingStateless) {
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    for (std::int64_t margin : {0, 1, 3}) {
      const DelayedScaling recipe{format, 16, margin};
      for (const Shape& shape : kPerTensorShapes) {
        cast_and_compare(random_values(shape, 20), shape, recipe, -1, "random");
      }
      for (const auto& x : per_tensor_inputs(64)) cast_and_compare(x, {64}, recipe, -1, "special");
    }
  }
}

// Several steps through the amax history: each cast quantizes with the previous step's scale.
TEST(CastRecipes, DelayedScalingStateOverSteps) {
  for (std::int64_t history_len : {1, 3, 16}) {
    for (std::int64_t margin : {0, 2, 32}) {  // 32: the largest margin accepted
      for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
        const DelayedScaling recipe{format, history_len, margin};
        DelayedScalingState state(recipe);
        oracle::DelayedState model{1.0f, std::vector<float>(history_len, 0.0f)};
        const Shape shape{4, 24};
        for (int step = 0; step < 12; ++step) {
          std::vector<float> x = random_values(shape, 100 + step);
          // Amax moves by binades, with an all-zero step and an inf step in the sequence.
          for (float& v : x) v = std::ldexp(v, (step * 5) % 11 - 5);
          if (step == 4) x.assign(x.size(), 0.0f);
          if (step == 7) x[5] = std::numeric_limits<float>::infinity();
          std::ostringstream what;
          what << "history " << history_len << " margin " << margin << " step " << step;
          cast_and_compare(x, shape, recipe, -1, what.str(), &state, &model);
          ASSERT_EQ(std::bit_cast<std::uint32_t>(state.encode_scale()),
                    std::bit_cast<std::uint32_t>(model.encode_scale))
              << what.str() << ": expected s_enc " << model.encode_scale << ", got "
              << state.encode_scale();
          ASSERT_EQ(state.amax_history(), model.history) << what.str();
        }
      }
    }
  }
}

TEST(CastRecipes, Float8BlockScaling) {
  const std::vector<Case> cases = {
      {{4, 256}}, {{3, 5, 128}}, {{1, 128}}, {{130, 256}}, {{2, 129, 128}}};
  std::uint32_t seed = 200;
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    for (bool power_2 : {true, false}) {
      for (std::int64_t block_m : {1, 128}) {
        const Float8BlockScaling recipe{format, 128, block_m, power_2};
        check_recipe(recipe, cases, seed);
        check_recipe(recipe, {{{256, 3}, -2}, {{2, 128, 130}, -2}}, seed + 50);
        seed += 10;
      }
    }
  }
  // Each 1x128 block anchored at fmax * 2^-k: s_enc is exactly 2^k, elements on midpoints.
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    const auto& spec = format == Fp8Format::kE4M3 ? oracle::kE4M3 : oracle::kE5M2;
    const float fmax = format == Fp8Format::kE4M3 ? 448.0f : 57344.0f;
    std::vector<float> x;
    for (int block = 0; block < 12; ++block) {
      const int k = block - 6;
      const auto line = midpoint_line(spec, 128, std::ldexp(fmax, -k), k, block);
      x.insert(x.end(), line.begin(), line.end());
    }
    cast_and_compare(x, {3, 4 * 128}, Float8BlockScaling{format}, -1, "midpoints");
  }
}

TEST(CastRecipes, MXFP8BlockScaling) {
  const std::vector<Case> rowwise = {{{3, 5, 64}}, {{2, 32}}, {{1, 96}}, {{9, 160}}};
  const std::vector<Case> columnwise = {{{64, 48}, -2}, {{2, 32, 40}, -2}, {{96, 1}, -2}};
  std::uint32_t seed = 300;
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    for (MXScaleRounding rounding : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
      const MXFP8BlockScaling recipe{format, 32, rounding};
      check_recipe(recipe, rowwise, seed);
      check_recipe(recipe, columnwise, seed + 50);
      seed += 10;
    }
  }
  // Floor rule: amax fmax * 2^j gives scale 2^j exactly, elements on midpoints.
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    const auto& spec = format == Fp8Format::kE4M3 ? oracle::kE4M3 : oracle::kE5M2;
    const float fmax = format == Fp8Format::kE4M3 ? 448.0f : 57344.0f;
    std::vector<float> x;
    for (int block = 0; block < 24; ++block) {
      const int j = block - 12;
      const auto line = midpoint_line(spec, 32, std::ldexp(fmax, j), -j, block);
      x.insert(x.end(), line.begin(), line.end());
    }
    for (MXScaleRounding rounding : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
      cast_and_compare(x, {4, 6 * 32}, MXFP8BlockScaling{format, 32, rounding}, -1, "midpoints");
    }
  }
  // Amax near the E8M0 ends: huge blocks clamp at code 254, tiny ones at code 0.
  std::vector<float> extremes(4 * 32);
  for (std::size_t i = 0; i < extremes.size(); ++i) {
    const float scale = i < 32 ? 3e38f : i < 64 ? 1e-38f : i < 96 ? 1e-44f : 1.5e-40f;
    extremes[i] = scale * (static_cast<float>(i % 7) - 3.0f) / 3.0f;
  }
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    for (MXScaleRounding rounding : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
      cast_and_compare(extremes, {4, 32}, MXFP8BlockScaling{format, 32, rounding}, -1, "extremes");
    }
  }
}

// The rest of the OCP MX family: FP6 one code per byte, FP4 packed, with both scale roundings,
// on random data with special lines, midpoints of each element format, and E8M0 extremes.
TEST(CastRecipes, MXFP6AndMXFP4BlockScaling) {
  const std::vector<Case> rowwise = {{{3, 5, 64}}, {{2, 32}}, {{1, 96}}, {{9, 160}}};
  const std::vector<Case> columnwise = {{{64, 48}, -2}, {{2, 32, 40}, -2}, {{96, 2}, -2}};
  std::vector<std::pair<Recipe, const oracle::FormatSpec*>> recipes;
  for (MXScaleRounding rounding : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
    recipes.push_back({MXFP6BlockScaling{Fp6Format::kE2M3, 32, rounding}, &oracle::kE2M3});
    recipes.push_back({MXFP6BlockScaling{Fp6Format::kE3M2, 32, rounding}, &oracle::kE3M2});
    recipes.push_back({MXFP4BlockScaling{32, rounding}, &oracle::kE2M1});
  }
  std::uint32_t seed = 700;
  for (const auto& [recipe, spec] : recipes) {
    check_recipe(recipe, rowwise, seed);
    check_recipe(recipe, columnwise, seed + 50);
    seed += 10;
    // Scale 2^j exactly under the floor rule (amax = max * 2^j), elements on the midpoints.
    const float fmax = static_cast<float>(oracle::max_finite(*spec));
    std::vector<float> x;
    for (int block = 0; block < 24; ++block) {
      const int j = block - 12;
      const auto line = midpoint_line(*spec, 32, std::ldexp(fmax, j), -j, block);
      x.insert(x.end(), line.begin(), line.end());
    }
    cast_and_compare(x, {4, 6 * 32}, recipe, -1, "midpoints");
    std::vector<float> extremes(4 * 32);
    for (std::size_t i = 0; i < extremes.size(); ++i) {
      const float scale = i < 32 ? 3e38f : i < 64 ? 1e-38f : i < 96 ? 1e-44f : 1.5e-40f;
      extremes[i] = scale * (static_cast<float>(i % 7) - 3.0f) / 3.0f;
    }
    cast_and_compare(extremes, {4, 32}, recipe, -1, "extremes");
  }
}

TEST(CastRecipes, NVFP4BlockScaling) {
  NVFP4BlockScaling one_d;
  check_recipe(one_d, {{{3, 5, 64}}, {{16, 32}}, {{1, 16}}, {{7, 48}}}, 400);
  check_recipe(one_d, {{{32, 18}, -2}, {{2, 16, 4}, -2}}, 420);
  NVFP4BlockScaling two_d;
  two_d.two_d = true;
  check_recipe(two_d, {{{32, 48}}, {{2, 16, 16}}, {{3, 32, 32}}}, 440);
  // Whole-tensor special cases: the tensor amax decides S_enc.
  for (const auto& x : per_tensor_inputs(64)) {
    cast_and_compare(x, {4, 16}, one_d, -1, "special tensor");
    cast_and_compare(x, {16, 4}, one_d, -2, "special tensor");
  }
  // A tensor amax of 2688 * 2^k makes S_enc exact; block amaxes then land near E4M3 midpoints.
  std::vector<float> x = random_values({8, 64}, 450);
  x[0] = 2688.0f * 4;
  for (std::int64_t i = 1; i < 8 * 64; i += 16) x[i] = std::ldexp(4.5f + (i % 5) * 0.25f, i % 13);
  cast_and_compare(x, {8, 64}, one_d, -1, "scale midpoints");
}

TEST(CastRecipes, INT4Scaling) {
  std::uint32_t seed = 500;
  for (bool is_signed : {true, false}) {
    for (Int4ScaleDType dtype :
         {Int4ScaleDType::kF16, Int4ScaleDType::kBF16, Int4ScaleDType::kF32}) {
      check_recipe(INT4Scaling{32, is_signed, dtype}, {{{3, 5, 64}}, {{2, 32}}, {{64, 10}, -2}},
                   seed);
      check_recipe(INT4Scaling{128, is_signed, dtype}, {{{4, 256}}, {{1, 128}}}, seed + 1);
      check_recipe(INT4Scaling{-1, is_signed, dtype}, {{{5, 6}}, {{2, 3, 18}}}, seed + 2);
      seed += 10;
    }
  }
  // fp32 scale with amax 7.5 * 2^k: s is exactly 2^k and (n + 1/2) * 2^k are ties.
  std::vector<float> x;
  for (int group = 0; group < 8; ++group) {
    const int k = group - 4;
    x.push_back(7.5f * std::ldexp(1.0f, k) * (group % 2 == 0 ? 1.0f : -1.0f));
    for (int i = 1; i < 32; ++i) {
      const float tie = (static_cast<float>(i % 16) - 8.0f + 0.5f) * std::ldexp(1.0f, k);
      const int step = i % 3;
      x.push_back(step == 0   ? tie
                  : step == 1 ? std::nextafter(tie, std::numeric_limits<float>::infinity())
                              : std::nextafter(tie, -std::numeric_limits<float>::infinity()));
    }
  }
  for (bool is_signed : {true, false}) {
    for (Int4ScaleDType dtype :
         {Int4ScaleDType::kF16, Int4ScaleDType::kBF16, Int4ScaleDType::kF32}) {
      cast_and_compare(x, {2, 128}, INT4Scaling{32, is_signed, dtype}, -1, "ties");
    }
  }
  // Scales that underflow or overflow the 16-bit scale dtypes.
  std::vector<float> extremes(4 * 32);
  for (std::size_t i = 0; i < extremes.size(); ++i) {
    const float scale = i < 32 ? 1e-9f : i < 64 ? 1e6f : i < 96 ? 1e-30f : 3e38f;
    extremes[i] = scale * (static_cast<float>(i % 9) - 4.0f);
  }
  for (bool is_signed : {true, false}) {
    for (Int4ScaleDType dtype :
         {Int4ScaleDType::kF16, Int4ScaleDType::kBF16, Int4ScaleDType::kF32}) {
      // numerics.md leaves open what a scale rounding to 0 or inf in scale_dtype does; the
      // model takes the IEEE conversion and reads 0/0 as 0 (numerics.hpp's choice).
      cast_and_compare(extremes, {4, 32}, INT4Scaling{32, is_signed, dtype}, -1, "extremes");
    }
  }
}

// fp16, bf16 and fp64 inputs are converted to fp32 first (numerics.md, preamble).
TEST(CastRecipes, WideInputDTypes) {
  const Shape shape{3, 4, 64};
  const std::vector<Recipe> recipes = {
      Float8CurrentScaling{}, DelayedScaling{},    Float8BlockScaling{Fp8Format::kE4M3, 64},
      MXFP8BlockScaling{},    NVFP4BlockScaling{}, INT4Scaling{32, false}};
  for (const Recipe& recipe : recipes) {
    std::vector<float> x = random_values(shape, 600);
    for (float& v : x) v = std::ldexp(v, -3);  // inside fp16's range
    std::vector<std::uint16_t> half(x.size()), brain(x.size());
    std::vector<double> wide(x.size());
    std::vector<float> from_half(x.size()), from_brain(x.size()), from_wide(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      half[i] = oracle::to_f16_bits(x[i]);
      brain[i] = oracle::to_bf16_bits(x[i]);
      // Bits below fp32's precision, so the fp64 -> fp32 rounding matters.
      wide[i] = static_cast<double>(x[i]) * (1.0 + std::ldexp(static_cast<double>(i % 7) - 3, -26));
      from_half[i] = oracle::f16_value(half[i]);
      from_brain[i] = oracle::bf16_value(brain[i]);
      from_wide[i] = static_cast<float>(wide[i]);
    }
    compare_cast(typed_array(DType::kF16, shape, half.data()), from_half, shape, recipe, -1,
                 "fp16 input");
    compare_cast(typed_array(DType::kBF16, shape, brain.data()), from_brain, shape, recipe, -1,
                 "bf16 input");
    compare_cast(typed_array(DType::kF64, shape, wide.data()), from_wide, shape, recipe, -1,
                 "fp64 input");
  }
}

}  // namespace
}  // namespace breccia
