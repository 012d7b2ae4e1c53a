// GPU benchmarks, each beside its baseline in the same process on the same device:
// - cast and dequantize per recipe (16384 x 16384 bf16 in) vs a device-to-device copy of the
//   input: effective bandwidth = bytes read + bytes written;
// - FP8 GEMMs (per-tensor 8192^3, DeepSeek block-scaled shapes) and the emulated block
//   formats (MXFP8, NVFP4, INT4 weights with bf16 activations): TFLOP/s beside the 1979 dense
//   FP8 peak of Hopper (H100 and H200 SXM alike).
// Prints one table row per case: "| case | ms | GB/s or TFLOP/s | ratio |".
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "breccia/kernels/cuda.hpp"
#include "breccia/ops.hpp"
#include "cuda/cuda_support.hpp"
#include "cuda/gemm/gemm.hpp"

namespace {

using namespace breccia;

// Median milliseconds of `repeats` runs of f, timed with events after `warmup` runs.
double median_ms(const std::function<void()>& f, int warmup = 3, int repeats = 20) {
  for (int i = 0; i < warmup; ++i) f();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    cudaEventRecord(start);
    f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::int64_t bytes_of(const ScaledTensor& t) {
  std::int64_t bytes = t.data().nbytes() + t.scale().nbytes();
  if (t.global_scale()) bytes += t.global_scale()->nbytes();
  if (t.zero_point()) bytes += t.zero_point()->nbytes();
  return bytes;
}

// Random bf16 on the device (a host-side pattern is enough: values only steer the scales).
Array random_bf16(Shape shape, Allocator& allocator, std::uint32_t seed) {
  Array host = Array::empty(DType::kBF16, shape);
  auto* bits = host.data_as<std::uint16_t>();
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < host.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    // sign, exponent in [2^-8, 2^8), random mantissa
    bits[i] =
        static_cast<std::uint16_t>(((state >> 16) & 0x807F) | ((119 + (state >> 8) % 16) << 7));
  }
  return cuda_test::to_device(host, allocator);
}

void row(const std::string& name, double ms, double rate, const char* unit, double ratio) {
  std::printf("| %-46s | %8.3f | %9.1f %-7s | %5.2f |\n", name.c_str(), ms, rate, unit, ratio);
}

}  // namespace

