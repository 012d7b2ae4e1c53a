// Every one of the 2^32 fp32 bit patterns through the device's element encoders (the ones the
// cast kernels use: rules::encode_element on the device, which is the hardware FP8 conversion
// with the NaN fix-up and the Minifloat rule for E2M1 and FP6, the bf16/fp16 output rounding,
// and the fast encoders of NaN-free tiles: FP8 quads and E2M1 by rounding) compared with
// formats::Minifloat::encode evaluated on the host CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <thread>
#include <vector>

#include "cuda/cuda_support.hpp"
#include "cuda/scale_rules.cuh"

namespace breccia {
namespace {

using cuda_detail::Wide;

constexpr std::uint64_t kChunk = std::uint64_t{1} << 28;

// The fast FP8 conversion gets (x, -x, -x, x), so each of its four bytes sees every pattern.
__global__ void encode_chunk(std::uint64_t first, std::uint8_t* e4m3, std::uint8_t* e5m2,
                             std::uint8_t* e2m1, std::uint16_t* bf16, std::uint16_t* f16,
                             std::uint32_t* e4m3_quad, std::uint32_t* e5m2_quad,
                             std::uint8_t* e2m1_fast, std::uint8_t* e2m3, std::uint8_t* e3m2) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
       i < kChunk; i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const float x = __uint_as_float(static_cast<std::uint32_t>(first + i));
    e4m3[i] = rules::encode_element<ElementFormat::kE4M3>(x);
    e5m2[i] = rules::encode_element<ElementFormat::kE5M2>(x);
    e2m1[i] = rules::encode_element<ElementFormat::kE2M1>(x);
    e2m3[i] = rules::encode_element<ElementFormat::kE2M3>(x);
    e3m2[i] = rules::encode_element<ElementFormat::kE3M2>(x);
    bf16[i] = cuda_detail::from_float<Wide::kBF16>(x);
    f16[i] = cuda_detail::from_float<Wide::kF16>(x);
    e4m3_quad[i] = cuda_detail::fast_fp8_quad<ElementFormat::kE4M3>(x, -x, -x, x);
    e5m2_quad[i] = cuda_detail::fast_fp8_quad<ElementFormat::kE5M2>(x, -x, -x, x);
    e2m1_fast[i] = static_cast<std::uint8_t>(cuda_detail::fast_e2m1(x));
  }
}

TEST(CudaExhaustive, ElementEncodersMatchTheHostRuleForAllFp32Patterns) {
  std::uint8_t *e4m3 = nullptr, *e5m2 = nullptr, *e2m1 = nullptr;
  std::uint16_t *bf16 = nullptr, *f16 = nullptr;
  cuda_test::check(cudaMalloc(&e4m3, kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e5m2, kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e2m1, kChunk), "malloc");
  cuda_test::check(cudaMalloc(&bf16, 2 * kChunk), "malloc");
  cuda_test::check(cudaMalloc(&f16, 2 * kChunk), "malloc");
  std::uint32_t *e4m3_quad = nullptr, *e5m2_quad = nullptr;
  std::uint8_t *e2m1_fast = nullptr, *e2m3 = nullptr, *e3m2 = nullptr;
  cuda_test::check(cudaMalloc(&e2m3, kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e3m2, kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e4m3_quad, 4 * kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e5m2_quad, 4 * kChunk), "malloc");
  cuda_test::check(cudaMalloc(&e2m1_fast, kChunk), "malloc");
  std::vector<std::uint8_t> h_e4m3(kChunk), h_e5m2(kChunk), h_e2m1(kChunk);
  std::vector<std::uint16_t> h_bf16(kChunk), h_f16(kChunk);
  std::vector<std::uint32_t> h_e4m3_quad(kChunk), h_e5m2_quad(kChunk);
  std::vector<std::uint8_t> h_e2m1_fast(kChunk), h_e2m3(kChunk), h_e3m2(kChunk);
  constexpr int kChecks = 10;
  std::atomic<std::uint64_t> mismatches[kChecks] = {};
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());

  for (std::uint64_t first = 0; first < (std::uint64_t{1} << 32); first += kChunk) {
    encode_chunk<<<4096, 256>>>(first, e4m3, e5m2, e2m1, bf16, f16, e4m3_quad, e5m2_quad, e2m1_fast,
                                e2m3, e3m2);
    cuda_test::check(cudaGetLastError(), "launch");
    cuda_test::check(cudaMemcpy(h_e4m3.data(), e4m3, kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_e5m2.data(), e5m2, kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_e2m1.data(), e2m1, kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_bf16.data(), bf16, 2 * kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_f16.data(), f16, 2 * kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_e4m3_quad.data(), e4m3_quad, 4 * kChunk, cudaMemcpyDeviceToHost),
                     "copy");
    cuda_test::check(cudaMemcpy(h_e5m2_quad.data(), e5m2_quad, 4 * kChunk, cudaMemcpyDeviceToHost),
                     "copy");
    cuda_test::check(cudaMemcpy(h_e2m1_fast.data(), e2m1_fast, kChunk, cudaMemcpyDeviceToHost),
                     "copy");
    cuda_test::check(cudaMemcpy(h_e2m3.data(), e2m3, kChunk, cudaMemcpyDeviceToHost), "copy");
    cuda_test::check(cudaMemcpy(h_e3m2.data(), e3m2, kChunk, cudaMemcpyDeviceToHost), "copy");
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        std::uint64_t local[kChecks] = {};
        for (std::uint64_t i = w; i < kChunk; i += workers) {
          const float x = std::bit_cast<float>(static_cast<std::uint32_t>(first + i));
          local[0] += h_e4m3[i] != formats::E4M3::encode(x);
          local[1] += h_e5m2[i] != formats::E5M2::encode(x);
          local[2] += h_e2m1[i] != formats::E2M1::encode(x);
          local[3] += h_bf16[i] != formats::BF16::encode(x, formats::Overflow::kInfinity);
          local[4] += h_f16[i] != formats::F16::encode(x, formats::Overflow::kInfinity);
          local[8] += h_e2m3[i] != formats::E2M3::encode(x);
          local[9] += h_e3m2[i] != formats::E3M2::encode(x);
          if (std::isnan(x)) continue;  // the fast encoders only see NaN-free tiles
          const std::uint32_t e4m3_x = formats::E4M3::encode(x),
                              e4m3_neg = formats::E4M3::encode(-x);
          const std::uint32_t e5m2_x = formats::E5M2::encode(x),
                              e5m2_neg = formats::E5M2::encode(-x);
          local[5] += h_e4m3_quad[i] != (e4m3_x | e4m3_neg << 8 | e4m3_neg << 16 | e4m3_x << 24);
          local[6] += h_e5m2_quad[i] != (e5m2_x | e5m2_neg << 8 | e5m2_neg << 16 | e5m2_x << 24);
          local[7] += h_e2m1_fast[i] != formats::E2M1::encode(x);
        }
        for (int f = 0; f < kChecks; ++f) mismatches[f] += local[f];
      });
    }
    for (std::thread& t : threads) t.join();
  }
  EXPECT_EQ(mismatches[0].load(), 0u) << "E4M3";
  EXPECT_EQ(mismatches[1].load(), 0u) << "E5M2";
  EXPECT_EQ(mismatches[2].load(), 0u) << "E2M1";
  EXPECT_EQ(mismatches[3].load(), 0u) << "bf16";
  EXPECT_EQ(mismatches[4].load(), 0u) << "fp16";
  EXPECT_EQ(mismatches[5].load(), 0u) << "fast E4M3 quads";
  EXPECT_EQ(mismatches[6].load(), 0u) << "fast E5M2 quads";
  EXPECT_EQ(mismatches[7].load(), 0u) << "fast E2M1";
  EXPECT_EQ(mismatches[8].load(), 0u) << "E2M3";
  EXPECT_EQ(mismatches[9].load(), 0u) << "E3M2";
  for (void* p : {static_cast<void*>(e4m3), static_cast<void*>(e5m2), static_cast<void*>(e2m1),
                  static_cast<void*>(bf16), static_cast<void*>(f16), static_cast<void*>(e4m3_quad),
                  static_cast<void*>(e5m2_quad), static_cast<void*>(e2m1_fast),
                  static_cast<void*>(e2m3), static_cast<void*>(e3m2)}) {
    cudaFree(p);
  }
}

