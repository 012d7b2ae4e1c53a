// GPU cast and dequantize against the reference kernels, byte for byte: every recipe, both
// axes, fp32/bf16/fp16 (and fp64) input, a grid of shapes with edge blocks, and fills of
// special values (NaN of both signs, inf, fp32 and target-format subnormals, zero blocks).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <utility>
#include <variant>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/ops.hpp"
#include "cuda/cuda_support.hpp"
#include "kernel_cases.hpp"

namespace breccia {
namespace {

using cuda_test::mismatched_bytes;
using cuda_test::to_device;
using cuda_test::to_host;
using kernel_cases::all_recipes;
using kernel_cases::converted;
using kernel_cases::Fill;
using kernel_cases::kDtypes;
using kernel_cases::kShapes;
using kernel_cases::make_input;

// Where two dequantized outputs first differ, with the element's code and scale bytes.
std::string first_difference(const Array& have, const Array& want, const ScaledTensor& scaled) {
  const int size = itemsize(have.dtype());
  const auto* h = static_cast<const unsigned char*>(have.data());
  const auto* w = static_cast<const unsigned char*>(want.data());
  for (std::int64_t i = 0; i < have.numel(); ++i) {
    std::uint64_t hb = 0, wb = 0;
    std::memcpy(&hb, h + i * size, size);
    std::memcpy(&wb, w + i * size, size);
    if (hb == wb) continue;
    const Array data = to_host(scaled.data());
    const bool packed = data.numel() != have.numel();
    const unsigned byte = static_cast<const unsigned char*>(data.data())[packed ? i / 2 : i];
    char text[160];
    std::snprintf(text, sizeof(text),
                  ": first at element %lld: got 0x%llx, want 0x%llx (data byte 0x%02x)",
                  static_cast<long long>(i), static_cast<unsigned long long>(hb),
                  static_cast<unsigned long long>(wb), byte);
    return text;
  }
  return "";
}

class CudaCast : public ::testing::Test {
 protected:
  cuda_test::StreamAllocator allocator_;
  CastOptions options(int axis) {
    return CastOptions{.axis = axis, .context = {.allocator = &allocator_}};
  }

  // Casts x on both devices and compares every output byte; also dequantizes both into every
  // output dtype and compares. Returns false when the recipe does not take the shape.
  bool check(const Array& x, const Recipe& recipe, int axis,
             const std::vector<DType>& dequantize_dtypes = {DType::kF32, DType::kBF16,
                                                            DType::kF16}) {
    std::optional<ScaledTensor> reference;
    try {
      reference.emplace(cast(x, recipe, CastOptions{.axis = axis}));
    } catch (const ValueError&) {
      return false;  // the recipe does not take this shape on either device
    }
    const ScaledTensor& expected = *reference;
    const ScaledTensor got = cast(to_device(x, allocator_), recipe, options(axis));
    EXPECT_EQ(mismatched_bytes(to_host(got.data()), expected.data()), 0) << "data";
    EXPECT_EQ(mismatched_bytes(to_host(got.scale()), expected.scale()), 0) << "scale";
    if (expected.global_scale()) {
      EXPECT_EQ(mismatched_bytes(to_host(*got.global_scale()), *expected.global_scale()), 0)
          << "global_scale";
    }
    if (expected.zero_point()) {
      EXPECT_EQ(mismatched_bytes(to_host(*got.zero_point()), *expected.zero_point()), 0)
          << "zero_point";
    }
    for (DType out : dequantize_dtypes) {
      const Array want = dequantize(expected, out);
      const Array have = to_host(dequantize(got, out, {.allocator = &allocator_}));
      EXPECT_EQ(mismatched_bytes(have, want), 0)
          << "dequantize to " << dtype_name(out) << first_difference(have, want, got);
    }
    return true;
  }

