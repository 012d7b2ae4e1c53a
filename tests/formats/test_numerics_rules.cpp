// The scalar scale rules of numerics.hpp against the model of numerics.md §3 in
// tests/reference/oracle.hpp, over sweeps that visit every fp32 exponent and mantissa edge.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "breccia/numerics.hpp"
#include "breccia/rules/nvfp4.hpp"
#include "reference/oracle.hpp"

namespace breccia::numerics {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNan = std::numeric_limits<float>::quiet_NaN();

std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return bits_of(a) == bits_of(b);
}

// Non-negative amax values: every exponent field (subnormals included) with the mantissa edges
// and a few random mantissas, plus 0, inf and NaN.
std::vector<float> amax_sweep() {
  std::vector<float> values = {0.0f, kInf, kNan, std::numeric_limits<float>::max()};
  const std::uint32_t mantissas[] = {0x000000u, 0x000001u, 0x000002u, 0x3FFFFFu, 0x400000u,
                                     0x400001u, 0x600000u, 0x7FFFFEu, 0x7FFFFFu};
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> random_mantissa(0, 0x7FFFFFu);
  for (std::uint32_t exponent = 0; exponent < 255; ++exponent) {
    for (std::uint32_t mantissa : mantissas) {
      values.push_back(std::bit_cast<float>(exponent << 23 | mantissa));
    }
    for (int i = 0; i < 8; ++i) {
      values.push_back(std::bit_cast<float>(exponent << 23 | random_mantissa(rng)));
    }
  }
  // The values where the FP8 and MX rules change their answer.
  for (float fmax : {448.0f, 57344.0f}) {
    for (float m : {1.0f, 0.5f, 2.0f, 1.0f / 448.0f, 1.0f / 57344.0f, std::ldexp(1.0f, -127),
                    std::ldexp(1.0f, -126), std::ldexp(1.0f, -128)}) {
      const float edge = fmax * m;
      values.insert(values.end(), {edge, std::nextafter(edge, 0.0f), std::nextafter(edge, kInf)});
    }
  }
  return values;
}

TEST(NumericsRules, Fp8EncodeScale) {
  for (float fmax : {kE4M3Max, kE5M2Max}) {
    for (float amax : amax_sweep()) {
      ASSERT_TRUE(same_float(fp8_encode_scale(amax, fmax), oracle::current_encode_scale(amax, fmax)))
          << "amax " << amax << " fmax " << fmax;
    }
  }
  EXPECT_EQ(fp8_encode_scale(0.0f, kE4M3Max), 1.0f);
  EXPECT_EQ(fp8_encode_scale(kInf, kE4M3Max), 1.0f);
  EXPECT_EQ(fp8_encode_scale(kNan, kE4M3Max), 1.0f);
  EXPECT_EQ(fp8_encode_scale(std::ldexp(1.0f, -140), kE4M3Max), kFloatMax);  // quotient overflows
  EXPECT_EQ(fp8_encode_scale(448.0f, kE4M3Max), 1.0f);
  EXPECT_EQ(fp8_encode_scale(1.0f, kE5M2Max), 57344.0f);
}

TEST(NumericsRules, Pow2FloorClearsTheMantissa) {
  for (float s : amax_sweep()) {
    // Encode scales are fmax / amax >= 448 / FLT_MAX, never fp32-subnormal.
    if (s < std::ldexp(1.0f, -126) || std::isnan(s)) continue;
    ASSERT_TRUE(same_float(pow2_floor(s), oracle::pow2_floor(s))) << s;
  }
  EXPECT_EQ(pow2_floor(kFloatMax), std::ldexp(1.0f, 127));
  EXPECT_EQ(pow2_floor(1.0f), 1.0f);
  EXPECT_EQ(pow2_floor(std::nextafter(2.0f, 0.0f)), 1.0f);
  EXPECT_EQ(pow2_floor(448.0f / 3.0f), 128.0f);
}

