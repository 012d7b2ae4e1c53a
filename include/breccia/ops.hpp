// The operations: cast, dequantize, matmul, requantize, from_buffer. Each validates its
// arguments, builds the plan and dispatches to a kernel for the data's device.
#pragma once

#include <optional>
#include <variant>

#include "breccia/array.hpp"
#include "breccia/recipes.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia {

struct CastOptions {
  int axis = -1;                         // -2: blocks along the second-to-last dim
  DelayedScalingState* state = nullptr;  // DelayedScaling only: read and updated
  Allocator* allocator = nullptr;        // outputs; CPU allocator when null
  void* stream = nullptr;                // CUDA: the caller's cudaStream_t (null: default)
};

// Quantizes x (fp32/fp16/bf16/fp64, any strides) under `recipe`.
ScaledTensor cast(const Array& x, const Recipe& recipe, const CastOptions& options = {});

// decode(data) * scale in fp32, rounded to out_dtype (fp32, fp16, bf16 or fp64). CUDA data
// needs `allocator` (the framework's) and runs on `stream` (a cudaStream_t; null: default).
Array dequantize(const ScaledTensor& scaled, DType out_dtype = DType::kF32,
                 Allocator* allocator = nullptr, void* stream = nullptr);

// A matmul operand: quantized or plain (fp32/fp16/bf16/fp64).
using Operand = std::variant<Array, ScaledTensor>;

// (..., M, K) @ (..., K, N) -> (..., M, N) with NumPy batch broadcasting; operands are
// dequantized to fp32 and multiplied in fp32, then rounded to out_dtype. On CUDA both operands
// must be 2-D ScaledTensors that a tensor-core GEMM takes (kernels/cuda.hpp: gemm_kind), with
// the output from `allocator` on `stream`.
Array matmul(const Operand& a, const Operand& b, DType out_dtype = DType::kF32,
             Allocator* allocator = nullptr, void* stream = nullptr);

// The same values under another recipe: cast(dequantize(scaled), new_recipe). Requantizing to
// the tensor's own recipe and axis returns it unchanged.
ScaledTensor requantize(const ScaledTensor& scaled, const Recipe& new_recipe,
                        const CastOptions& options = {});

// Wraps existing buffers without copying them (validated like the constructor).
ScaledTensor from_buffer(Array data, Array scale, Recipe recipe, Layout layout,
                         std::optional<Array> global_scale = std::nullopt,
                         std::optional<Array> zero_point = std::nullopt);

}  // namespace breccia
