// Operand preparation for the GEMMs: FP8 tensor cores read both operands K-major, so a
// row-major b (K x N) is transposed once into scratch (a b that is a transposed view of an
// N x K weight, strides (1, K), is used as it is); per-tensor scales fold into one alpha.
#include "breccia/error.hpp"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda::gemm {
namespace {

constexpr int kTile = 32;

// out (cols x rows) = in (rows x cols)^T, bytes, through a padded shared-memory tile.
__global__ void transpose_bytes(const std::uint8_t* in, std::uint8_t* out, std::int64_t rows,
                                std::int64_t cols) {
  __shared__ std::uint8_t tile[kTile][kTile + 4];
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * kTile;
  const std::int64_t c0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][i];
  }
}

__global__ void product_of_scales(const float* a, const float* b, float* alpha) {
  *alpha = *a * *b;
}

// Copies a strided fp32 matrix (rows x cols) into a contiguous row-major one.
__global__ void gather_f32(const float* in, std::int64_t row_stride, std::int64_t col_stride,
                           float* out, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) out[i] = in[(i / cols) * row_stride + (i % cols) * col_stride];
}

bool is_k_major_view(const Array& b) {  // (K, N) data laid out as N rows of K bytes
  return b.strides().size() == 2 && b.strides()[0] == 1 && b.strides()[1] == b.shape()[0];
}

}  // namespace

void run(GemmKind kind, const ScaledTensor& a, const ScaledTensor& b, const Array& out,
         const Context& context) {
  const Device device = a.device();
  const cudaStream_t stream = detail::stream_of(context);
  Problem p;
  p.m = static_cast<int>(a.shape()[0]);
  p.k = static_cast<int>(a.shape()[1]);
  p.n = static_cast<int>(b.shape()[1]);
  p.d = out.data();
  if (p.k == 0) {
    detail::check(cudaMemsetAsync(out.data(), 0, static_cast<std::size_t>(out.nbytes()), stream),
                  "cudaMemsetAsync");
    return;
  }
  const Launcher launch = kind == GemmKind::kFp8PerTensor
                              ? per_tensor_launcher(b.data_dtype(), out.dtype())
                              : blockwise_launcher(out.dtype());
  if (launch == nullptr) {
    fail<UnsupportedError>("scaled_matmul: this build has no CUTLASS GEMM (CUTLASS headers were "
                           "not found at configure time; see cmake/BrecciaCuda.cmake)");
  }
  if (!a.data().is_contiguous()) {
    fail<ValueError>("a: expected contiguous (row-major) data for the GPU GEMM, got strides ",
                     shape_str(a.data().strides()));
  }
  p.a = a.data().data();

  std::shared_ptr<void> b_k_major;
  if (is_k_major_view(b.data())) {
    p.b = b.data().data();
  } else if (b.data().is_contiguous()) {
    b_k_major = detail::scratch(context, b.data().nbytes(), device);
    const dim3 blocks(static_cast<unsigned>((p.n + kTile - 1) / kTile),
                      static_cast<unsigned>((p.k + kTile - 1) / kTile));
    transpose_bytes<<<blocks, dim3(kTile, 8), 0, stream>>>(
        b.data().data_as<const std::uint8_t>(), static_cast<std::uint8_t*>(b_k_major.get()), p.k, p.n);
    detail::check_launch("transpose_bytes");
    p.b = b_k_major.get();
  } else {
    fail<ValueError>("b: expected row-major (K, N) data or a transposed view of (N, K) data, got "
                     "strides ", shape_str(b.data().strides()));
  }

  std::shared_ptr<void> alpha, scale_b;
  if (kind == GemmKind::kFp8PerTensor) {
    alpha = detail::scratch(context, sizeof(float), device);
    product_of_scales<<<1, 1, 0, stream>>>(a.scale().data_as<const float>(),
                                           b.scale().data_as<const float>(), static_cast<float*>(alpha.get()));
    detail::check_launch("product_of_scales");
    p.alpha = static_cast<const float*>(alpha.get());
  } else {
    if (!a.scale().is_contiguous()) fail<ValueError>("a: expected a contiguous scale tensor");
    p.scale_a = a.scale().data_as<const float>();
    const Array& sb = b.scale();
    if (sb.is_contiguous()) {
      p.scale_b = sb.data_as<const float>();
    } else {
      const std::int64_t rows = sb.shape()[0], cols = sb.shape()[1];
      scale_b = detail::scratch(context, rows * cols * 4, device);
      gather_f32<<<static_cast<unsigned>((rows * cols + 255) / 256), 256, 0, stream>>>(
          sb.data_as<const float>(), sb.strides()[0], sb.strides()[1],
          static_cast<float*>(scale_b.get()), rows, cols);
      detail::check_launch("gather_f32");
      p.scale_b = static_cast<const float*>(scale_b.get());
    }
  }
  launch(p, context, device);
}

#if !defined(BRECCIA_CUTLASS)
Launcher per_tensor_launcher(DType, DType) { return nullptr; }
Launcher blockwise_launcher(DType) { return nullptr; }
#endif

}  // namespace breccia::kernels::cuda::gemm