// INT4's quotient from a multiply (the fast path) against numerics::int4_rounded_quotient, the
// reference's rne(fl(x / s)), for every fp16 scale (normal and subnormal) and x placed on and
// around each half-integer multiple of it (where the two could part) and at random.
__global__ void int4_quotients(std::uint32_t* mismatches) {
  const std::uint32_t scale_bits = blockIdx.x + 1;  // fp16 0x0001 .. 0x7BFF
  const float scale = formats::F16::decode(scale_bits);
  cuda_detail::TileScale t;
  t.factor = scale;
  t.inverse = __frcp_rn(scale);
  std::uint32_t wrong = 0;
  std::uint32_t state = scale_bits * 2654435761u + threadIdx.x;
  for (int k = -34; k <= 34; ++k) {  // (k / 2) * s: every integer and half-integer in [-17, 17]
    const float center = __fmul_rn(0.5f * k, scale);
    for (int step = -8; step <= 8; ++step) {
      const float x =
          __uint_as_float(__float_as_uint(center) + step * static_cast<int>(threadIdx.x + 1));
      wrong += cuda_detail::int4_level(x, t) != numerics::int4_rounded_quotient(x, scale);
    }
  }
  for (int i = 0; i < 64; ++i) {
    state = state * 1664525u + 1013904223u;
    const float x = __fmul_rn((static_cast<float>(state >> 8) * 0x1p-24f - 0.5f) * 40.0f, scale);
    wrong += cuda_detail::int4_level(x, t) != numerics::int4_rounded_quotient(x, scale);
  }
  atomicAdd(mismatches, wrong);
}

TEST(CudaExhaustive, Int4FastQuotientMatchesTheExactRule) {
  std::uint32_t* mismatches = nullptr;
  cuda_test::check(cudaMalloc(&mismatches, sizeof(std::uint32_t)), "malloc");
  cuda_test::check(cudaMemset(mismatches, 0, sizeof(std::uint32_t)), "memset");
  int4_quotients<<<0x7BFF, 256>>>(mismatches);
  cuda_test::check(cudaGetLastError(), "launch");
  std::uint32_t host = 0;
  cuda_test::check(cudaMemcpy(&host, mismatches, sizeof(host), cudaMemcpyDeviceToHost), "copy");
  cudaFree(mismatches);
  EXPECT_EQ(host, 0u);
}

}  // namespace
}  // namespace breccia
