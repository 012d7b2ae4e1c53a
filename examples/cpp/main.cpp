// Casts a small float matrix to FP8 (E4M3) with one scale per 1 x 128 block, dequantizes it
// and prints the largest error. Exits non-zero when the error exceeds what E4M3 allows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>

#include <breccia/ops.hpp>

int main() try {
  breccia::Array x = breccia::Array::empty(breccia::DType::kF32, {4, 256});
  float* values = x.data_as<float>();
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    values[i] = std::sin(0.37f * static_cast<float>(i)) * static_cast<float>(1 + i % 7);
  }

  const breccia::ScaledTensor scaled = breccia::cast(x, breccia::Float8BlockScaling{});
  const breccia::Array restored = breccia::dequantize(scaled, breccia::DType::kF32);

  const float* restored_values = restored.data_as<const float>();
  float amax = 0.0f;
  float max_error = 0.0f;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    amax = std::max(amax, std::abs(values[i]));
    const float error = std::abs(values[i] - restored_values[i]);
    if (!(error <= max_error)) max_error = error;  // a NaN too
  }
  std::printf("%s\nmax |error| %g (max |x| %g)\n", scaled.repr().c_str(), max_error, amax);
  // E4M3 keeps 3 mantissa bits: each element rounds to within 2^-4 of its magnitude.
  return max_error <= amax / 16 ? 0 : 1;
} catch (const std::exception& error) {
  std::fprintf(stderr, "breccia-example: %s\n", error.what());
  return 1;
}
