// The tensor-core GEMMs behind scaled_matmul. Operands arrive K-major (A: M x K row-major,
// B: N x K row-major), D is M x N row-major.
#pragma once

#include "breccia/kernels/cuda.hpp"

namespace breccia::kernels::cuda::gemm {

struct Problem {
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;        // E4M3, M x K
  const void* b = nullptr;        // E4M3 or E5M2, N x K
  void* d = nullptr;              // M x N
  const float* alpha = nullptr;   // per-tensor: scale_a * scale_b on the device
  const float* scale_a = nullptr; // blockwise: M x ceil(K/128), K-major
  const float* scale_b = nullptr; // blockwise: ceil(K/128) x ceil(N/128), N-major
};

// One CUTLASS kernel instance (src/cuda/gemm/*.cu).
using Launcher = void (*)(const Problem& problem, const Context& context, Device device);

// Null when this build has no such instance.
Launcher per_tensor_launcher(DType b_dtype, DType out_dtype);
Launcher blockwise_launcher(DType out_dtype);

// Prepares operands (B to K-major, the per-tensor alpha) and runs the GEMM into `out`.
void run(GemmKind kind, const ScaledTensor& a, const ScaledTensor& b, const Array& out,
         const Context& context);

}  // namespace breccia::kernels::cuda::gemm
