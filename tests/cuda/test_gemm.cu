// Tensor-core GEMMs against the fp32 product of the dequantized operands (the reference
// matmul on the CPU), by 1 - 2 sum(xy) / sum(x^2 + y^2) <= 1e-5: the same products summed in
// another order. Square, skinny (M = 1, 16, 64) and DeepSeek shapes; row-major b and b as a
// transposed view of an N x K weight; every output dtype; and the shapes a kernel refuses.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/ops.hpp"
#include "cuda/cuda_support.hpp"

namespace breccia {
namespace {

using cuda_test::to_device;
using cuda_test::to_host;

Array random_matrix(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  Array x = Array::empty(DType::kF32, {rows, cols});
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = normal(rng) * (1 + (i % 7));
  return x;
}

double mismatch(const Array& got, const Array& want) {
  Array got32 = Array::empty(DType::kF32, got.shape());
  kernels::reference::convert(got, got32);
  double xy = 0, squares = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double x = got32.data_as<float>()[i], y = want.data_as<float>()[i];
    xy += x * y;
    squares += x * x + y * y;
  }
  return squares == 0 ? 0 : 1 - 2 * xy / squares;
}

// The same ScaledTensor with its data and scale viewed transposed (shape and strides swapped).
ScaledTensor transposed_view(const ScaledTensor& t, const Layout& layout) {
  auto view = [](const Array& a) {
    if (a.ndim() < 2) return a;
    return Array::borrow(a.data(), a.dtype(), {a.shape()[1], a.shape()[0]},
                         {a.strides()[1], a.strides()[0]}, a.device(), a.owner());
  };
  return from_buffer(view(t.data()), view(t.scale()), t.recipe(), layout);
}

class CudaGemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::cuda::has_cutlass_gemm()) GTEST_SKIP() << "built without CUTLASS";
  }
  cuda_test::StreamAllocator allocator_;

  // a (M x K) and b (K x N, or a transposed N x K weight) cast on both devices; the GPU
  // product against the CPU reference product of the very same bytes.
  void check(std::int64_t m, std::int64_t n, std::int64_t k, const Recipe& ra, const Recipe& rb,
             bool b_as_weight_view, DType out_dtype) {
    SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " " +
                 recipe_repr(ra) + " x " + recipe_repr(rb) + (b_as_weight_view ? " (b = w.T)" : "") +
                 " -> " + std::string(dtype_name(out_dtype)));
    const Array x = random_matrix(m, k, 1);
    const ScaledTensor a_cpu = cast(x, ra);
    const ScaledTensor a_gpu = cast(to_device(x, allocator_), ra, {.allocator = &allocator_});
    ScaledTensor b_cpu = a_cpu, b_gpu = a_gpu;
    if (b_as_weight_view) {
      const Array w = random_matrix(n, k, 2);
      b_cpu = cast(w, rb);
      b_gpu = cast(to_device(w, allocator_), rb, {.allocator = &allocator_});
      const Layout layout = std::holds_alternative<PerTensor>(b_cpu.layout())
                                ? b_cpu.layout()
                                : Layout{PerBlockMN{128, 128}};
      b_cpu = transposed_view(b_cpu, layout);
      b_gpu = transposed_view(b_gpu, layout);
    } else {
      const Array w = random_matrix(k, n, 2);
      b_cpu = cast(w, rb);
      b_gpu = cast(to_device(w, allocator_), rb, {.allocator = &allocator_});
    }
    ASSERT_NE(kernels::cuda::gemm_kind(a_gpu, b_gpu), kernels::cuda::GemmKind::kNone);
    const Array want = matmul(a_cpu, b_cpu, DType::kF32);
    const Array got = to_host(matmul(a_gpu, b_gpu, out_dtype, &allocator_));
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(mismatch(got, want), 1e-5);
  }
};

TEST_F(CudaGemm, PerTensorE4M3MatchesTheReference) {
  const Recipe e4m3 = Float8CurrentScaling{};
  for (auto [m, n, k] : std::vector<std::array<std::int64_t, 3>>{
           {256, 256, 256}, {1, 512, 1024}, {16, 512, 1024}, {64, 2112, 7168}, {200, 48, 4096}}) {
    for (DType out : {DType::kBF16, DType::kF16, DType::kF32}) check(m, n, k, e4m3, e4m3, false, out);
  }
  check(128, 384, 512, e4m3, DelayedScaling{}, true, DType::kBF16);
}

TEST_F(CudaGemm, PerTensorE4M3xE5M2MatchesTheReference) {
  const Recipe e5m2 = Float8CurrentScaling{Fp8Format::kE5M2};
  for (DType out : {DType::kBF16, DType::kF32}) {
    check(256, 256, 512, Float8CurrentScaling{}, e5m2, false, out);
    check(16, 1024, 256, Float8CurrentScaling{}, e5m2, true, out);
  }
}

TEST_F(CudaGemm, DeepSeekBlockScalesMatchTheReference) {
  const Recipe act = Float8BlockScaling{};
  const Recipe weight = Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true};
  const Recipe weight_fp32_scales = Float8BlockScaling{Fp8Format::kE4M3, 128, 128, false};
  check(128, 256, 512, act, weight, false, DType::kBF16);
  check(300, 384, 1536, act, weight, false, DType::kBF16);
  // N = 2112 is not a multiple of 128: only the weight (N x K, blocked along K) takes it.
  for (std::int64_t m : {1, 64}) check(m, 2112, 7168, act, weight, true, DType::kBF16);
  check(64, 512, 1024, act, weight_fp32_scales, true, DType::kF32);
  check(16, 256, 256, act, weight, false, DType::kF16);
}

TEST_F(CudaGemm, RefusesWhatNoKernelTakes) {
  const Array x = to_device(random_matrix(32, 40, 3), allocator_);
  const Array w = to_device(random_matrix(40, 32, 4), allocator_);
  const ScaledTensor a = cast(x, Float8CurrentScaling{}, {.allocator = &allocator_});
  const ScaledTensor b = cast(w, Float8CurrentScaling{}, {.allocator = &allocator_});
  EXPECT_THROW(matmul(a, b, DType::kBF16, &allocator_), UnsupportedError);  // K = 40
  const ScaledTensor mx = cast(to_device(random_matrix(32, 64, 5), allocator_), MXFP8BlockScaling{},
                               {.allocator = &allocator_});
  EXPECT_THROW(matmul(mx, mx, DType::kBF16, &allocator_), UnsupportedError);
  EXPECT_THROW(matmul(a, x, DType::kBF16, &allocator_), UnsupportedError);  // plain operand
}

}  // namespace
}  // namespace breccia
