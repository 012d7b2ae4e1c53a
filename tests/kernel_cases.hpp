// The cases every fast kernel (CPU and CUDA) is checked against the reference kernels on:
// every recipe variant, a grid of shapes with edge blocks, input dtypes, and fills of random
// and special values.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "breccia/array.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/recipes.hpp"

namespace breccia::kernel_cases {

inline std::vector<Recipe> all_recipes() {
  return {
      DelayedScaling{},
      DelayedScaling{Fp8Format::kE5M2, 16, 1},
      Float8CurrentScaling{},
      Float8CurrentScaling{Fp8Format::kE5M2, true},
      Float8BlockScaling{},
      Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true},
      Float8BlockScaling{Fp8Format::kE5M2, 128, 1, false},
      MXFP8BlockScaling{},
      MXFP8BlockScaling{Fp8Format::kE5M2, 32, MXScaleRounding::kRceil},
      MXFP6BlockScaling{},
      MXFP6BlockScaling{Fp6Format::kE3M2, 32, MXScaleRounding::kRceil},
      MXFP4BlockScaling{},
      MXFP4BlockScaling{32, MXScaleRounding::kRceil},
      NVFP4BlockScaling{},
      NVFP4BlockScaling{"E2M1", 16, "E4M3", true},
      INT4Scaling{},
      INT4Scaling{128, false, Int4ScaleDType::kBF16},
      INT4Scaling{32, true, Int4ScaleDType::kF32},
      INT4Scaling{-1, false, Int4ScaleDType::kF16},
  };
}

enum class Fill { kRandom, kSpecial };

// Values whose magnitudes vary per row by up to 2^+-24, so scales vary; with kSpecial, about
// one element in 16 is a special value and one row in 5 is all zero.
inline Array make_input(const Shape& shape, Fill fill, std::uint32_t seed) {
  Array x = Array::empty(DType::kF32, shape);
  const std::int64_t cols = shape.back();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-24, 24);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            1e-40f,
                            -1e-41f,
                            std::ldexp(1.0f, -9),
                            std::ldexp(1.0f, -16),
                            448.0f,
                            -57344.0f,
                            6.0f,
                            0.0f,
                            -0.0f,
                            3.0e38f};
  float* values = x.data_as<float>();
  float row_scale = 1.0f;
  bool zero_row = false;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    if (i % cols == 0) {
      row_scale = std::ldexp(1.0f, exponent(rng));
      zero_row = fill == Fill::kSpecial && rng() % 5 == 0;
    }
    float v = normal(rng) * row_scale;
    if (fill == Fill::kSpecial) {
      if (zero_row)
        v = 0.0f;
      else if (rng() % 16 == 0)
        v = specials[rng() % std::size(specials)];
    }
    values[i] = v;
  }
  return x;
}

inline Array converted(const Array& x, DType dtype) {
  if (dtype == DType::kF32) return x;
  Array out = Array::empty(dtype, x.shape());
  kernels::reference::convert(x, out);
  return out;
}

// Edge bands (1, 127, 160 rows), partial 128-column blocks (200, 416, 48), batches, and a
// last dim that is no multiple of 8 (the general kernel).
inline const std::vector<Shape> kShapes = {{1, 32},      {127, 4096}, {256, 384},
                                           {3, 64, 256}, {384, 200},  {2, 2, 128, 128},
                                           {32, 6},      {160, 416},  {16, 48}};
inline const std::vector<DType> kDtypes = {DType::kF32, DType::kBF16, DType::kF16, DType::kF64};

// How many bytes of two arrays' storage differ (-1 for different sizes).
inline std::int64_t mismatched_bytes(const Array& a, const Array& b) {
  if (a.nbytes() != b.nbytes()) return -1;
  const auto* x = static_cast<const unsigned char*>(a.data());
  const auto* y = static_cast<const unsigned char*>(b.data());
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < a.nbytes(); ++i) count += x[i] != y[i];
  return count;
}

}  // namespace breccia::kernel_cases
