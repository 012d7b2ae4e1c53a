#include "breccia/dtype.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "breccia/device.hpp"
#include "breccia/error.hpp"

namespace breccia {
namespace {

struct DTypeSpelling {
  DType dtype;
  const char* numpy_name;  // as numpy/ml_dtypes spell np.dtype(...).name
  int bytes;
};

// The spellings and sizes NumPy and ml_dtypes use.
constexpr DTypeSpelling kSpellings[] = {
    {DType::kU8, "uint8", 1},          {DType::kI8, "int8", 1},
    {DType::kI32, "int32", 4},         {DType::kI64, "int64", 8},
    {DType::kF16, "float16", 2},       {DType::kBF16, "bfloat16", 2},
    {DType::kF32, "float32", 4},       {DType::kF64, "float64", 8},
    {DType::kE4M3, "float8_e4m3fn", 1}, {DType::kE5M2, "float8_e5m2", 1},
    {DType::kE8M0, "float8_e8m0fnu", 1},
};

TEST(DType, NamesAreTheNumpySpellings) {
  for (const auto& spelling : kSpellings) {
    EXPECT_EQ(dtype_name(spelling.dtype), spelling.numpy_name);
    EXPECT_EQ(itemsize(spelling.dtype), spelling.bytes) << spelling.numpy_name;
  }
}

TEST(DType, EveryDTypeRoundTripsThroughItsName) {
  std::set<std::string_view> names;
  for (int value = 0; value <= static_cast<int>(DType::kE8M0); ++value) {
    const auto dtype = static_cast<DType>(value);
    const std::string_view name = dtype_name(dtype);
    EXPECT_EQ(dtype_from_name(name), dtype) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), std::size(kSpellings)) << "names must be distinct";
}

TEST(DType, UnknownNamesAreRejectedNamingTheArgumentAndTheValue) {
  for (const char* bad : {"", "float", "Float32", "fp32", "float8_e4m3", "e4m3", "uint8 ",
                          "float4_e2m1fn", "int16", "bool"}) {
    try {
      dtype_from_name(bad, "out_dtype");
      FAIL() << "accepted '" << bad << "'";
    } catch (const ValueError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("out_dtype"), std::string::npos) << message;
      EXPECT_NE(message.find("'" + std::string(bad) + "'"), std::string::npos) << message;
      EXPECT_NE(message.find("float8_e4m3fn"), std::string::npos) << "lists the valid names";
    }
  }
}

TEST(DType, WideFloatsAreTheFourHighPrecisionTypes) {
  for (const auto& spelling : kSpellings) {
    const std::string name = spelling.numpy_name;
    const bool expected =
        name == "float16" || name == "bfloat16" || name == "float32" || name == "float64";
    EXPECT_EQ(is_wide_float(spelling.dtype), expected) << name;
  }
}

TEST(Device, StrSpellsKindAndIndex) {
  EXPECT_EQ(Device::cpu().str(), "cpu");
  EXPECT_EQ(Device::cuda(0).str(), "cuda:0");
  EXPECT_EQ(Device::cuda(7).str(), "cuda:7");
  EXPECT_TRUE(Device::cpu().is_cpu());
  EXPECT_FALSE(Device::cuda(0).is_cpu());
  EXPECT_NE(Device::cuda(0), Device::cuda(1));
  EXPECT_NE(Device::cpu(), Device::cuda(0));
}

}  // namespace
}  // namespace breccia
