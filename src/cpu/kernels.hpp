// What the CPU kernels share: the chunk size that keeps a chunk's fp32 copy in the core's L2,
// and the plain element access of the reference kernels (for tails and scale entries).
#pragma once

#include <cstdint>
#include <vector>

#include "breccia/formats/scale_format.hpp"
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

// The decoded scale of each entry of a contiguous scale array, times the global scale: for
// 8-bit formats a table made once per call rather than one decode per block.
struct ScaleDecoder {
  ScaleFormat format;
  float global;
  std::vector<float> table;  // 8-bit formats
  const void* scales;
  std::int64_t itemsize;

  ScaleDecoder(ScaleFormat format_, float global_, const Array& scale)
      : format(format_),
        global(global_),
        scales(scale.data()),
        itemsize(breccia::itemsize(scale.dtype())) {
    if (itemsize == 1) {
      table.resize(256);
      for (std::uint32_t bits = 0; bits < 256; ++bits) {
        table[bits] = decode_scale_bits(format, bits) * global;
      }
    }
  }
  // Entries [first, first + count) into out: the width decided once for the run (a call per
  // entry cost a fifth to a quarter of an NVFP4 decoding linear, whose 16-element blocks each have
  // one).
  void decode_run(std::int64_t first, std::int64_t count, float* out) const {
    if (itemsize == 1) {
      const auto* bits = static_cast<const std::uint8_t*>(scales) + first;
      for (std::int64_t i = 0; i < count; ++i) out[i] = table[bits[i]];
    } else {
      for (std::int64_t i = 0; i < count; ++i) out[i] = (*this)(first + i);
    }
  }
  float operator()(std::int64_t s) const {
    if (itemsize == 1) return table[static_cast<const std::uint8_t*>(scales)[s]];
    if (itemsize == 2) {
      return decode_scale_bits(format, static_cast<const std::uint16_t*>(scales)[s]) * global;
    }
    return static_cast<const float*>(scales)[s] * global;
  }
};

}  // namespace breccia::kernels::cpu