TEST(NumericsRules, DelayedEncodeScaleWithMargins) {
  const float previous = 3.25f;
  for (float fmax : {kE4M3Max, kE5M2Max}) {
    for (int margin : {0, 1, 2, 5, -1, -3}) {
      for (float reference : amax_sweep()) {
        ASSERT_TRUE(same_float(delayed_encode_scale(reference, fmax, margin, previous),
                               oracle::delayed_encode_scale(reference, fmax, margin, previous)))
            << "ref " << reference << " fmax " << fmax << " margin " << margin;
      }
    }
  }
  EXPECT_EQ(delayed_encode_scale(0.0f, kE4M3Max, 0, previous), previous);
  EXPECT_EQ(delayed_encode_scale(kInf, kE4M3Max, 0, previous), previous);
  EXPECT_EQ(delayed_encode_scale(kNan, kE4M3Max, 0, previous), previous);
  EXPECT_EQ(delayed_encode_scale(-1.0f, kE4M3Max, 0, previous), previous);
  EXPECT_EQ(delayed_encode_scale(7.0f, kE4M3Max, 1, previous), 32.0f);
}

TEST(NumericsRules, MxScaleFloor) {
  for (int emax : {8, 15}) {
    for (float amax : amax_sweep()) {
      ASSERT_EQ(mx_scale_floor(amax, emax), oracle::mx_floor_code(amax, emax))
          << "amax " << amax << " emax " << emax;
    }
  }
  EXPECT_EQ(mx_scale_floor(448.0f, 8), 127);            // 2^8 * 1.75: scale 2^0
  EXPECT_EQ(mx_scale_floor(kNan, 8), kE8M0Nan);
  EXPECT_EQ(mx_scale_floor(kInf, 8), kE8M0Nan);
  EXPECT_EQ(mx_scale_floor(0.0f, 8), 0);                 // -127 - 8 clamps to -127
  EXPECT_EQ(mx_scale_floor(kFloatMax, 8), 127 + 127 - 8);
}

TEST(NumericsRules, MxScaleRceil) {
  for (float fmax : {kE4M3Max, kE5M2Max}) {
    for (float amax : amax_sweep()) {
      ASSERT_EQ(mx_scale_rceil(amax, fmax), oracle::mx_rceil_code(amax, fmax))
          << "amax " << amax << " fmax " << fmax;
    }
  }
  EXPECT_EQ(mx_scale_rceil(0.0f, kE4M3Max), 0);
  EXPECT_EQ(mx_scale_rceil(kNan, kE4M3Max), kE8M0Nan);
  EXPECT_EQ(mx_scale_rceil(kInf, kE5M2Max), kE8M0Nan);
}

TEST(NumericsRules, MxEncodeFactorIsTheExactPower) {
  for (int code = 0; code < 255; ++code) {
    EXPECT_EQ(mx_encode_factor(static_cast<std::uint8_t>(code)), std::ldexp(1.0f, 127 - code));
  }
}

TEST(NumericsRules, Nvfp4TensorScale) {
  for (float g : amax_sweep()) {
    ASSERT_TRUE(same_float(nvfp4_tensor_encode_scale(g), oracle::nvfp4_tensor_encode(g))) << g;
    ASSERT_TRUE(same_float(nvfp4_global_scale(g), oracle::f32_div(g, 2688.0f))) << g;
  }
  EXPECT_EQ(nvfp4_tensor_encode_scale(0.0f), 1.0f);
  EXPECT_EQ(nvfp4_tensor_encode_scale(kNan), 1.0f);
  EXPECT_EQ(nvfp4_tensor_encode_scale(kInf), 1.0f);  // 2688 / inf == 0
  EXPECT_EQ(nvfp4_tensor_encode_scale(std::ldexp(1.0f, -130)), kFloatMax);
  EXPECT_EQ(nvfp4_global_scale(0.0f), 0.0f);
}

// The E4M3 block-scale code the NVFP4 rule stores (rules/nvfp4.hpp, the code every kernel runs).
std::uint8_t nvfp4_block_scale_code(float block_amax, float tensor_encode) {
  rules::Nvfp4Rule rule;
  rule.tensor_encode = tensor_encode;
  rules::TileStats stats;
  stats.amax = block_amax;
  return static_cast<std::uint8_t>(rule.scale(stats).stored);
}