// Usage: breccia-cuda-bench [substring]: only the cases whose name contains it (the copy
// baseline always runs), e.g. to profile one kernel.
int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  auto wanted = [&](const std::string& name) { return name.find(only) != std::string::npos; };
  cudaDeviceProp prop{};
  cuda_test::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::printf("GPU: %s, CUDA runtime %d.%d, CUTLASS GEMMs: %s\n", prop.name, runtime / 1000,
              (runtime % 1000) / 10, kernels::cuda::has_cutlass_gemm() ? "yes" : "no");
  cuda_test::StreamAllocator allocator;

  // --- quantize / dequantize vs copy --------------------------------------------------------
  const Shape shape = {16384, 16384};
  const Array x = random_bf16(shape, allocator, 1);
  Array copy = Array::empty(DType::kBF16, shape, Device::cuda(0), &allocator);
  const double copy_ms = median_ms([&] {
    cudaMemcpyAsync(copy.data(), x.data(), static_cast<std::size_t>(x.nbytes()),
                    cudaMemcpyDeviceToDevice);
  });
  const double copy_gbs = 2.0 * x.nbytes() / copy_ms / 1e6;
  std::printf("| case | ms | rate | vs copy |\n|---|---|---|---|\n");
  row("device-to-device copy, 16384^2 bf16", copy_ms, copy_gbs, "GB/s", 1.0);
  const std::vector<std::pair<std::string, Recipe>> recipes = {
      {"Float8CurrentScaling E4M3", Float8CurrentScaling{}},
      {"DelayedScaling E4M3 (stateless)", DelayedScaling{}},
      {"Float8BlockScaling 1x128", Float8BlockScaling{}},
      {"Float8BlockScaling 128x128", Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true}},
      {"MXFP8 E4M3 floor", MXFP8BlockScaling{}},
      {"MXFP8 E4M3 rceil", MXFP8BlockScaling{Fp8Format::kE4M3, 32, MXScaleRounding::kRceil}},
      {"MXFP6 E2M3 floor", MXFP6BlockScaling{}},
      {"MXFP4 floor", MXFP4BlockScaling{}},
      {"NVFP4", NVFP4BlockScaling{}},
      {"NVFP4 two_d", NVFP4BlockScaling{"E2M1", 16, "E4M3", true}},
      {"INT4 g128 signed", INT4Scaling{}},
      {"INT4 g128 unsigned", INT4Scaling{128, false, Int4ScaleDType::kF16}},
  };
  for (const auto& [name, recipe] : recipes) {
    // Both axes from one read (TransformerEngine's rowwise + columnwise), with the GEMM-ready
    // swizzled scales where the recipe has them.
    const bool swizzle = spec_of(recipe).byte_block_scales();
    const std::string both_name = "cast_for_gemm " + name + (swizzle ? " both+swizzled" : " both");
    if (wanted(both_name)) {
      const GemmCastOptions both{.swizzled_scales = swizzle, .context = {.allocator = &allocator}};
      GemmCast pair = cast_for_gemm(x, recipe, both);
      const double both_ms = median_ms([&] { pair = cast_for_gemm(x, recipe, both); });
      std::int64_t both_bytes = x.nbytes() + bytes_of(*pair.rowwise);
      if (pair.columnwise->data().data() != pair.rowwise->data().data())
        both_bytes += pair.columnwise->data().nbytes();
      if (pair.columnwise->scale().data() != pair.rowwise->scale().data())
        both_bytes += pair.columnwise->scale().nbytes();
      if (pair.rowwise_swizzled_scale)
        both_bytes +=
            pair.rowwise_swizzled_scale->nbytes() + pair.columnwise_swizzled_scale->nbytes();
      const double both_gbs = static_cast<double>(both_bytes) / both_ms / 1e6;
      row(both_name, both_ms, both_gbs, "GB/s", both_gbs / copy_gbs);
    }
    for (int axis : {-1, -2}) {
      const std::string cast_name = "cast " + name + (axis == -1 ? " rowwise" : " colwise");
      const std::string dequantize_name = "dequantize " + name + " -> bf16";
      if (!wanted(cast_name) && !(axis == -1 && wanted(dequantize_name))) continue;
      ScaledTensor result =
          cast(x, recipe, CastOptions{.axis = axis, .context = {.allocator = &allocator}});
      if (wanted(cast_name)) {
        const double ms = median_ms([&] {
          result = cast(x, recipe, CastOptions{.axis = axis, .context = {.allocator = &allocator}});
        });
        const double gbs = static_cast<double>(x.nbytes() + bytes_of(result)) / ms / 1e6;
        row(cast_name, ms, gbs, "GB/s", gbs / copy_gbs);
      }
      if (axis == -1 && wanted(dequantize_name)) {
        Array out;
        const double dq_ms =
            median_ms([&] { out = dequantize(result, DType::kBF16, {.allocator = &allocator}); });
        const double dq_gbs = static_cast<double>(bytes_of(result) + x.nbytes()) / dq_ms / 1e6;
        row(dequantize_name, dq_ms, dq_gbs, "GB/s", dq_gbs / copy_gbs);
      }
    }
  }

  // --- GEMMs ----------------------------------------------------------------------------------
  if (!kernels::cuda::has_cutlass_gemm()) return 0;
  constexpr double kPeak = 1979.0;  // dense FP8 TFLOP/s, H100 SXM datasheet
  auto gemm_row = [&](const std::string& name, std::int64_t m, std::int64_t n, std::int64_t k,
                      const Recipe& ra, const Recipe& rb, int b_axis, DType out_dtype) {
    const std::string full_name =
        name + " " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    if (!wanted(full_name)) return;
    const Array a_wide = random_bf16({m, k}, allocator, 3);
    // b = w.T for a weight w (N x K), as torch._scaled_mm takes it.
    const Array w_wide = random_bf16({n, k}, allocator, 4);
    const ScaledTensor a = cast(a_wide, ra, CastOptions{.context = {.allocator = &allocator}});
    const ScaledTensor w =
        cast(w_wide, rb, CastOptions{.axis = b_axis, .context = {.allocator = &allocator}});
    auto t = [](const Array& x) {
      if (x.ndim() < 2) return x;
      return Array::borrow(x.data(), x.dtype(), {x.shape()[1], x.shape()[0]},
                           {x.strides()[1], x.strides()[0]}, x.device(), x.owner());
    };
    const Layout layout =
        std::holds_alternative<PerTensor>(w.layout()) ? w.layout() : Layout{PerBlockMN{128, 128}};
    const ScaledTensor b = from_buffer(t(w.data()), t(w.scale()), w.recipe(), layout);
    Array out;
    const double ms =
        median_ms([&] { out = matmul(a, b, out_dtype, {.allocator = &allocator}); }, 3, 10);
    const double tflops = 2.0 * m * n * k / ms / 1e9;
    row(full_name, ms, tflops, "TFLOP/s", tflops / kPeak);
  };
  std::printf("| GEMM | ms | rate | vs FP8 peak |\n|---|---|---|---|\n");
  gemm_row("fp8 per-tensor e4m3 x e4m3 -> bf16", 8192, 8192, 8192, Float8CurrentScaling{},
           Float8CurrentScaling{}, -1, DType::kBF16);
  gemm_row("fp8 per-tensor e4m3 x e5m2 -> bf16", 8192, 8192, 8192, Float8CurrentScaling{},
           Float8CurrentScaling{Fp8Format::kE5M2}, -1, DType::kBF16);
  const Recipe act = Float8BlockScaling{};
  const Recipe weight = Float8BlockScaling{Fp8Format::kE4M3, 128, 128, true};
  const std::vector<std::pair<std::int64_t, std::int64_t>> deepseek = {
      {2112, 7168}, {7168, 16384}, {4096, 7168}, {24576, 1536}};
  for (std::int64_t m : {128, 4096}) {
    for (auto [n, k] : deepseek)
      gemm_row("fp8 block 1x128 x 128x128 -> bf16", m, n, k, act, weight, -1, DType::kBF16);
  }

  // The emulated block formats: b (K x N) cast with its blocks along K.
  auto emulated_row = [&](const std::string& name, std::int64_t m, std::int64_t n, std::int64_t k,
                          const std::optional<Recipe>& ra, const Recipe& rb) {
    const std::string full_name =
        name + " " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    if (!wanted(full_name)) return;
    const Array a_wide = random_bf16({m, k}, allocator, 5);
    const Array b_wide = random_bf16({k, n}, allocator, 6);
    const Operand a =
        ra ? Operand{cast(a_wide, *ra, CastOptions{.context = {.allocator = &allocator}})}
           : Operand{a_wide};
    const ScaledTensor b =
        cast(b_wide, rb, CastOptions{.axis = -2, .context = {.allocator = &allocator}});
    Array out;
    const double ms =
        median_ms([&] { out = matmul(a, b, DType::kBF16, {.allocator = &allocator}); }, 3, 10);
    const double tflops = 2.0 * m * n * k / ms / 1e9;
    row(full_name, ms, tflops, "TFLOP/s", tflops / kPeak);
  };
  std::vector<std::array<std::int64_t, 3>> shapes = {{8192, 8192, 8192}};
  for (std::int64_t m : {128, 4096}) {
    for (auto [n, k] : deepseek) shapes.push_back({m, n, k});
  }
  for (const auto& [m, n, k] : shapes) {
    emulated_row("emulated mxfp8 x mxfp8 -> bf16", m, n, k, MXFP8BlockScaling{},
                 MXFP8BlockScaling{});
    emulated_row("emulated nvfp4 x nvfp4 -> bf16", m, n, k, NVFP4BlockScaling{},
                 NVFP4BlockScaling{});
    emulated_row("emulated bf16 x int4 g128 (W4A16) -> bf16", m, n, k, std::nullopt, INT4Scaling{});
  }

  // A GEMM's two tile schedules side by side at each shape, the dispatcher's choice marked.
  // Weights (N, K) as checkpoints store them; `alpha`: per-tensor scales' product, or null for
  // block scales (read from the operands).
  namespace gemm = kernels::cuda::gemm;
  const auto schedule_table =
      [&](const std::vector<std::int64_t>& row_counts,
          const std::vector<std::pair<std::int64_t, std::int64_t>>& nk, const Recipe& act,
          const Recipe& weight, const float* alpha,
          const std::function<gemm::Launcher(gemm::TileSchedule)>& launcher,
          const std::function<gemm::TileSchedule(int, int, int, int)>& dispatcher) {
        for (std::int64_t m : row_counts) {
          for (auto [n, k] : nk) {
            const ScaledTensor a = cast(random_bf16({m, k}, allocator, 7), act,
                                        CastOptions{.context = {.allocator = &allocator}});
            const ScaledTensor w = cast(random_bf16({n, k}, allocator, 8), weight,
                                        CastOptions{.context = {.allocator = &allocator}});
            const Array out = Array::empty(DType::kBF16, {m, n}, a.device(), &allocator);
            gemm::Problem p;
            p.m = static_cast<int>(m);
            p.n = static_cast<int>(n);
            p.k = static_cast<int>(k);
            p.a = a.data().data();
            p.b = w.data().data();
            p.d = out.data();
            p.alpha = alpha;
            if (alpha == nullptr) {
              p.scale_a = a.scale().data_as<const float>();
              p.scale_b = w.scale().data_as<const float>();
            }
            const Context context{.allocator = &allocator};
            double ms[2];
            for (auto schedule : {gemm::TileSchedule::kPersistent, gemm::TileSchedule::kStreamK}) {
              const gemm::Launcher launch = launcher(schedule);
              ms[static_cast<int>(schedule)] =
                  median_ms([&] { launch(p, context, a.device()); }, 3, 20);
            }
            const bool stream_k =
                dispatcher(p.m, p.n, p.k, prop.multiProcessorCount) == gemm::TileSchedule::kStreamK;
            std::printf("| %ld x %ld x %ld | %.4f | %.4f | %.2f | %s |\n", static_cast<long>(m),
                        static_cast<long>(n), static_cast<long>(k), ms[0], ms[1], ms[0] / ms[1],
                        stream_k ? "stream-K" : "persistent");
          }
        }
      };

  // The block GEMM's schedules: the data behind kernels::cuda::gemm::blockwise_schedule.
  if (wanted("block schedule")) {
    std::printf(
        "\n| block schedule M x N x K | persistent ms | stream-K ms | stream-K speed-up | "
        "dispatcher |\n|---|---|---|---|---|\n");
    schedule_table(
        {1, 16, 64, 128, 256, 512, 1024, 2048, 4096},
        {{2112, 7168}, {7168, 16384}, {4096, 7168}, {24576, 1536}, {7168, 2048}}, act, weight,
        nullptr, [](gemm::TileSchedule s) { return gemm::blockwise_launcher(DType::kBF16, s); },
        gemm::blockwise_schedule);
  }

  // The per-tensor GEMM's two configurations (128 x 256 tiles, persistent; 128 x 128 tiles,
  // stream-K): the data behind kernels::cuda::gemm::per_tensor_schedule.
  if (wanted("per-tensor schedule")) {
    std::printf(
        "\n| per-tensor schedule M x N x K | persistent 128x256 ms | stream-K 128x128 ms | "
        "stream-K speed-up | dispatcher |\n|---|---|---|---|---|\n");
    Array host_one = Array::empty(DType::kF32, {1});
    host_one.data_as<float>()[0] = 1.0f;
    const Array one = cuda_test::to_device(host_one, allocator);
    schedule_table(
        {1, 16, 64, 128, 512, 1024, 4096, 8192},
        {{2112, 7168}, {7168, 16384}, {4096, 7168}, {24576, 1536}, {8192, 8192}},
        Float8CurrentScaling{}, Float8CurrentScaling{}, one.data_as<const float>(),
        [](gemm::TileSchedule s) {
          return gemm::per_tensor_launcher(DType::kE4M3, DType::kBF16, s);
        },
        gemm::per_tensor_schedule);
  }
  return 0;
}
