// The element encodings a ScaledTensor's data can hold, and the exact value of each code.
// constexpr and host/device, so the reference, CPU and CUDA kernels decode the same way.
#pragma once

#include <cstdint>

#include "breccia/formats/formats.hpp"

namespace breccia {

enum class ElementFormat : std::uint8_t { kE4M3, kE5M2, kE2M1, kInt4Signed, kInt4Unsigned };

// 4-bit formats are stored two codes per byte along the last axis.
BRECCIA_HD constexpr bool is_packed(ElementFormat format) {
  return format == ElementFormat::kE2M1 || format == ElementFormat::kInt4Signed ||
         format == ElementFormat::kInt4Unsigned;
}

// The exact fp32 value of one element code (a nibble for the packed formats).
BRECCIA_HD constexpr float decode_element(ElementFormat format, std::uint8_t code) {
  switch (format) {
    case ElementFormat::kE4M3:
      return formats::E4M3::decode(code);
    case ElementFormat::kE5M2:
      return formats::E5M2::decode(code);
    case ElementFormat::kE2M1:
      return formats::E2M1::decode(code);
    case ElementFormat::kInt4Signed:
      return static_cast<float>(formats::nibble_to_int4(code, true));
    case ElementFormat::kInt4Unsigned:
      return static_cast<float>(formats::nibble_to_int4(code, false));
  }
  return 0.0f;
}

}  // namespace breccia
