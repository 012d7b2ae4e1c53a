// How the CPU kernels spread work over threads: OpenMP's pool (shared with PyTorch's and
// NumPy's BLAS when they use the same runtime), static chunks of consecutive work units.
#pragma once

#include <cstdint>
#include <functional>

namespace breccia::kernels::cpu {

// Calls body(begin, end) on disjoint ranges covering [0, units), from up to num_threads()
// threads; returns when all are done. An exception in any range is rethrown here.
void parallel_for(std::int64_t units, const std::function<void(std::int64_t, std::int64_t)>& body);

}  // namespace breccia::kernels::cpu
