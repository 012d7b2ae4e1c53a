// Per-tensor FP8 GEMMs (persistent and stream-K schedules): E4M3 x E5M2 -> f16.
#include "cuda/gemm/sm90_cutlass_gemm.cuh"

namespace breccia::kernels::cuda::gemm {
void per_tensor_e5m2_f16(const Problem& p, const Context& c, Device d) {
  per_tensor_gemm<cutlass::float_e5m2_t, cutlass::half_t>(p, c, d);
}
void per_tensor_streamk_e5m2_f16(const Problem& p, const Context& c, Device d) {
  per_tensor_gemm<cutlass::float_e5m2_t, cutlass::half_t, cutlass::gemm::StreamKScheduler>(p, c, d);
}
}  // namespace breccia::kernels::cuda::gemm
