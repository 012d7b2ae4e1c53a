// Emulated block formats as bf16: bf16 x bf16, B N-major (K x N) -> f32.
#include "cuda/gemm/sm90_cutlass_gemm.cuh"

namespace breccia::kernels::cuda::gemm {
void bf16_nn_f32(const Problem& p, const Context& c, Device d) {
  bf16_gemm<float, false>(p, c, d);
}
}  // namespace breccia::kernels::cuda::gemm
