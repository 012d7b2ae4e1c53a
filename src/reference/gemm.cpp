// The fp32 GEMM under the reference matmul: BLAS sgemm, row-major.
#include <cblas.h>

#include <algorithm>

#include "breccia/kernels/reference.hpp"

// cblas_sgemm under the BLAS's symbol prefix (CMake's BRECCIA_CBLAS_PREFIX: empty for a system
// BLAS, scipy_ for the scipy-openblas32 wheel's).
#define BRECCIA_JOIN(prefix, name) prefix##name
#define BRECCIA_PREFIXED(prefix, name) BRECCIA_JOIN(prefix, name)
#define BRECCIA_CBLAS_SGEMM BRECCIA_PREFIXED(BRECCIA_CBLAS_PREFIX, cblas_sgemm)

namespace breccia::kernels::reference {

void gemm_f32(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, const float* b,
              float* c, bool b_transposed) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum; BLAS would reject the zero leading dimension
    std::fill(c, c + m * n, 0.0f);
    return;
  }
  BRECCIA_CBLAS_SGEMM(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans,
                      static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                      1.0f, a, static_cast<blasint>(k), b,
                      static_cast<blasint>(b_transposed ? k : n), 0.0f, c, static_cast<blasint>(n));
}

}  // namespace breccia::kernels::reference
