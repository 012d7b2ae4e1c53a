// The tensor-core GEMMs behind kernels::cuda::matmul. A is M x K row-major, D is M x N
// row-major; B is N x K row-major (K-major) for every kernel, or K x N row-major (N-major)
// for the bf16 ones.
#pragma once

#include "breccia/kernels/cuda.hpp"

namespace breccia::kernels::cuda::gemm {

struct Problem {
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;  // E4M3 or bf16, M x K
  const void* b = nullptr;  // E4M3, E5M2 or bf16
  void* d = nullptr;        // M x N
  const float* alpha =
      nullptr;  // per-tensor and bf16: the product of per-tensor factors, on the device
  const float* scale_a = nullptr;  // blockwise: M x ceil(K/128), K-major
  const float* scale_b = nullptr;  // blockwise: ceil(N/128) x ceil(K/128), K-major
};

// One CUTLASS kernel instance (src/cuda/gemm/*.cu).
using Launcher = void (*)(const Problem& problem, const Context& context, Device device);

// How a GEMM spreads its output tiles over the SMs.
enum class TileSchedule : std::uint8_t {
  kPersistent,  // whole tiles per SM
  kStreamK,     // also K split across SMs that whole tiles would leave idle
};
// Null when this build has no such instance. Per tensor, kPersistent is the 128 x 256 tile
// (2 x 1 cluster) for large problems, kStreamK a 128 x 128 tile (1 x 2 cluster) with K split
// across the SMs for problems of at most half a wave of large tiles (decoding, small batches).
Launcher per_tensor_launcher(DType b_dtype, DType out_dtype, TileSchedule schedule);
// The per-tensor schedule for M x N x K on `sms` SMs: stream-K when the large tiles would fill
// at most half of the SMs (measured on an H200: stream-K 1.2-1.6x faster up to 64 of 132 tiles,
// even at 72, slower from 112; docs/performance.md).
TileSchedule per_tensor_schedule(int m, int n, int k, int sms);
Launcher blockwise_launcher(DType out_dtype, TileSchedule schedule);
// The schedule the dispatcher runs for an M x N x K problem on a GPU of `sms` SMs: stream-K
// only for long K (at least kStreamKMinK) with fewer than kStreamKWaves waves of tiles, the
// one region where it beat the persistent schedule on an H200 (by 3-13%; elsewhere it lost
// 3-28%: breccia-cuda-bench's schedule table, docs/performance.md).
inline constexpr int kStreamKMinK = 12288;
inline constexpr int kStreamKWaves = 4;
TileSchedule blockwise_schedule(int m, int n, int k, int sms);
Launcher bf16_launcher(DType out_dtype, bool b_k_major);

// Prepares the FP8 operands (B to K-major, the per-tensor alpha) and runs the GEMM into `out`.
void run(GemmKind kind, const ScaledTensor& a, const ScaledTensor& b, const Array& out,
         const Context& context);

// The emulated path: each operand to bf16 on the GPU (a plain bf16 array as it is), then the
// bf16 GEMM into `out` (M x N) with alpha = the operands' per-tensor factors. b_is_weight: b is
// the (N, K) weight of a linear layer, read as stored.
void run_emulated(const Operand& a, const Operand& b, bool b_is_weight, const Array& out,
                  const Context& context);

}  // namespace breccia::kernels::cuda::gemm
