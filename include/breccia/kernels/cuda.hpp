// CUDA kernels (sm_90a, with a compute_90 PTX fallback): cast and dequantize for every recipe,
// bit-identical to the reference kernels, and FP8 GEMMs on Hopper's tensor cores. Built when
// BRECCIA_CUDA is on; the ops (breccia::cast / dequantize / matmul / linear) route CUDA arrays
// here.
//
// Every output comes from the Context's allocator (a framework passes its caching allocator),
// and every kernel runs on its stream (a cudaStream_t passed as void*; null is the legacy
// default stream). Nothing here calls cudaMalloc per call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "breccia/array.hpp"
#include "breccia/context.hpp"
#include "breccia/kernels/cast_target.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/plan.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia::kernels::cuda {

// True when the build also has the CUTLASS GEMMs (CUTLASS headers were found at configure).
bool has_cutlass_gemm();

// A stream and device memory for work breccia does on its own, with no framework to lend its
// allocator (the checkpoint converter's device option): a non-blocking stream of its own on
// `device`, and an allocator of stream-ordered memory from a pool of its own that keeps freed
// memory for the next request. Arrays from it keep the stream and pool alive, so they may
// outlive the workspace. to_device and to_host copy an array (any strides) across, on that
// stream, and return when the copy is done. DeviceError when CUDA finds no such device.
class DeviceWorkspace {
 public:
  explicit DeviceWorkspace(Device device);
  ~DeviceWorkspace();
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;

  Device device() const;
  const Context& context() const;  // its allocator and stream, for the ops
  Array to_device(const Array& host) const;
  Array to_host(const Array& array) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Gives back every scratch block (GEMM workspaces, scale products) that the CUDA ops keep per
// device and stream for their next call (see Context::allocator). Call it before destroying a
// stream or an allocator whose memory breccia may still hold, or to return that memory.
void release_scratch();

// The cast on the GPU: x is contiguous fp32/fp16/bf16/fp64 on a CUDA device. `targets` holds
// one plan, or the rowwise and columnwise plans of one block recipe, which one read of x
// fills together (TransformerEngine's rowwise + columnwise quantization); with 2-D tiles
// (128 x 128, NVFP4 two_d) both give the same codes and must share one data array. Per-tensor
// recipes run an amax reduction (CUB) and then the cast; with `state` (DelayedScaling) the
// cast uses the state's scale, takes the amax in the same pass, and updates the state after
// the stream synchronises. NVFP4 reduces the tensor amax (or takes `tensor_amax`, the amax of
// a group of tensors sharing a global scale: not negative, a NaN the canonical one, as
// breccia::cast leaves it), then runs one fused pass; the other block recipes are one fused
// pass (tile amax, scale, encode, pack).
void cast(const Array& x, std::span<const CastTarget> targets, DelayedScalingState* state,
          const Context& context, std::optional<float> tensor_amax = std::nullopt);

// decode(data) * scale into `out` (fp32/fp16/bf16/fp64, plan.logical_shape), on the GPU. With
// `tensor_factors` false the per-tensor factor (an FP8 per-tensor scale, NVFP4's global_scale)
// is left out: decode(data) * block scale only, as the emulated GEMM reads its operands.
void dequantize(const QuantPlan& plan, const Array& data, const Array& scale,
                const Array& global_scale, const Array& zero_point, const Array& out,
                const Context& context, bool tensor_factors = true);

// Which tensor-core GEMM takes a pair of 2-D CUDA ScaledTensors (a: M x K, b: K x N).
enum class GemmKind : std::uint8_t {
  kNone,          // not a pair of 2-D ScaledTensors
  kFp8PerTensor,  // E4M3 x E4M3 or E4M3 x E5M2, per-tensor scales (Float8Current/Delayed)
  kFp8Blockwise,  // DeepSeek: a 1 x 128 (rowwise), b 128 x 128 blocks, power-of-2 or fp32
  kEmulated,      // anything else (the MX family, NVFP4, INT4, ...): see matmul
};
GemmKind gemm_kind(const ScaledTensor& a, const ScaledTensor& b);

// c = dequantize(a) @ dequantize(b) on the tensor cores, accumulated in fp32 and rounded to
// out_dtype (fp32, fp16 or bf16). a: (M, K); b: (K, N), or a transposed view of an (N, K)
// weight (strides (1, K)), whose blocks run along K for the FP8 kernels.
// - kFp8PerTensor / kFp8Blockwise: CUTLASS FP8 GEMMs with the scales applied in the kernel
//   (K and N multiples of 16).
// - The rest, which Hopper's tensor cores cannot scale (MXFP8's 32-element and NVFP4's
//   16-element blocks are finer than a wgmma's K), and plain bfloat16 arrays (W4A16 and the
//   like): each quantized operand is dequantized on the GPU to bf16 with its block scales,
//   leaving its per-tensor factor (an FP8 per-tensor scale, NVFP4's global_scale) to the
//   GEMM's alpha, and a CUTLASS bf16 GEMM multiplies them (K and N multiples of 8). For
//   the MX family, NVFP4 and per-tensor FP8 the bf16 values are exact, so the result is the fp32
//   product's up to summation order; INT4 and fp32 block scales round each value to bf16.
// Throws UnsupportedError (naming the reason) for shapes no kernel takes; never a wrong answer.
Array matmul(const Operand& a, const Operand& b, DType out_dtype, const Context& context);

// x @ dequantize(w)^T (+ bias) for the (N, K) weight w of a linear layer, through the same
// GEMMs as matmul: an FP8 weight as a transposed view (no copy), any other weight dequantized
// to bf16 as stored. With a bias the GEMM writes fp32 and one more pass adds the bias and
// rounds once to out_dtype.
Array linear(const Operand& x, const Operand& w, const std::optional<Array>& bias, DType out_dtype,
             const Context& context);

}  // namespace breccia::kernels::cuda
