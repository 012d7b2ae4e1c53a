#include "breccia/dtype.hpp"

#include <array>
#include <string>
#include <utility>

#include "breccia/error.hpp"

namespace breccia {
namespace {

// Every dtype with its NumPy/ml_dtypes spelling, in enum order.
constexpr std::array<std::pair<DType, std::string_view>, 13> kDTypeNames{{
    {DType::kU8, "uint8"},
    {DType::kI8, "int8"},
    {DType::kI32, "int32"},
    {DType::kI64, "int64"},
    {DType::kF16, "float16"},
    {DType::kBF16, "bfloat16"},
    {DType::kF32, "float32"},
    {DType::kF64, "float64"},
    {DType::kE4M3, "float8_e4m3fn"},
    {DType::kE5M2, "float8_e5m2"},
    {DType::kE8M0, "float8_e8m0fnu"},
    {DType::kE2M3, "float6_e2m3fn"},
    {DType::kE3M2, "float6_e3m2fn"},
}};

}  // namespace

std::string_view dtype_name(DType dtype) {
  for (const auto& [candidate, name] : kDTypeNames) {
    if (candidate == dtype) return name;
  }
  fail<ValueError>("dtype: expected a breccia DType, got enum value ", static_cast<int>(dtype));
}

DType dtype_from_name(std::string_view name, std::string_view argument) {
  for (const auto& [dtype, candidate] : kDTypeNames) {
    if (candidate == name) return dtype;
  }
  std::string known;
  for (const auto& entry : kDTypeNames) {
    if (!known.empty()) known += ", ";
    known += entry.second;
  }
  fail<ValueError>(argument, ": expected one of ", known, ", got '", name, "'");
}

}  // namespace breccia
