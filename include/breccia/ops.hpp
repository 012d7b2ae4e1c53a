// The operations: cast, dequantize, matmul, linear, transpose, requantize, reencode_fp4_as_fp8,
// from_buffer. Each validates its arguments, builds the plan and dispatches to a kernel for the
// data's device.
#pragma once

#include <optional>
#include <variant>

#include "breccia/array.hpp"
#include "breccia/context.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia {

struct CastOptions {
  int axis = -1;                         // -2: blocks along the second-to-last dim
  DelayedScalingState* state = nullptr;  // DelayedScaling only: read and updated
  Context context;                       // allocator, stream, kernel preference
  // NVFP4 only: the amax its global scale comes from, instead of x's own. The projections that
  // serving stacks fuse into one GEMM (q/k/v, gate/up) must share one global scale: each is cast
  // with the largest of their amaxes. Should be at least x's amax (block scales saturate
  // otherwise); never negative (ValueError), a NaN taken as the canonical one.
  std::optional<float> tensor_amax;
};

// Quantizes x (fp32/fp16/bf16/fp64, any strides) under `recipe`.
ScaledTensor cast(const Array& x, const Recipe& recipe, const CastOptions& options = {});

// What one read of x produces for GEMMs, as TransformerEngine's quantizers do: the rowwise
// cast (axis=-1, the form a GEMM's left operand takes), the columnwise cast (axis=-2, the form
// its transpose takes in the backward pass) or both, and for recipes with one-byte block scales
// (the MX family, NVFP4) optionally the padded, 128 x 4-swizzled scales that cuBLASLt's and
// TransformerEngine's block-scaled GEMMs read (scale_layout.hpp). On CUDA both casts and the
// swizzled scales come from one pass.
struct GemmCastOptions {
  bool rowwise = true;
  bool columnwise = true;
  bool swizzled_scales = false;
  DelayedScalingState* state = nullptr;  // DelayedScaling only: read and updated once
  Context context;
};

struct GemmCast {
  std::optional<ScaledTensor> rowwise;
  std::optional<ScaledTensor> columnwise;
  // swizzle_scales(rowwise.scale): (..., roundup(M, 128), roundup(K / block, 4)) uint8.
  std::optional<Array> rowwise_swizzled_scale;
  // swizzle_scales of columnwise.scale transposed, (..., roundup(K, 128), roundup(M / block, 4)):
  // rows are the transposed operand's rows, as the GEMM reads them.
  std::optional<Array> columnwise_swizzled_scale;
};

// Per-tensor recipes give the same bytes under both axes, and so do 2-D tiles (128 x 128
// blocks): then `columnwise` is `rowwise`, or (NVFP4 two_d) shares its data and global_scale.
// Throws ValueError when neither output is asked for, when swizzled scales are asked of a
// recipe without one-byte block scales, and when the recipe cannot block x along an axis.
GemmCast cast_for_gemm(const Array& x, const Recipe& recipe, const GemmCastOptions& options = {});

// decode(data) * scale in fp32, rounded to out_dtype (fp32, fp16, bf16 or fp64). CUDA data
// needs context.allocator (the framework's) and runs on context.stream.
Array dequantize(const ScaledTensor& scaled, DType out_dtype = DType::kF32,
                 const Context& context = {});

// (..., M, K) @ (..., K, N) -> (..., M, N) with NumPy batch broadcasting; operands are
// dequantized to fp32 and multiplied in fp32, then rounded to out_dtype. On CUDA the operands
// are 2-D ScaledTensors or bfloat16 arrays, multiplied on the tensor cores as kernels/cuda.hpp
// (matmul) describes, with the output from context.allocator on context.stream.
Array matmul(const Operand& a, const Operand& b, DType out_dtype = DType::kF32,
             const Context& context = {});

// x @ dequantize(w)^T (+ bias): a linear layer whose weight w is (N, K), blocked along K, as
// checkpoints store it. x is (..., K), bias (N,); both operands are dequantized to fp32 and
// multiplied in fp32, the bias added in fp32, and the sum rounded once to out_dtype. On CUDA,
// x is a 2-D ScaledTensor or bfloat16 array and w is read as it is stored (FP8 weights feed the
// FP8 GEMMs without a copy), as kernels/cuda.hpp (linear) describes.
Array linear(const Operand& x, const Operand& w, const std::optional<Array>& bias = std::nullopt,
             DType out_dtype = DType::kF32, const Context& context = {});

// x with its last two dims swapped (x.T for 2-D data; 1-D data is returned as it is). Formats
// of one element per byte give a view: data, scale and zero points strided, the layout's block
// shape swapped, nothing copied. Packed 4-bit formats hold two codes per byte along the last
// axis, so their codes are repacked along the new one: a copy of the data (on the CPU; CUDA
// data raises UnsupportedError), the scales still views. PerChannel tensors have no
// transposed layout (UnsupportedError).
ScaledTensor transpose(const ScaledTensor& x, const Context& context = {});

// The same values under another recipe: cast(dequantize(scaled), new_recipe). Requantizing to
// the tensor's own recipe and axis returns it unchanged.
ScaledTensor requantize(const ScaledTensor& scaled, const Recipe& new_recipe,
                        const CastOptions& options = {});

// A 2-D MXFP4 tensor (E2M1 codes, one E8M0 scale per 32 along each row) as FP8 E4M3 with one
// power-of-two scale per tile x tile block (Float8BlockScaling(block_m=tile, block_k=tile,
// power_2_scale=True), PerBlockMN(tile, tile)), every value kept: DeepSeek-V4's re-encode of
// its FP4 experts for Hopper. A tile's scale is its largest block scale over 2^6 (at least
// 2^-127); each element is its E2M1 value times its block's scale over the tile's, at most
// 6 * 2^6 = 384, so dequantize(result) equals dequantize(x) bit for bit (negative zeros
// included). ValueError naming the element when one would not be exact in E4M3 (its block's
// scale more than 2^14 below the tile's largest) or a block scale is NaN; DeviceError for
// data off the CPU. tile: a positive multiple of 32.
ScaledTensor reencode_fp4_as_fp8(const ScaledTensor& x, std::int64_t tile = 128);

// Wraps existing buffers without copying them (validated like the constructor).
ScaledTensor from_buffer(Array data, Array scale, Recipe recipe, Layout layout,
                         std::optional<Array> global_scale = std::nullopt,
                         std::optional<Array> zero_point = std::nullopt);

}  // namespace breccia
