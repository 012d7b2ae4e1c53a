#include <climits>
#include <variant>

#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"
#include "ops/dispatch.hpp"

namespace breccia {
namespace {

const Array& data_of(const Operand& operand) {
  return std::holds_alternative<Array>(operand) ? std::get<Array>(operand)
                                                : std::get<ScaledTensor>(operand).data();
}

Shape logical_shape_of(const Operand& operand) {
  return std::holds_alternative<Array>(operand) ? std::get<Array>(operand).shape()
                                                : std::get<ScaledTensor>(operand).logical_shape();
}

// The operand's values as a contiguous fp32 array.
Array to_float32(const Operand& operand, std::string_view argument, const Context& context) {
  if (const auto* scaled = std::get_if<ScaledTensor>(&operand)) {
    return dequantize(*scaled, DType::kF32, context);
  }
  const Array& plain = std::get<Array>(operand);
  if (!is_wide_float(plain.dtype())) {
    fail<TypeError>(argument,
                    ": expected a ScaledTensor or a float32, float16, bfloat16 or "
                    "float64 array, got an array of ",
                    dtype_name(plain.dtype()));
  }
  if (plain.dtype() == DType::kF32) return plain.contiguous();
  Array converted = Array::empty(DType::kF32, plain.shape());
  kernels::reference::convert(plain.contiguous(), converted);
  return converted;
}

// NumPy broadcasting of the batch dims (everything before the last two).
Shape broadcast_batch(const Shape& a, const Shape& b) {
  const std::size_t a_batch = a.size() - 2;
  const std::size_t b_batch = b.size() - 2;
  const std::size_t n = std::max(a_batch, b_batch);
  Shape out(n, 1);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i + a_batch >= n ? a[i + a_batch - n] : 1;
    const std::int64_t db = i + b_batch >= n ? b[i + b_batch - n] : 1;
    if (da != db && da != 1 && db != 1) {
      fail<ValueError>("matmul: batch dimensions of a ", shape_str(a), " and b ", shape_str(b),
                       " do not broadcast (", da, " vs ", db, ")");
    }
    out[i] = std::max(da, db);
  }
  return out;
}

// Flat matrix index into an operand's batch for output batch `index` under broadcasting.
std::int64_t source_batch(const Shape& operand, const Shape& batch, std::int64_t index) {
  const std::size_t operand_batch = operand.size() - 2;
  std::int64_t source = 0;
  std::int64_t stride = 1;
  for (std::size_t i = batch.size(); i-- > 0;) {
    const std::int64_t coordinate = index % batch[i];
    index /= batch[i];
    const std::size_t offset = batch.size() - operand_batch;
    if (i >= offset) {
      const std::int64_t extent = operand[i - offset];
      source += (extent == 1 ? 0 : coordinate) * stride;
      stride *= extent;
    }
  }
  return source;
}

void require_wide_float_out(DType out_dtype) {
  if (!is_wide_float(out_dtype)) {
    fail<TypeError>("out_dtype: expected float32, float16, bfloat16 or float64, got ",
                    dtype_name(out_dtype));
  }
}

void require_gemm_size(std::string_view operation, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX) {
    fail<ValueError>(operation, ": M, N and K must each be below 2^31 for the BLAS GEMM, got M=", m,
                     " N=", n, " K=", k);
  }
}

// out32 rounded to out_dtype (out32 itself when that is fp32).
Array rounded(const Array& out32, DType out_dtype) {
  if (out_dtype == DType::kF32) return out32;
  Array out = Array::empty(out_dtype, out32.shape());
  kernels::reference::convert(out32, out);
  return out;
}

}  // namespace

