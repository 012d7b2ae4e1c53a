// Tensor-core GEMMs against the fp32 product of the dequantized operands (the reference
// matmul on the CPU), by 1 - 2 sum(xy) / sum(x^2 + y^2) <= 1e-5: the same products summed in
// another order. Square, skinny (M = 1, 16, 64) and DeepSeek shapes; row-major b and b as a
// transposed view of an N x K weight; every output dtype; the FP8 kernels and the emulated
// path (MXFP8, NVFP4, INT4 and bf16 operands); and the shapes no kernel takes.
#include <gtest/gtest.h>

#include <array>
#include <random>
#include <string>
#include <variant>
#include <vector>

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

bool one_dimensional_blocks(const Recipe& recipe) {
  if (const auto* block = std::get_if<Float8BlockScaling>(&recipe)) return block->block_m == 1;
  if (const auto* nvfp4 = std::get_if<NVFP4BlockScaling>(&recipe)) return !nvfp4->two_d;
  return std::holds_alternative<MXFP8BlockScaling>(recipe) ||
         std::holds_alternative<INT4Scaling>(recipe);
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
                 recipe_repr(ra) + " x " + recipe_repr(rb) +
                 (b_as_weight_view ? " (b = w.T)" : "") + " -> " +
                 std::string(dtype_name(out_dtype)));
    const Array x = random_matrix(m, k, 1);
    const ScaledTensor a_cpu = cast(x, ra);
    const ScaledTensor a_gpu =
        cast(to_device(x, allocator_), ra, {.context = {.allocator = &allocator_}});
    ScaledTensor b_cpu = a_cpu, b_gpu = a_gpu;
    if (b_as_weight_view) {
      const Array w = random_matrix(n, k, 2);
      b_cpu = cast(w, rb);
      b_gpu = cast(to_device(w, allocator_), rb, {.context = {.allocator = &allocator_}});
      const Layout layout = std::holds_alternative<PerTensor>(b_cpu.layout())
                                ? b_cpu.layout()
                                : Layout{PerBlockMN{128, 128}};
      b_cpu = transposed_view(b_cpu, layout);
      b_gpu = transposed_view(b_gpu, layout);
    } else {  // 1-D blocks run along K (axis=-2), as a GEMM's right operand has them
      const Array w = random_matrix(k, n, 2);
      const int axis = one_dimensional_blocks(rb) ? -2 : -1;
      b_cpu = cast(w, rb, {.axis = axis});
      b_gpu =
          cast(to_device(w, allocator_), rb, {.axis = axis, .context = {.allocator = &allocator_}});
    }
    ASSERT_NE(kernels::cuda::gemm_kind(a_gpu, b_gpu), kernels::cuda::GemmKind::kNone);
    compare(a_cpu, a_gpu, b_cpu, b_gpu, out_dtype);
  }

  void compare(const Operand& a_cpu, const Operand& a_gpu, const Operand& b_cpu,
               const Operand& b_gpu, DType out_dtype) {
    const Array want = matmul(a_cpu, b_cpu, DType::kF32);
    const Array got = to_host(matmul(a_gpu, b_gpu, out_dtype, {.allocator = &allocator_}));
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(mismatch(got, want), 1e-5);
  }
};

