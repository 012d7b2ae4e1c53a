// Element types an Array can hold. Packed 4-bit data (E2M1, INT4) is held as U8 bytes; the
// recipe of the ScaledTensor that owns it says how to read the nibbles. FP6 codes take one
// byte each (the low 6 bits), as ml_dtypes' float6 types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace breccia {

enum class DType : std::uint8_t {
  kU8,
  kI8,
  kI32,
  kI64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kE4M3,  // float8_e4m3fn
  kE5M2,  // float8_e5m2
  kE8M0,  // float8_e8m0fnu
  kE2M3,  // float6_e2m3fn
  kE3M2,  // float6_e3m2fn
};

// Bytes per element.
constexpr int itemsize(DType dtype) {
  switch (dtype) {
    case DType::kU8:
    case DType::kI8:
    case DType::kE4M3:
    case DType::kE5M2:
    case DType::kE8M0:
    case DType::kE2M3:
    case DType::kE3M2:
      return 1;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI32:
    case DType::kF32:
      return 4;
    case DType::kI64:
    case DType::kF64:
      return 8;
  }
  return 0;
}

// True for the dtypes cast() accepts as high-precision input.
constexpr bool is_wide_float(DType dtype) {
  return dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32 ||
         dtype == DType::kF64;
}

// NumPy/ml_dtypes spelling: "uint8", "float32", "bfloat16", "float8_e4m3fn", ...
std::string_view dtype_name(DType dtype);

// Inverse of dtype_name; throws ValueError naming `argument` for an unknown name.
DType dtype_from_name(std::string_view name, std::string_view argument = "dtype");

}  // namespace breccia
