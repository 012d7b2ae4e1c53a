// What the CPU kernels share: the chunk size that keeps a chunk's fp32 copy in the core's L2,
// and the plain element access of the reference kernels (for tails and scale entries).
#pragma once

#include <cstdint>

#include "breccia/kernels/cpu.hpp"
#include "reference/elements.hpp"

namespace breccia::kernels::cpu {

// fp32 elements a work unit converts at once: 128 KB.
inline constexpr std::int64_t kChunkFloats = 32768;

// Calls f.template operator()<kFormat>() for the runtime element format.
template <class F>
void with_element_format(ElementFormat format, F&& f) {
  switch (format) {
    case ElementFormat::kE4M3:
      return f.template operator()<ElementFormat::kE4M3>();
    case ElementFormat::kE5M2:
      return f.template operator()<ElementFormat::kE5M2>();
    case ElementFormat::kE2M3:
      return f.template operator()<ElementFormat::kE2M3>();
    case ElementFormat::kE3M2:
      return f.template operator()<ElementFormat::kE3M2>();
    case ElementFormat::kE2M1:
      return f.template operator()<ElementFormat::kE2M1>();
    case ElementFormat::kInt4Signed:
      return f.template operator()<ElementFormat::kInt4Signed>();
    case ElementFormat::kInt4Unsigned:
      return f.template operator()<ElementFormat::kInt4Unsigned>();
  }
}

using reference::detail::load_scale_bits;
using reference::detail::read_wide;
using reference::detail::store_scale_bits;
using reference::detail::write_wide;

}  // namespace breccia::kernels::cpu
