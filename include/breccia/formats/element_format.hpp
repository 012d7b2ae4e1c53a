// The element encodings a ScaledTensor's data can hold, what each one's codes mean, and the
// numbers the scale rules derive from them (max finite, emax, bits). constexpr and
// host/device, so the reference, CPU and CUDA kernels read one definition.
#pragma once

#include <cstdint>

#include "breccia/formats/formats.hpp"

namespace breccia {

enum class ElementFormat : std::uint8_t {
  kE4M3,
  kE5M2,
  kE2M1,
  kInt4Signed,
  kInt4Unsigned,
  kE2M3,  // OCP MX FP6, one element per byte (low 6 bits)
  kE3M2,  // OCP MX FP6, one element per byte (low 6 bits)
};

// The Minifloat type of a floating-point element format (not INT4).
template <ElementFormat kFormat>
struct MinifloatOf;
template <>
struct MinifloatOf<ElementFormat::kE4M3> {
  using type = formats::E4M3;
};
template <>
struct MinifloatOf<ElementFormat::kE5M2> {
  using type = formats::E5M2;
};
template <>
struct MinifloatOf<ElementFormat::kE2M1> {
  using type = formats::E2M1;
};
template <>
struct MinifloatOf<ElementFormat::kE2M3> {
  using type = formats::E2M3;
};
template <>
struct MinifloatOf<ElementFormat::kE3M2> {
  using type = formats::E3M2;
};
template <ElementFormat kFormat>
using Minifloat = typename MinifloatOf<kFormat>::type;

BRECCIA_HD constexpr bool is_int4(ElementFormat format) {
  return format == ElementFormat::kInt4Signed || format == ElementFormat::kInt4Unsigned;
}

// 4-bit formats are stored two codes per byte along the last axis; the others one per byte.
BRECCIA_HD constexpr bool is_packed(ElementFormat format) {
  return format == ElementFormat::kE2M1 || is_int4(format);
}

// Bits of one element code.
BRECCIA_HD constexpr int element_bits(ElementFormat format) {
  switch (format) {
    case ElementFormat::kE4M3:
    case ElementFormat::kE5M2:
      return 8;
    case ElementFormat::kE2M3:
    case ElementFormat::kE3M2:
      return 6;
    default:
      return 4;
  }
}

// Largest finite value of a floating-point format, read off its Minifloat traits.
template <ElementFormat kFormat>
inline constexpr float kElementMax = Minifloat<kFormat>::decode(Minifloat<kFormat>::kMaxFiniteCode);

// Unbiased exponent of the largest finite value (OCP MX's emax_elem): 8 E4M3, 15 E5M2,
// 2 E2M1 and E2M3, 4 E3M2.
template <ElementFormat kFormat>
inline constexpr int kElementEmax =
    static_cast<int>(Minifloat<kFormat>::kMaxFiniteCode >> Minifloat<kFormat>::kMantissaBits) -
    Minifloat<kFormat>::traits.bias;

// The code every quantizer writes for an element of a NaN block: the format's NaN (0x7F for
// FP8), or 0 for formats without one (the block's scale carries the NaN).
template <ElementFormat kFormat>
inline constexpr std::uint8_t kBlockNanCode =
    Minifloat<kFormat>::traits.nan == formats::NanEncoding::kNone
        ? 0
        : static_cast<std::uint8_t>(Minifloat<kFormat>::kNanCode);

static_assert(kElementMax<ElementFormat::kE4M3> == 448.0f &&
              kElementEmax<ElementFormat::kE4M3> == 8);
static_assert(kElementMax<ElementFormat::kE5M2> == 57344.0f &&
              kElementEmax<ElementFormat::kE5M2> == 15);
static_assert(kElementMax<ElementFormat::kE2M1> == 6.0f && kElementEmax<ElementFormat::kE2M1> == 2);
static_assert(kElementMax<ElementFormat::kE2M3> == 7.5f && kElementEmax<ElementFormat::kE2M3> == 2);
static_assert(kElementMax<ElementFormat::kE3M2> == 28.0f &&
              kElementEmax<ElementFormat::kE3M2> == 4);

// The exact fp32 value of one element code (a nibble for the packed formats).
BRECCIA_HD constexpr float decode_element(ElementFormat format, std::uint8_t code) {
  switch (format) {
    case ElementFormat::kE4M3:
      return formats::E4M3::decode(code);
    case ElementFormat::kE5M2:
      return formats::E5M2::decode(code);
    case ElementFormat::kE2M1:
      return formats::E2M1::decode(code);
    case ElementFormat::kE2M3:
      return formats::E2M3::decode(code);
    case ElementFormat::kE3M2:
      return formats::E3M2::decode(code);
    case ElementFormat::kInt4Signed:
      return static_cast<float>(formats::nibble_to_int4(code, true));
    case ElementFormat::kInt4Unsigned:
      return static_cast<float>(formats::nibble_to_int4(code, false));
  }
  return 0.0f;
}

}  // namespace breccia
