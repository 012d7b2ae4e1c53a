// The table of GEMM instances (each defined in its own file of this folder).
#include "cuda/gemm/gemm.hpp"

namespace breccia::kernels::cuda::gemm {

void per_tensor_e4m3_bf16(const Problem&, const Context&, Device);
void per_tensor_e4m3_f16(const Problem&, const Context&, Device);
void per_tensor_e4m3_f32(const Problem&, const Context&, Device);
void per_tensor_e5m2_bf16(const Problem&, const Context&, Device);
void per_tensor_e5m2_f16(const Problem&, const Context&, Device);
void per_tensor_e5m2_f32(const Problem&, const Context&, Device);
void per_tensor_streamk_e4m3_bf16(const Problem&, const Context&, Device);
void per_tensor_streamk_e4m3_f16(const Problem&, const Context&, Device);
void per_tensor_streamk_e4m3_f32(const Problem&, const Context&, Device);
void per_tensor_streamk_e5m2_bf16(const Problem&, const Context&, Device);
void per_tensor_streamk_e5m2_f16(const Problem&, const Context&, Device);
void per_tensor_streamk_e5m2_f32(const Problem&, const Context&, Device);
void blockwise_bf16(const Problem&, const Context&, Device);
void blockwise_f16(const Problem&, const Context&, Device);
void blockwise_f32(const Problem&, const Context&, Device);
void blockwise_streamk_bf16(const Problem&, const Context&, Device);
void blockwise_streamk_f16(const Problem&, const Context&, Device);
void blockwise_streamk_f32(const Problem&, const Context&, Device);
void bf16_tn_bf16(const Problem&, const Context&, Device);
void bf16_tn_f16(const Problem&, const Context&, Device);
void bf16_tn_f32(const Problem&, const Context&, Device);
void bf16_nn_bf16(const Problem&, const Context&, Device);
void bf16_nn_f16(const Problem&, const Context&, Device);
void bf16_nn_f32(const Problem&, const Context&, Device);

Launcher per_tensor_launcher(DType b_dtype, DType out_dtype, TileSchedule schedule) {
  const bool e4m3 = b_dtype == DType::kE4M3;
  const bool stream_k = schedule == TileSchedule::kStreamK;
  switch (out_dtype) {
    case DType::kBF16:
      if (stream_k) return e4m3 ? per_tensor_streamk_e4m3_bf16 : per_tensor_streamk_e5m2_bf16;
      return e4m3 ? per_tensor_e4m3_bf16 : per_tensor_e5m2_bf16;
    case DType::kF16:
      if (stream_k) return e4m3 ? per_tensor_streamk_e4m3_f16 : per_tensor_streamk_e5m2_f16;
      return e4m3 ? per_tensor_e4m3_f16 : per_tensor_e5m2_f16;
    case DType::kF32:
      if (stream_k) return e4m3 ? per_tensor_streamk_e4m3_f32 : per_tensor_streamk_e5m2_f32;
      return e4m3 ? per_tensor_e4m3_f32 : per_tensor_e5m2_f32;
    default:
      return nullptr;
  }
}

Launcher blockwise_launcher(DType out_dtype, TileSchedule schedule) {
  const bool stream_k = schedule == TileSchedule::kStreamK;
  switch (out_dtype) {
    case DType::kBF16:
      return stream_k ? blockwise_streamk_bf16 : blockwise_bf16;
    case DType::kF16:
      return stream_k ? blockwise_streamk_f16 : blockwise_f16;
    case DType::kF32:
      return stream_k ? blockwise_streamk_f32 : blockwise_f32;
    default:
      return nullptr;
  }
}

Launcher bf16_launcher(DType out_dtype, bool b_k_major) {
  switch (out_dtype) {
    case DType::kBF16:
      return b_k_major ? bf16_tn_bf16 : bf16_nn_bf16;
    case DType::kF16:
      return b_k_major ? bf16_tn_f16 : bf16_nn_f16;
    case DType::kF32:
      return b_k_major ? bf16_tn_f32 : bf16_nn_f32;
    default:
      return nullptr;
  }
}

}  // namespace breccia::kernels::cuda::gemm
