// Cast, dequantize and decoding-linear throughput per recipe, beside a memcpy of the same input in
// the same run: the ratio bytes/s(kernel) / bytes/s(memcpy) is what docs/performance.md records.
#include <benchmark/benchmark.h>

#include <bit>
#include <cstring>
#include <random>

#include "breccia/ops.hpp"

namespace {

using breccia::Array;
using breccia::DType;
using breccia::Recipe;

constexpr std::int64_t kRows = 1024;
constexpr std::int64_t kCols = 4096;

Array random_input() {
  Array x = Array::empty(DType::kF32, {kRows, kCols});
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = normal(rng);
  return x;
}

const Array& input() {
  static const Array x = random_input();
  return x;
}

void BM_Memcpy(benchmark::State& state) {
  const Array& x = input();
  Array y = Array::empty(DType::kF32, x.shape());
  for (auto _ : state) {
    std::memcpy(y.data(), x.data(), static_cast<std::size_t>(x.nbytes()));
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * x.nbytes());
}

void BM_Cast(benchmark::State& state, Recipe recipe) {
  const Array& x = input();
  for (auto _ : state) benchmark::DoNotOptimize(breccia::cast(x, recipe));
  state.SetBytesProcessed(state.iterations() * x.nbytes());
}

// The same values as bf16 (their top 16 bits): a checkpoint conversion's usual input.
const Array& bf16_input() {
  static const Array x = [] {
    Array y = Array::empty(DType::kBF16, input().shape());
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      y.data_as<std::uint16_t>()[i] = static_cast<std::uint16_t>(
          std::bit_cast<std::uint32_t>(input().data_as<float>()[i]) >> 16);
    }
    return y;
  }();
  return x;
}

void BM_CastBf16(benchmark::State& state, Recipe recipe) {
  const Array& x = bf16_input();
  for (auto _ : state) benchmark::DoNotOptimize(breccia::cast(x, recipe));
  state.SetBytesProcessed(state.iterations() * x.nbytes());
}

void BM_Dequantize(benchmark::State& state, Recipe recipe) {
  const breccia::ScaledTensor scaled = breccia::cast(input(), recipe);
  for (auto _ : state) benchmark::DoNotOptimize(breccia::dequantize(scaled));
  state.SetBytesProcessed(state.iterations() * input().nbytes());
}

// A decoding step: one row of x times a (4096, 4096) weight cast from input()'s values
// (repeated), through linear()'s small-M CPU kernel.
void BM_LinearRow(benchmark::State& state, Recipe recipe) {
  Array w = Array::empty(DType::kF32, {kCols, kCols});
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    w.data_as<float>()[i] = input().data_as<const float>()[i % input().numel()];
  }
  const breccia::ScaledTensor weight = breccia::cast(w, recipe);
  Array x = Array::empty(DType::kF32, {1, kCols});
  std::memcpy(x.data(), input().data(), static_cast<std::size_t>(x.nbytes()));
  for (auto _ : state) benchmark::DoNotOptimize(breccia::linear(x, weight));
  state.SetBytesProcessed(state.iterations() * weight.data().nbytes());
}

BENCHMARK(BM_Memcpy);
BENCHMARK_CAPTURE(BM_Cast, DelayedScaling, breccia::DelayedScaling{});
BENCHMARK_CAPTURE(BM_Cast, Float8CurrentScaling, breccia::Float8CurrentScaling{});
BENCHMARK_CAPTURE(BM_Cast, Float8BlockScaling, breccia::Float8BlockScaling{});
BENCHMARK_CAPTURE(BM_Cast, MXFP8BlockScaling, breccia::MXFP8BlockScaling{});
BENCHMARK_CAPTURE(BM_Cast, NVFP4BlockScaling, breccia::NVFP4BlockScaling{});
BENCHMARK_CAPTURE(BM_Cast, INT4Scaling, breccia::INT4Scaling{});
BENCHMARK_CAPTURE(BM_CastBf16, Float8BlockScaling128x128,
                  breccia::Float8BlockScaling{.block_k = 128, .block_m = 128});
BENCHMARK_CAPTURE(BM_CastBf16, MXFP8BlockScaling, breccia::MXFP8BlockScaling{});
BENCHMARK_CAPTURE(BM_Dequantize, Float8CurrentScaling, breccia::Float8CurrentScaling{});
BENCHMARK_CAPTURE(BM_Dequantize, MXFP8BlockScaling, breccia::MXFP8BlockScaling{});
BENCHMARK_CAPTURE(BM_Dequantize, NVFP4BlockScaling, breccia::NVFP4BlockScaling{});
BENCHMARK_CAPTURE(BM_Dequantize, INT4Scaling, breccia::INT4Scaling{});
BENCHMARK_CAPTURE(BM_LinearRow, MXFP8BlockScaling, breccia::MXFP8BlockScaling{});
BENCHMARK_CAPTURE(BM_LinearRow, NVFP4BlockScaling, breccia::NVFP4BlockScaling{});
BENCHMARK_CAPTURE(BM_LinearRow, INT4Scaling, breccia::INT4Scaling{});

}  // namespace

BENCHMARK_MAIN();
