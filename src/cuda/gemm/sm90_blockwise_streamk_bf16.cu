// DeepSeek block-scaled FP8 GEMM: E4M3 (1 x 128) x E4M3 (128 x 128) -> bf16, stream-K (K split
// across SMs that whole tiles would leave idle).
#include "cuda/gemm/sm90_cutlass_gemm.cuh"

namespace breccia::kernels::cuda::gemm {
void blockwise_streamk_bf16(const Problem& p, const Context& c, Device d) {
  blockwise_gemm<cutlass::bfloat16_t, cutlass::gemm::StreamKScheduler>(p, c, d);
}
}  // namespace breccia::kernels::cuda::gemm
