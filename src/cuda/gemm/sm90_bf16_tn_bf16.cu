// Emulated block formats as bf16: bf16 x bf16, B K-major (N x K) -> bf16.
#include "cuda/gemm/sm90_cutlass_gemm.cuh"

namespace breccia::kernels::cuda::gemm {
void bf16_tn_bf16(const Problem& p, const Context& c, Device d) {
  bf16_gemm<cutlass::bfloat16_t, true>(p, c, d);
}
}  // namespace breccia::kernels::cuda::gemm