TEST_F(CudaGemm, PerTensorE4M3MatchesTheReference) {
  const Recipe e4m3 = Float8CurrentScaling{};
  for (auto [m, n, k] : std::vector<std::array<std::int64_t, 3>>{
           {256, 256, 256},
           {1, 512, 1024},
           {16, 512, 1024},
           {64, 2112, 7168},
           {200, 48, 4096},
           {2048, 4224, 256}}) {  // the last has enough large tiles for the persistent schedule
    for (DType out : {DType::kBF16, DType::kF16, DType::kF32})
      check(m, n, k, e4m3, e4m3, false, out);
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

// MXFP8 (32-element E8M0 blocks) and NVFP4 (16-element E4M3 blocks, global scale) are finer
// than a wgmma's K: dequantized to exact bf16 on the GPU, then a bf16 GEMM.
TEST_F(CudaGemm, EmulatedBlockFormatsMatchTheReference) {
  using kernels::cuda::GemmKind;
  const Recipe mx = MXFP8BlockScaling{};
  const Recipe mx_e5m2 = MXFP8BlockScaling{Fp8Format::kE5M2, 32, MXScaleRounding::kRceil};
  const Recipe nvfp4 = NVFP4BlockScaling{};
  for (auto [m, n, k] : std::vector<std::array<std::int64_t, 3>>{
           {256, 256, 256}, {1, 512, 1024}, {16, 512, 1024}, {64, 2112, 7168}, {200, 48, 4096}}) {
    check(m, n, k, mx, mx, false, DType::kBF16);
    check(m, n, k, nvfp4, nvfp4, false, DType::kF32);
  }
  for (DType out : {DType::kBF16, DType::kF16, DType::kF32})
    check(128, 384, 512, mx, mx_e5m2, false, out);
  check(64, 256, 512, mx, nvfp4, false, DType::kBF16);
  check(64, 256, 512, nvfp4, mx, false, DType::kBF16);
  check(128, 2112, 1024, NVFP4BlockScaling{"E2M1", 16, "E4M3", true}, nvfp4, false, DType::kBF16);
  // b as a transposed view of an (N, K) MXFP8 weight: its rows are K-major already.
  const Array w = random_matrix(384, 512, 8);
  const ScaledTensor weight_cpu = cast(w, mx);
  const ScaledTensor weight_gpu =
      cast(to_device(w, allocator_), mx, {.context = {.allocator = &allocator_}});
  const Array x = random_matrix(96, 512, 9);
  const ScaledTensor x_cpu = cast(x, mx), x_gpu = cast(to_device(x, allocator_), mx,
                                                       {.context = {.allocator = &allocator_}});
  const Layout column_blocks = PerBlockMN{32, 1};
  const ScaledTensor b_gpu = transposed_view(weight_gpu, column_blocks);
  EXPECT_EQ(kernels::cuda::gemm_kind(x_gpu, b_gpu), GemmKind::kEmulated);
  compare(x_cpu, x_gpu, transposed_view(weight_cpu, column_blocks), b_gpu, DType::kBF16);
}

// FP8 pairs the FP8 kernels do not take (E5M2 x E5M2, K = 40) and fp32-scaled 1 x 128 blocks on
// both sides: the same emulated path; per-tensor scales go to alpha, so values stay exact.
TEST_F(CudaGemm, Fp8PairsWithoutAKernelAreEmulated) {
  const Recipe e5m2 = Float8CurrentScaling{Fp8Format::kE5M2};
  check(128, 256, 512, e5m2, e5m2, false, DType::kBF16);
  check(32, 64, 40, Float8CurrentScaling{}, Float8CurrentScaling{}, false, DType::kF32);
  check(64, 256, 512, Float8BlockScaling{}, Float8BlockScaling{Fp8Format::kE4M3, 128, 1, true},
        false, DType::kBF16);
}

// W4A16: bf16 activations (a plain array) times INT4 weights blocked along K.
TEST_F(CudaGemm, Int4WeightsWithBf16ActivationsMatchTheReference) {
  for (const Recipe& recipe :
       std::vector<Recipe>{INT4Scaling{}, INT4Scaling{128, false, Int4ScaleDType::kBF16},
                           INT4Scaling{32, true, Int4ScaleDType::kF32}}) {
    for (auto [m, n, k] : std::vector<std::array<std::int64_t, 3>>{
             {1, 4096, 1024}, {16, 512, 2048}, {256, 1024, 512}}) {
      SCOPED_TRACE(recipe_repr(recipe) + " " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                   std::to_string(k));
      Array x = Array::empty(DType::kBF16, {m, k});
      kernels::reference::convert(random_matrix(m, k, 10), x);
      const Array w = random_matrix(k, n, 11);
      const ScaledTensor b_cpu = cast(w, recipe, {.axis = -2});
      const ScaledTensor b_gpu = cast(to_device(w, allocator_), recipe,
                                      {.axis = -2, .context = {.allocator = &allocator_}});
      compare(x, to_device(x, allocator_), b_cpu, b_gpu, DType::kBF16);
    }
  }
}

// Counts the requests that reach the caller's allocator.
class CountingAllocator final : public Allocator {
 public:
  explicit CountingAllocator(Allocator& inner) : inner_(inner) {}
  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    ++calls;
    return inner_.allocate(bytes, device);
  }
  int calls = 0;

 private:
  Allocator& inner_;
};

// The host path of an eager GEMM: after a first call on a stream, the same GEMM asks the
// caller's allocator for its output only (scratch, such as a stream-K workspace or the
// per-tensor scale product, is kept for the next call on that stream), and stays right.
TEST_F(CudaGemm, RepeatedCallsAllocateTheirOutputOnly) {
  CountingAllocator counting(allocator_);
  const Context context{.allocator = &counting};
  const Recipe block_weight = Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true};
  struct Case {
    std::int64_t m, n, k;
    Recipe a, b;
  };
  for (const Case& c : {Case{16, 512, 1024, Float8CurrentScaling{}, Float8CurrentScaling{}},
                        Case{2048, 4224, 256, Float8CurrentScaling{}, Float8CurrentScaling{}},
                        Case{16, 2112, 7168, Float8BlockScaling{}, block_weight}}) {
    SCOPED_TRACE(std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k));
    const Array x = random_matrix(c.m, c.k, 7), w = random_matrix(c.n, c.k, 8);
    const ScaledTensor a = cast(to_device(x, allocator_), c.a, {.context = context});
    const Layout layout = std::holds_alternative<Float8CurrentScaling>(c.b)
                              ? Layout{PerTensor{}}
                              : Layout{PerBlockMN{128, 128}};
    const ScaledTensor b =
        transposed_view(cast(to_device(w, allocator_), c.b, {.context = context}), layout);
    const Array want = matmul(cast(x, c.a), transposed_view(cast(w, c.b), layout), DType::kF32);
    for (int call = 0; call < 3; ++call) {
      counting.calls = 0;
      const Array got = to_host(matmul(a, b, DType::kBF16, context));
      if (call > 0) EXPECT_EQ(counting.calls, 1) << "call " << call;
      EXPECT_LE(mismatch(got, want), 1e-5);
    }
  }
}

