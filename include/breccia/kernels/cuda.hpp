// CUDA kernels (sm_90a, with a compute_90 PTX fallback): cast and dequantize for every recipe,
// bit-identical to the reference kernels, and FP8 GEMMs on Hopper's tensor cores. Built when
// BRECCIA_CUDA is on; the ops (breccia::cast / dequantize / matmul) route CUDA arrays here.
//
// Every output comes from the caller's Allocator (a framework passes its caching allocator),
// and every kernel runs on the caller's stream (a cudaStream_t passed as void*; null is the
// legacy default stream). Nothing here calls cudaMalloc per call.
#pragma once

#include <cstdint>
#include <span>

#include "breccia/array.hpp"
#include "breccia/kernels/cast_target.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia::kernels::cuda {

// Where a CUDA op allocates and runs.
struct Context {
  Allocator* allocator = nullptr;  // required for every op that allocates
  void* stream = nullptr;          // cudaStream_t
};

// True when this build has the CUDA kernels (BRECCIA_CUDA=ON).
bool built();
// True when the build also has the CUTLASS GEMMs (CUTLASS headers were found at configure).
bool has_cutlass_gemm();

// The cast on the GPU: x is contiguous fp32/fp16/bf16/fp64 on a CUDA device. `targets` holds
// one plan, or the rowwise and columnwise plans of one block recipe, which one read of x
// fills together (TransformerEngine's rowwise + columnwise quantization); with 2-D tiles
// (128 x 128, NVFP4 two_d) both give the same codes and must share one data array. Per-tensor
// recipes run an amax reduction (CUB) and then the cast; with `state` (DelayedScaling) the
// cast uses the state's scale, takes the amax in the same pass, and updates the state after
// the stream synchronises. NVFP4 reduces the tensor amax, then runs one fused pass; the other
// block recipes are one fused pass (tile amax, scale, encode, pack).
void cast(const Array& x, std::span<const CastTarget> targets, DelayedScalingState* state,
          const Context& context);

// decode(data) * scale into `out` (fp32/fp16/bf16/fp64, plan.logical_shape), on the GPU.
void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out,
                const Context& context);

// amax (NaN-propagating) of a contiguous wide-float CUDA array, written to the fp32 `amax`
// (one element, same device).
void amax(const Array& x, const Array& amax_out, const Context& context);

// Which tensor-core GEMM can take a pair of 2-D CUDA ScaledTensors (a: M x K rowwise, b: K x N).
enum class GemmKind : std::uint8_t {
  kNone,            // no kernel for this pair: the caller falls back to dequantize + GEMM
  kFp8PerTensor,    // E4M3 x E4M3 or E4M3 x E5M2, per-tensor scales (Float8Current/Delayed)
  kFp8Blockwise,    // DeepSeek: a 1 x 128 (rowwise), b 128 x 128 blocks, power-of-2 or fp32
};
GemmKind gemm_kind(const ScaledTensor& a, const ScaledTensor& b);

// c = dequantize(a) @ dequantize(b) on the tensor cores, accumulated in fp32 and rounded to
// out_dtype (fp32, fp16 or bf16). a: (M, K) rowwise-blocked data; b: (K, N) data whose
// blocks run along K (axis=-2 for 1-D blocks). Throws UnsupportedError (naming the reason)
// when gemm_kind(a, b) is kNone or a shape is outside what the kernel takes (K or N not a
// multiple of 16, say); callers fall back to a correct path then.
Array scaled_matmul(const ScaledTensor& a, const ScaledTensor& b, DType out_dtype,
                    const Context& context);

}  // namespace breccia::kernels::cuda
