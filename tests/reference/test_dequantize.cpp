// breccia::dequantize against the model: decode(q) * scale in fp32 (NVFP4: decode(q) *
// decode_e4m3(sd) * global_scale, left to right; INT4: (q - z) * s), then RNE into the output
// dtype; and the error bound |x - dequantize(cast(x))| <= half a step of the format at its scale.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "breccia/ops.hpp"
#include "reference/oracle.hpp"

namespace breccia {
namespace {

using oracle::checks::f32_array;
using oracle::checks::MismatchReport;
using oracle::inputs::add_special_lines;
using oracle::inputs::random_values;

struct Case {
  Recipe recipe;
  Shape shape;
  int axis = -1;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    cases.push_back({Float8CurrentScaling{format, false}, {3, 5, 64}});
    cases.push_back({Float8CurrentScaling{format, true}, {70}});
    cases.push_back({DelayedScaling{format, 16, 1}, {4, 33}});
    cases.push_back({Float8BlockScaling{format}, {3, 5, 128}});
    cases.push_back({Float8BlockScaling{format, 128, 128, false}, {130, 256}});
    cases.push_back({Float8BlockScaling{format}, {256, 3}, -2});
    for (MXScaleRounding rounding : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
      cases.push_back({MXFP8BlockScaling{format, 32, rounding}, {3, 5, 64}});
      cases.push_back({MXFP8BlockScaling{format, 32, rounding}, {2, 64, 40}, -2});
    }
  }
  NVFP4BlockScaling two_d;
  two_d.two_d = true;
  cases.push_back({NVFP4BlockScaling{}, {3, 5, 64}});
  cases.push_back({NVFP4BlockScaling{}, {32, 18}, -2});
  cases.push_back({two_d, {2, 32, 48}});
  for (bool is_signed : {true, false}) {
    for (Int4ScaleDType dtype : {Int4ScaleDType::kF16, Int4ScaleDType::kBF16, Int4ScaleDType::kF32}) {
      cases.push_back({INT4Scaling{32, is_signed, dtype}, {3, 5, 64}});
      cases.push_back({INT4Scaling{-1, is_signed, dtype}, {6, 10}});
      cases.push_back({INT4Scaling{32, is_signed, dtype}, {64, 10}, -2});
    }
  }
  return cases;
}

// Inputs for a case: random values, and (block recipes) the same with special lines.
std::vector<std::vector<float>> inputs_for(const Case& c, std::uint32_t seed) {
  std::vector<std::vector<float>> inputs = {random_values(c.shape, seed)};
  if (c.shape.size() >= 2) {
    std::vector<float> special = inputs.back();
    add_special_lines(c.shape, special, c.axis);
    inputs.push_back(special);
  }
  return inputs;
}

std::string context_of(const Case& c, const std::string& what) {
  return recipe_repr(c.recipe) + " axis " + std::to_string(c.axis) + " shape " +
         oracle::checks::describe(c.shape) + " [" + what + "]";
}

bool same_bits_or_both_nan(double expected, double got, std::uint64_t expected_bits,
                           std::uint64_t got_bits) {
  if (std::isnan(expected) || std::isnan(got)) return std::isnan(expected) && std::isnan(got);
  return expected_bits == got_bits;
}

void check_dequantize(const Case& c, const std::vector<float>& x, const std::string& what) {
  const std::string context = context_of(c, what);
  CastOptions options;
  options.axis = c.axis;
  const ScaledTensor scaled = cast(f32_array(c.shape, x), c.recipe, options);
  const oracle::Quantized want = oracle::quantize(c.shape, x, c.recipe, c.axis);

  const Array out32 = dequantize(scaled, DType::kF32);
  ASSERT_EQ(out32.shape(), c.shape) << context;
  ASSERT_EQ(out32.dtype(), DType::kF32) << context;
  const Array out16 = dequantize(scaled, DType::kF16);
  const Array outb16 = dequantize(scaled, DType::kBF16);
  const Array out64 = dequantize(scaled, DType::kF64);
  ASSERT_EQ(out16.dtype(), DType::kF16) << context;
  ASSERT_EQ(outb16.dtype(), DType::kBF16) << context;
  ASSERT_EQ(out64.dtype(), DType::kF64) << context;
  const float* got32 = out32.contiguous().data_as<float>();
  const Array c16 = out16.contiguous(), cb16 = outb16.contiguous(), c64 = out64.contiguous();
  const auto* got16 = c16.data_as<std::uint16_t>();
  const auto* gotb16 = cb16.data_as<std::uint16_t>();
  const double* got64 = c64.data_as<double>();

  MismatchReport f32_report(context + " fp32 output"), f16_report(context + " fp16 output"),
      bf16_report(context + " bf16 output"), f64_report(context + " fp64 output"),
      bound_report(context + " error bound");
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float expected = want.dequantized[i];
    const std::string at = "element " + std::to_string(i) + " (x = " + std::to_string(x[i]) + "): ";
    if (!same_bits_or_both_nan(expected, got32[i], std::bit_cast<std::uint32_t>(expected),
                               std::bit_cast<std::uint32_t>(got32[i]))) {
      f32_report.add(at + "expected " + std::to_string(expected) + ", got " + std::to_string(got32[i]));
    }
    const std::uint16_t half = oracle::to_f16_bits(expected);
    if (!same_bits_or_both_nan(oracle::f16_value(half), oracle::f16_value(got16[i]), half, got16[i])) {
      f16_report.add(at + "expected " + oracle::checks::hex(half) + ", got " + oracle::checks::hex(got16[i]));
    }
    const std::uint16_t brain = oracle::to_bf16_bits(expected);
    if (!same_bits_or_both_nan(oracle::bf16_value(brain), oracle::bf16_value(gotb16[i]), brain, gotb16[i])) {
      bf16_report.add(at + "expected " + oracle::checks::hex(brain) + ", got " + oracle::checks::hex(gotb16[i]));
    }
    const double wide = expected;
    if (!same_bits_or_both_nan(wide, got64[i], std::bit_cast<std::uint64_t>(wide),
                               std::bit_cast<std::uint64_t>(got64[i]))) {
      f64_report.add(at + "expected " + std::to_string(wide) + ", got " + std::to_string(got64[i]));
    }
    // The bound, with room for the fp32 rounding of the scale products (a few ulps of x).
    if (std::isfinite(x[i]) && std::isfinite(want.half_step[i])) {
      const double error = std::fabs(static_cast<double>(x[i]) - got32[i]);
      const double bound = want.half_step[i] * (1 + 0x1p-16) + std::fabs(x[i]) * 0x1p-20 + 0x1p-126;
      if (!(error <= bound)) {
        bound_report.add(at + "|x - dequantized| = " + std::to_string(error) + " > " +
                         std::to_string(bound));
      }
    }
  }
}