  int sweep(const std::vector<Shape>& shapes, const std::vector<DType>& dtypes, Fill fill) {
    int checked = 0;
    std::uint32_t seed = 1;
    for (const Shape& shape : shapes) {
      for (DType dtype : dtypes) {
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

TEST_F(CudaCast, MatchesReferenceOnShapeGrid) {
  const int checked = sweep(kShapes, kDtypes, Fill::kRandom);
  std::printf("[ cases  ] %d recipe x axis x shape x dtype combinations\n", checked);
  EXPECT_GT(checked, 200);
}

TEST_F(CudaCast, MatchesReferenceOnSpecialValues) {
  const int checked = sweep(kShapes, kDtypes, Fill::kSpecial);
  std::printf("[ cases  ] %d recipe x axis x shape x dtype combinations\n", checked);
  EXPECT_GT(checked, 200);
}

TEST_F(CudaCast, MatchesReferenceOnLargeDeepSeekShape) {
  const Array x = converted(make_input({4096, 7168}, Fill::kSpecial, 99), DType::kBF16);
  const std::vector<Recipe> recipes = {
      Float8CurrentScaling{}, Float8BlockScaling{}, MXFP8BlockScaling{}, MXFP6BlockScaling{},
      MXFP4BlockScaling{},    NVFP4BlockScaling{},  INT4Scaling{}};
  for (const Recipe& recipe : recipes) {
    SCOPED_TRACE(recipe_repr(recipe));
    EXPECT_TRUE(check(x, recipe, -1, {DType::kBF16}));
  }
}

// cast_for_gemm on the GPU (one pass, both axes, swizzled scales) against the CPU's (two
// reference casts, swizzle_scales), byte for byte.
TEST_F(CudaCast, CastForGemmMatchesTheCpu) {
  int checked = 0;
  std::uint32_t seed = 50;
  for (const Shape& shape : std::vector<Shape>{{256, 384}, {160, 416}, {3, 64, 256}, {128, 4096}}) {
    for (DType dtype : {DType::kBF16, DType::kF32}) {
      for (Fill fill : {Fill::kRandom, Fill::kSpecial}) {
        const Array x = converted(make_input(shape, fill, seed++), dtype);
        const Array x_device = to_device(x, allocator_);
        for (const Recipe& recipe : all_recipes()) {
          const bool swizzle = spec_of(recipe).byte_block_scales();
          SCOPED_TRACE(recipe_repr(recipe) + " shape=" + shape_str(shape) +
                       " dtype=" + std::string(dtype_name(dtype)));
          GemmCastOptions cpu_options{.swizzled_scales = swizzle};
          std::optional<GemmCast> want;
          try {
            want.emplace(cast_for_gemm(x, recipe, cpu_options));
          } catch (const ValueError&) {
            continue;  // the recipe cannot block this shape along both axes
          }
          GemmCastOptions gpu_options = cpu_options;
          gpu_options.context.allocator = &allocator_;
          const GemmCast got = cast_for_gemm(x_device, recipe, gpu_options);
          for (const auto& [have, expected] : {std::pair{&got.rowwise, &want->rowwise},
                                               std::pair{&got.columnwise, &want->columnwise}}) {
            ASSERT_TRUE(have->has_value() && expected->has_value());
            EXPECT_EQ(mismatched_bytes(to_host((*have)->data()), (*expected)->data()), 0) << "data";
            EXPECT_EQ(mismatched_bytes(to_host((*have)->scale()), (*expected)->scale()), 0)
                << "scale";
            if ((*expected)->global_scale()) {
              EXPECT_EQ(
                  mismatched_bytes(to_host(*(*have)->global_scale()), *(*expected)->global_scale()),
                  0);
            }
            if ((*expected)->zero_point()) {
              EXPECT_EQ(
                  mismatched_bytes(to_host(*(*have)->zero_point()), *(*expected)->zero_point()), 0);
            }
          }
          if (swizzle) {
            EXPECT_EQ(mismatched_bytes(to_host(*got.rowwise_swizzled_scale),
                                       *want->rowwise_swizzled_scale),
                      0);
            EXPECT_EQ(mismatched_bytes(to_host(*got.columnwise_swizzled_scale),
                                       *want->columnwise_swizzled_scale),
                      0);
          }
          ++checked;
          if (HasFailure()) return;
        }
      }
    }
  }
  std::printf("[ cases  ] %d cast_for_gemm recipe x shape x dtype x fill combinations\n", checked);
  EXPECT_GT(checked, 60);
}

// Input that is not 16-byte aligned takes the general kernel, with the same bytes.
TEST_F(CudaCast, UnalignedInputMatchesReference) {
  const Array host = make_input({64, 258}, Fill::kSpecial, 77);
  const Array bigger = to_device(host, allocator_);
  // Elements [2, 2 + 64 * 256) seen as a 64 x 256 matrix starting 8 bytes in.
  const Array x =
      Array::borrow(bigger.data(), DType::kF32, {64, 256}, {}, bigger.device(), bigger.owner(), 8);
  Array x_host = Array::empty(DType::kF32, {64, 256});
  std::memcpy(x_host.data(), host.data_as<float>() + 2, 64 * 256 * sizeof(float));
  for (const Recipe& recipe : all_recipes()) {
    SCOPED_TRACE(recipe_repr(recipe));
    const ScaledTensor want = cast(x_host, recipe);
    const ScaledTensor got = cast(x, recipe, options(-1));
    EXPECT_EQ(mismatched_bytes(to_host(got.data()), want.data()), 0);
    EXPECT_EQ(mismatched_bytes(to_host(got.scale()), want.scale()), 0);
  }
}

TEST_F(CudaCast, DelayedScalingStateAdvancesAsOnTheCpu) {
  const DelayedScaling recipe{Fp8Format::kE4M3, 4, 0};
  DelayedScalingState cpu_state(recipe);
  DelayedScalingState gpu_state(recipe);
  for (std::uint32_t step = 0; step < 6; ++step) {
    const Array x = make_input({64, 96}, step % 2 == 0 ? Fill::kRandom : Fill::kSpecial, step);
    const ScaledTensor want = cast(x, recipe, CastOptions{.state = &cpu_state});
    CastOptions options{.state = &gpu_state, .context = {.allocator = &allocator_}};
    const ScaledTensor got = cast(to_device(x, allocator_), recipe, options);
    EXPECT_EQ(mismatched_bytes(to_host(got.data()), want.data()), 0) << "step " << step;
    EXPECT_EQ(mismatched_bytes(to_host(got.scale()), want.scale()), 0) << "step " << step;
    EXPECT_EQ(gpu_state.encode_scale(), cpu_state.encode_scale()) << "step " << step;
    const std::vector<float>& gpu_history = gpu_state.amax_history();
    const std::vector<float>& cpu_history = cpu_state.amax_history();
    ASSERT_EQ(gpu_history.size(), cpu_history.size());
    for (std::size_t i = 0; i < gpu_history.size(); ++i) {  // bitwise: NaN entries included
      EXPECT_EQ(std::bit_cast<std::uint32_t>(gpu_history[i]),
                std::bit_cast<std::uint32_t>(cpu_history[i]))
          << "step " << step << " history[" << i << "]";
    }
  }
}

TEST_F(CudaCast, WithoutAnAllocatorRaisesDeviceError) {
  const Array x = to_device(make_input({4, 32}, Fill::kRandom, 5), allocator_);
  EXPECT_THROW(cast(x, MXFP8BlockScaling{}, CastOptions{}), DeviceError);
}

TEST_F(CudaCast, RunsOnTheCallersStream) {
  cudaStream_t stream = nullptr;
  cuda_test::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  {  // every array (freed on `stream`) goes before the stream does
    cuda_test::StreamAllocator allocator(stream);
    const Array host = make_input({512, 1024}, Fill::kRandom, 7);
    const Array x = to_device(host, allocator);
    const ScaledTensor got =
        cast(x, NVFP4BlockScaling{},
             CastOptions{.context = {.allocator = &allocator, .stream = stream}});
    cuda_test::check(cudaStreamSynchronize(stream), "sync");
    const ScaledTensor want = cast(host, NVFP4BlockScaling{});
    EXPECT_EQ(mismatched_bytes(to_host(got.data()), want.data()), 0);
    EXPECT_EQ(mismatched_bytes(to_host(got.scale()), want.scale()), 0);
  }
  cuda_test::check(cudaStreamSynchronize(stream), "sync");
  kernels::cuda::release_scratch();  // scratch kept for `stream` is freed on it
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace breccia