TEST(NumericsRules, Nvfp4BlockScaleCodeAndEncodeFactor) {
  const float tensor_amaxes[] = {1.0f, 6.0f, 2688.0f, 0.001f, 1e6f, 3.0e-30f, 12345.678f};
  for (float g : tensor_amaxes) {
    const float s_enc = oracle::nvfp4_tensor_encode(g);
    for (float block_amax : amax_sweep()) {
      ASSERT_EQ(nvfp4_block_scale_code(block_amax, s_enc), oracle::nvfp4_block_code(block_amax, s_enc))
          << "block amax " << block_amax << " S_enc " << s_enc;
    }
    for (int code = 0; code < 256; ++code) {
      if (code == 0x7F || code == 0xFF) continue;  // NaN blocks encode all elements as 0 instead
      const auto c = static_cast<std::uint8_t>(code);
      ASSERT_TRUE(same_float(nvfp4_block_encode_factor(c, s_enc), oracle::nvfp4_block_encode(c, s_enc)))
          << "code " << code << " S_enc " << s_enc;
    }
    EXPECT_EQ(nvfp4_block_encode_factor(0, s_enc), kFloatMax);
  }
  EXPECT_EQ(nvfp4_block_scale_code(kNan, 1.0f), 0x7F);
  EXPECT_EQ(nvfp4_block_scale_code(kInf, 1.0f), 0x7E);  // satfinite
}

// INT4 helpers against plain arithmetic: rne by the floating-point environment, clamp by hand.
TEST(NumericsRules, Int4Helpers) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> value(-20.0f, 20.0f);
  std::uniform_real_distribution<float> scale_dist(0.01f, 4.0f);
  std::uniform_int_distribution<int> zero_dist(0, 15);
  for (int i = 0; i < 200000; ++i) {
    // Half the samples sit exactly on an x/scale tie.
    const float s = i % 2 == 0 ? scale_dist(rng) : std::ldexp(1.0f, -(i % 5));
    const float x = i % 2 == 0 ? value(rng) : (std::floor(value(rng)) + 0.5f) * s;
    const int z = zero_dist(rng);
    const float q = oracle::rne_integer(x / s);
    ASSERT_EQ(int4_quantize_symmetric(x, s), static_cast<int>(std::clamp(q, -8.0f, 7.0f))) << x << "/" << s;
    ASSERT_EQ(int4_quantize_asymmetric(x, s, z), static_cast<int>(std::clamp(q + z, 0.0f, 15.0f)))
        << x << "/" << s << " z " << z;
    const float lo = -std::fabs(x);
    ASSERT_EQ(int4_zero_point(lo, s),
              static_cast<int>(std::clamp(oracle::rne_integer(-lo / s), 0.0f, 15.0f)));
  }
  EXPECT_EQ(int4_quantize_symmetric(7.5f, 1.0f), 7);
  EXPECT_EQ(int4_quantize_symmetric(6.5f, 1.0f), 6);
  EXPECT_EQ(int4_quantize_symmetric(-8.5f, 1.0f), -8);
  EXPECT_EQ(int4_quantize_symmetric(-100.0f, 1.0f), -8);
  EXPECT_EQ(int4_quantize_asymmetric(2.5f, 1.0f, 3), 5);
  for (float amax : amax_sweep()) {
    if (std::isnan(amax)) continue;
    const float expected = amax == 0.0f ? 1.0f : oracle::f32_div(amax, 7.5f);
    ASSERT_TRUE(same_float(int4_symmetric_scale(amax), expected)) << amax;
    const float lo = -amax / 4, hi = amax;
    if (!std::isfinite(hi - lo)) continue;
    const float range = oracle::f32_div(hi - lo, 15.0f);
    ASSERT_TRUE(same_float(int4_asymmetric_scale(lo, hi), range < 1e-5f ? 1e-5f : range)) << amax;
  }
}

}  // namespace
}  // namespace breccia::numerics
