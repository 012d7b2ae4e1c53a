// Fast CPU kernels: SIMD (Google Highway, the best instruction set of the running machine) and
// threads (OpenMP), producing exactly the reference kernels' bytes (kernels/reference.hpp).
// The ops use them for CPU data unless the context asks for the reference kernels. Inputs are
// contiguous CPU arrays shaped as the plan says; the ops validate before calling.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "breccia/array.hpp"
#include "breccia/kernels/cast_target.hpp"
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"

namespace breccia::kernels::cpu {

// As reference::cast.
void cast(const QuantPlan& plan, const Array& x, const CastOutputs& out, DelayedScalingState* state,
          std::optional<float> tensor_amax = std::nullopt);

// As reference::dequantize.
void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out);

// linear() for a few rows of x (decoding): out (M, N) = x (M, K) @ dequantize(w).T, for the
// (N, K) weight whose plan, data and scales are given (2-D, contiguous); x and out float32,
// contiguous. The weight is never dequantized into memory: each row's codes are decoded in
// registers to exactly dequantize()'s fp32 values and accumulated in fp32 (so the result
// equals the fp32 product of the dequantized weight up to the order of the sums). The ops use
// it for M <= kLinearSmallM.
inline constexpr std::int64_t kLinearSmallM = 16;
void linear_small_m(const QuantPlan& plan, const Array& data, const Array& scale,
                    const Array& global_scale, const Array& zero_point, const Array& x,
                    const Array& out);

// max |x| over a float array on the CPU (fp32, fp16, bf16, fp64), NaN winning as in every
// recipe's statistics; 0 for an empty array. ValueError for other dtypes or devices.
float amax(const Array& x);

// codes[i] = the element code of values[i] (already multiplied by its scale) in a floating-point
// element format, one code per byte: the cast kernels' SIMD encoder, exposed for tests and
// for the exhaustive check over all 2^32 fp32 inputs. Throws ValueError for INT4 formats or
// sizes that differ.
void encode_elements(ElementFormat format, std::span<const float> values,
                     std::span<std::uint8_t> codes);

// Threads the CPU kernels use: BRECCIA_NUM_THREADS at start-up if set, else OpenMP's default
// (all cores, or OMP_NUM_THREADS). set_num_threads(n) changes it for the whole process;
// n must be >= 1.
int num_threads();
void set_num_threads(int threads);

// The instruction set the kernels dispatch to on this machine ("AVX3_ZEN4", "AVX2", ...).
std::string simd_target();

}  // namespace breccia::kernels::cpu