TEST(Dequantize, MatchesTheModelInEveryOutputDType) {
  std::uint32_t seed = 900;
  for (const Case& c : all_cases()) {
    const auto inputs = inputs_for(c, seed++);
    check_dequantize(c, inputs[0], "random");
    if (inputs.size() > 1) check_dequantize(c, inputs[1], "special lines");
  }
}

// Values that round-trip exactly: codes already on the format's grid at a power-of-two scale.
TEST(Dequantize, GridValuesRoundTripExactly) {
  for (Fp8Format format : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    const auto& spec = format == Fp8Format::kE4M3 ? oracle::kE4M3 : oracle::kE5M2;
    const auto& table = oracle::positive_table(spec);
    std::vector<float> x;
    for (std::size_t i = 0; i < 32 * 8; ++i) {
      const float v = static_cast<float>(table[i % table.size()].value);
      x.push_back(i % 2 == 0 ? v : -v);
    }
    x[0] = static_cast<float>(table.back().value);  // amax = fmax: every block's scale is 1
    for (std::size_t block = 0; block < 8; ++block) x[block * 32] = x[0];
    for (const Recipe& recipe :
         {Recipe{Float8CurrentScaling{format}}, Recipe{MXFP8BlockScaling{format}}}) {
      const Array out = dequantize(cast(f32_array({8, 32}, x), recipe));
      for (std::size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(out.data_as<float>()[i], x[i]) << recipe_repr(recipe) << " element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace breccia