Array linear(const Operand& x, const Operand& w, const std::optional<Array>& bias, DType out_dtype,
             const Context& context) {
  require_wide_float_out(out_dtype);
  const Device device = data_of(x).device();
  ops_detail::require_device(data_of(w), "w", device);
  if (bias) ops_detail::require_device(*bias, "bias", device);
  ops_detail::require_kernels_for(device, "linear", context);

  const Shape x_shape = logical_shape_of(x);
  const Shape w_shape = logical_shape_of(w);
  if (x_shape.empty()) fail<ValueError>("x: expected shape (..., K), got ()");
  if (w_shape.size() != 2) {
    fail<ValueError>("w: expected a 2-D weight of shape (N, K), got shape ", shape_str(w_shape));
  }
  const std::int64_t n = w_shape[0];
  const std::int64_t k = w_shape[1];
  if (x_shape.back() != k) {
    fail<ValueError>("linear: x's last dimension (K=", x_shape.back(), ", shape ",
                     shape_str(x_shape),
                     ") must equal the second of the weight w (N, K) (got K=", k, ", shape ",
                     shape_str(w_shape), ")");
  }
  if (bias) {
    if (bias->shape() != Shape{n}) {
      fail<ValueError>("bias: expected shape (N,) = (", n, ",), got ", shape_str(bias->shape()));
    }
    if (!is_wide_float(bias->dtype())) {
      fail<TypeError>("bias: expected a float32, float16, bfloat16 or float64 array, got ",
                      dtype_name(bias->dtype()));
    }
  }
  if (!device.is_cpu()) return ops_detail::run_linear_on_device(x, w, bias, out_dtype, context);

  Shape out_shape = x_shape;
  out_shape.back() = n;
  const std::int64_t rows = checked_numel(std::span(x_shape).first(x_shape.size() - 1));
  require_gemm_size("linear", rows, n, k);
  const Array x32 = to_float32(x, "x", context);
  Array out32 = Array::empty(DType::kF32, out_shape);
  const auto* scaled_w = std::get_if<ScaledTensor>(&w);
  if (scaled_w != nullptr && rows > 0 && rows <= kernels::cpu::kLinearSmallM && k > 0 &&
      context.kernels != KernelPreference::kReference &&
      (!is_packed(scaled_w->spec().element) || k % 2 == 0)) {
    // Decoding: the weight's codes are read once and never dequantized into memory.
    const QuantPlan plan = plan_of(*scaled_w);
    const Array none;
    kernels::cpu::linear_small_m(
        plan, scaled_w->data().contiguous(), scaled_w->scale().contiguous(),
        plan.has_global_scale ? scaled_w->global_scale()->contiguous() : none,
        plan.has_zero_point ? scaled_w->zero_point()->contiguous() : none, x32.reshaped({rows, k}),
        out32.reshaped({rows, n}));
  } else {
    const Array w32 = to_float32(w, "w", context);
    kernels::reference::gemm_f32(rows, n, k, x32.data_as<const float>(), w32.data_as<const float>(),
                                 out32.data_as<float>(),
                                 /*b_transposed=*/true);
  }
  if (bias) {
    const Array bias32 = to_float32(*bias, "bias", context);
    const float* add = bias32.data_as<const float>();
    float* row = out32.data_as<float>();
    for (std::int64_t r = 0; r < rows; ++r, row += n) {
      for (std::int64_t j = 0; j < n; ++j) row[j] += add[j];
    }
  }
  return rounded(out32, out_dtype);
}

Array matmul(const Operand& a, const Operand& b, DType out_dtype, const Context& context) {
  require_wide_float_out(out_dtype);
  const Device device = data_of(a).device();
  ops_detail::require_device(data_of(b), "b", device);
  ops_detail::require_kernels_for(device, "matmul", context);
  if (!device.is_cpu()) return ops_detail::run_matmul_on_device(a, b, out_dtype, context);

  const Shape a_shape = logical_shape_of(a);
  const Shape b_shape = logical_shape_of(b);
  if (a_shape.size() < 2)
    fail<ValueError>("a: expected shape (..., M, K), got ", shape_str(a_shape));
  if (b_shape.size() < 2)
    fail<ValueError>("b: expected shape (..., K, N), got ", shape_str(b_shape));
  const std::int64_t m = a_shape[a_shape.size() - 2];
  const std::int64_t k = a_shape.back();
  const std::int64_t n = b_shape.back();
  if (b_shape[b_shape.size() - 2] != k) {
    fail<ValueError>("matmul: a's last dimension (K=", k, ", shape ", shape_str(a_shape),
                     ") must equal b's second-to-last (got ", b_shape[b_shape.size() - 2],
                     ", shape ", shape_str(b_shape), ")");
  }
  require_gemm_size("matmul", m, n, k);
  const Shape batch = broadcast_batch(a_shape, b_shape);

  const Array a32 = to_float32(a, "a", context);
  const Array b32 = to_float32(b, "b", context);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Array out32 = Array::empty(DType::kF32, out_shape);
  const std::int64_t batches = checked_numel(batch);
  for (std::int64_t i = 0; i < batches; ++i) {
    kernels::reference::gemm_f32(
        m, n, k, a32.data_as<const float>() + source_batch(a_shape, batch, i) * m * k,
        b32.data_as<const float>() + source_batch(b_shape, batch, i) * k * n,
        out32.data_as<float>() + i * m * n);
  }
  return rounded(out32, out_dtype);
}

}  // namespace breccia