TEST_F(CudaGemm, RefusesWhatNoKernelTakes) {
  auto fp8 = [&](std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
    return cast(to_device(random_matrix(rows, cols, seed), allocator_), Float8CurrentScaling{},
                {.context = {.allocator = &allocator_}});
  };
  EXPECT_THROW(matmul(fp8(32, 36, 3), fp8(36, 32, 4), DType::kBF16, {.allocator = &allocator_}),
               UnsupportedError);  // K = 36
  const ScaledTensor a = fp8(32, 64, 3);
  const Array w = to_device(random_matrix(64, 32, 4), allocator_);
  EXPECT_THROW(matmul(a, w, DType::kBF16, {.allocator = &allocator_}),
               TypeError);  // an fp32 plain operand
  const ScaledTensor batched =
      cast(to_device(random_matrix(64, 64, 5), allocator_).reshaped({2, 32, 64}),
           MXFP8BlockScaling{}, {.context = {.allocator = &allocator_}});
  EXPECT_THROW(matmul(batched, batched, DType::kBF16, {.allocator = &allocator_}),
               UnsupportedError);  // 3-D
  EXPECT_THROW(matmul(a, fp8(64, 32, 6), DType::kF64, {.allocator = &allocator_}), TypeError);
}

}  // namespace
}  // namespace breccia
