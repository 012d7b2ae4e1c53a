#include "breccia/io/safetensors.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "breccia/error.hpp"
#include "test_support.hpp"

namespace breccia::io {
namespace {

namespace fs = std::filesystem;

constexpr DType kAllDTypes[] = {DType::kU8,   DType::kI8,   DType::kI32, DType::kI64,
                                DType::kF16,  DType::kBF16, DType::kF32, DType::kF64,
                                DType::kE4M3, DType::kE5M2, DType::kE8M0};

std::string little_endian_u64(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return bytes;
}

// A file as the format lays it out: length field, header, data.
std::string file_bytes(std::string_view header, std::string_view data = {}) {
  return little_endian_u64(header.size()) + std::string(header) + std::string(data);
}

template <class T>
std::string raw_bytes(std::initializer_list<T> values) {
  std::string bytes;
  for (T value : values) bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
  return bytes;
}

std::string array_bytes(const Array& array) {
  const Array contiguous = array.contiguous();
  return {static_cast<const char*>(contiguous.data()),
          static_cast<std::size_t>(contiguous.nbytes())};
}

Array random_array(DType dtype, Shape shape, std::mt19937& random) {
  Array array = Array::empty(dtype, std::move(shape));
  auto* bytes = static_cast<unsigned char*>(array.data());
  for (std::int64_t i = 0; i < array.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(random());
  return array;
}

using ::breccia::test_support::contains;

class SafetensorsTest : public ::testing::Test {
 protected:
  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path path = directory_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  static std::string read(const fs::path& path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), {}};
  }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(directory_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // The message of the Error that loading `bytes` throws; fails the test for any other outcome.
  template <class Error>
  std::string load_error(const std::string& bytes) {
    return load_error_at<Error>(write("hostile.safetensors", bytes));
  }

  template <class Error>
  std::string load_error_at(const fs::path& path) {
    try {
      load(path);
    } catch (const Error& error) {
      return error.what();
    } catch (const std::exception& error) {
      ADD_FAILURE() << "expected another exception type, got: " << error.what();
      return {};
    }
    ADD_FAILURE() << "expected " << path << " to be rejected";
    return {};
  }

  // One tensor entry whose header is otherwise well-formed.
  std::string entry_error(const std::string& entry, const std::string& data) {
    return load_error<ValueError>(file_bytes("{\"t\":" + entry + "}", data));
  }

  ::breccia::test_support::TemporaryDirectory temporary_{"breccia-safetensors"};
  const fs::path& directory_ = temporary_.path();
};

// ---------------------------------------------------------------------------------------------
// Dtype names

TEST(SafetensorsDTypes, NamesRoundTripAndMatchTheFormat) {
  const std::vector<std::string> expected = {
      "BOOL", "U8",  "I8",  "U16",     "I16",     "F16",     "BF16",    "U32",     "I32", "F32",
      "U64",  "I64", "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"};
  std::vector<std::string> names;
  for (int code = 0; code <= static_cast<int>(SafetensorsDType::kF4); ++code) {
    const auto dtype = static_cast<SafetensorsDType>(code);
    names.emplace_back(to_string(dtype));
    EXPECT_EQ(safetensors_dtype_from_string(to_string(dtype)), dtype);
  }
  EXPECT_EQ(names, expected);
  for (const char* unknown : {"", "f32", "F128", "FLOAT32", "F8_E4M3FN", "F6_E2M3FN", "C64"}) {
    EXPECT_FALSE(safetensors_dtype_from_string(unknown).has_value()) << unknown;
  }
}

TEST(SafetensorsDTypes, EveryArrayDTypeHasAFileDTypeThatMapsBack) {
  for (DType dtype : kAllDTypes) {
    EXPECT_EQ(array_dtype_for(safetensors_dtype_for(dtype)), dtype) << dtype_name(dtype);
  }
  EXPECT_EQ(array_dtype_for(SafetensorsDType::kF4), DType::kU8);
  for (auto dtype : {SafetensorsDType::kBool, SafetensorsDType::kU16, SafetensorsDType::kI16,
                     SafetensorsDType::kU32, SafetensorsDType::kU64}) {
    EXPECT_FALSE(array_dtype_for(dtype).has_value()) << to_string(dtype);
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips and compatibility with the reference implementation

TEST_F(SafetensorsTest, RoundTripsEveryDTypeWithMetadata) {
  std::mt19937 random(7);
  std::map<std::string, Array> tensors;
  for (DType dtype : kAllDTypes) {
    tensors.emplace(std::string(dtype_name(dtype)), random_array(dtype, {3, 5}, random));
    tensors.emplace(std::string(dtype_name(dtype)) + ".scalar", random_array(dtype, {}, random));
    tensors.emplace(std::string(dtype_name(dtype)) + ".empty", random_array(dtype, {0, 4}, random));
  }
  const Metadata metadata = {{"format", "pt"}, {"recipe", "{\"recipe\": \"INT4Scaling\"}"}};
  const fs::path path = directory_ / "all.safetensors";
  save(path, tensors, metadata);

  const SafetensorsFile file = load(path);
  EXPECT_EQ(file.metadata, metadata);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, original] : tensors) {
    SCOPED_TRACE(name);
    const StoredTensor& loaded = file.tensors.at(name);
    EXPECT_EQ(loaded.dtype, safetensors_dtype_for(original.dtype()));
    EXPECT_EQ(loaded.array.dtype(), original.dtype());
    EXPECT_EQ(loaded.array.shape(), original.shape());
    EXPECT_EQ(array_bytes(loaded.array), array_bytes(original));
  }
  EXPECT_EQ(file.arrays().size(), tensors.size());
  EXPECT_EQ(entries(), std::vector<std::string>{"all.safetensors"});  // no temporary left
}

TEST_F(SafetensorsTest, RoundTripsPackedF4WithTheLogicalShapeInTheHeader) {
  std::mt19937 random(11);
  const Array packed = random_array(DType::kU8, {2, 3}, random);
  const fs::path path = directory_ / "f4.safetensors";
  save(path, std::map<std::string, StoredTensor>{{"w", {packed, SafetensorsDType::kF4}}});

  EXPECT_TRUE(contains(read(path), R"("w":{"dtype":"F4","shape":[2,6],"data_offsets":[0,6]})"));
  const StoredTensor loaded = load(path).tensors.at("w");
  EXPECT_EQ(loaded.dtype, SafetensorsDType::kF4);
  EXPECT_EQ(loaded.array.dtype(), DType::kU8);
  EXPECT_EQ(loaded.array.shape(), (Shape{2, 3}));
  EXPECT_EQ(array_bytes(loaded.array), array_bytes(packed));
}

// FP6 files are bit-packed (four codes in three bytes, element i at bits 6i..6i+5 of the
// little-endian stream) with the element count in the header; arrays hold a code per byte.
TEST_F(SafetensorsTest, RoundTripsFp6PackedFourCodesInThreeBytes) {
  Array codes = Array::empty(DType::kE2M3, {2, 4});
  const std::uint8_t values[8] = {0x01, 0x02, 0x03, 0x3F, 0x20, 0x00, 0x15, 0x2A};
  std::memcpy(codes.data(), values, sizeof values);
  const fs::path path = directory_ / "f6.safetensors";
  save(path, std::map<std::string, Array>{{"w", codes}});

  const std::string text = read(path);
  EXPECT_TRUE(contains(text, R"("w":{"dtype":"F6_E2M3","shape":[2,4],"data_offsets":[0,6]})"));
  // 0x01 | 0x02 << 6 | 0x03 << 12 | 0x3F << 18 = 0xFC3081; then 0x20 | 0x15 << 12 | 0x2A << 18.
  const std::string data = text.substr(text.size() - 6);
  EXPECT_EQ(data, std::string("\x81\x30\xFC\x20\x50\xA9", 6));
  const StoredTensor loaded = load(path).tensors.at("w");
  EXPECT_EQ(loaded.dtype, SafetensorsDType::kF6E2M3);
  EXPECT_EQ(loaded.array.dtype(), DType::kE2M3);
  EXPECT_EQ(loaded.array.shape(), (Shape{2, 4}));
  EXPECT_EQ(array_bytes(loaded.array), array_bytes(codes));

  Array e3m2 = Array::empty(DType::kE3M2, {3});  // not a multiple of four codes
  std::memset(e3m2.data(), 0, 3);
  EXPECT_THROW(save(directory_ / "odd.safetensors", std::map<std::string, Array>{{"w", e3m2}}),
               ValueError);
  Array wide = Array::empty(DType::kE3M2, {4});  // a code with the top bits set
  std::memset(wide.data(), 0x40, 4);
  EXPECT_THROW(save(directory_ / "wide.safetensors", std::map<std::string, Array>{{"w", wide}}),
               ValueError);
  EXPECT_EQ(entries(), std::vector<std::string>{"f6.safetensors"});  // no partial file
}

// What the Python safetensors package (0.8, via safetensors.numpy.save) writes for these
// tensors: metadata first, tensors widest first, header padded with spaces to 8 bytes.
const std::string kReferenceNumpyFile =
    file_bytes(R"({"__metadata__":{"format":"np"},)"
               R"("weight":{"dtype":"F64","shape":[1,4],"data_offsets":[0,32]},)"
               R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]},)"
               R"("codes":{"dtype":"U8","shape":[1,3],"data_offsets":[40,43]}})"
               "     ",
               raw_bytes<double>({0.25, -1.0, 3.0, 0.0}) + raw_bytes<float>({1.5f, -2.0f}) +
                   std::string("\x01\x02\x03", 3));

// The same from safetensors.torch.save with bf16, FP8, E8M0 and float4_e2m1fn_x2 tensors.
const std::string kReferenceTorchFile =
    file_bytes(R"({"__metadata__":{"recipe":"x"},)"
               R"("ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
               R"("scale":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},)"
               R"("exps":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[20,22]},)"
               R"("codes":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[22,24]},)"
               R"("packed":{"dtype":"F4","shape":[1,4],"data_offsets":[24,26]}})"
               "   ",
               raw_bytes<std::int64_t>({-1, 7}) + raw_bytes<std::uint16_t>({0x3F00, 0x4000}) +
                   std::string("\x7f\x80\x38\xb8\x21\x43", 6));

TEST_F(SafetensorsTest, ReadsWhatTheReferenceWrites) {
  const SafetensorsFile numpy_file = load(write("numpy.safetensors", kReferenceNumpyFile));
  EXPECT_EQ(numpy_file.metadata, (Metadata{{"format", "np"}}));
  const Array& weight = numpy_file.tensors.at("weight").array;
  ASSERT_EQ(weight.dtype(), DType::kF64);
  ASSERT_EQ(weight.shape(), (Shape{1, 4}));
  EXPECT_EQ(weight.data_as<const double>()[0], 0.25);
  EXPECT_EQ(weight.data_as<const double>()[2], 3.0);
  const Array& bias = numpy_file.tensors.at("bias").array;
  ASSERT_EQ(bias.dtype(), DType::kF32);
  EXPECT_EQ(bias.data_as<const float>()[1], -2.0f);
  EXPECT_EQ(numpy_file.tensors.at("codes").array.data_as<const std::uint8_t>()[2], 3);

  const SafetensorsFile torch_file = load(write("torch.safetensors", kReferenceTorchFile));
  EXPECT_EQ(torch_file.tensors.at("ids").array.data_as<const std::int64_t>()[0], -1);
  EXPECT_EQ(torch_file.tensors.at("scale").array.dtype(), DType::kBF16);
  EXPECT_EQ(torch_file.tensors.at("exps").array.dtype(), DType::kE8M0);
  EXPECT_EQ(torch_file.tensors.at("codes").array.dtype(), DType::kE4M3);
  const StoredTensor& packed = torch_file.tensors.at("packed");
  EXPECT_EQ(packed.dtype, SafetensorsDType::kF4);
  EXPECT_EQ(packed.array.shape(), (Shape{1, 2}));
  EXPECT_EQ(packed.array.data_as<const std::uint8_t>()[1], 0x43);
}

TEST_F(SafetensorsTest, WritesByteForByteWhatTheReferenceWrites) {
  for (const std::string& reference : {kReferenceNumpyFile, kReferenceTorchFile}) {
    const SafetensorsFile original = load(write("reference.safetensors", reference));
    const fs::path copy = directory_ / "copy.safetensors";
    save(copy, original.tensors, original.metadata);
    EXPECT_EQ(read(copy), reference);
  }
}

TEST_F(SafetensorsTest, ArraysBorrowTheMappingReadOnlyAndOutliveTheFileObject) {
  const fs::path path = write("numpy.safetensors", kReferenceNumpyFile);
  Array bias;
  {
    const SafetensorsFile file = load(path);
    const Array& weight = file.tensors.at("weight").array;
    bias = file.tensors.at("bias").array;
    // Zero-copy: both views share one owner, the mapping, and sit 32 bytes apart as in the file.
    EXPECT_NE(bias.owner(), nullptr);
    EXPECT_EQ(bias.owner(), weight.owner());
    EXPECT_EQ(
        static_cast<const std::byte*>(bias.data()) - static_cast<const std::byte*>(weight.data()),
        32);
    EXPECT_TRUE(bias.read_only());
  }
  EXPECT_EQ(bias.data_as<const float>()[0], 1.5f);
  EXPECT_EQ(bias.data_as<const float>()[1], -2.0f);
}

TEST_F(SafetensorsTest, CopiesTensorsThatAreMisalignedInTheFile) {
  // An unpadded 57-byte header puts the F32 data at file offset 65, not a multiple of 4.
  const std::string header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NE((8 + header.size()) % 4, 0u);
  const SafetensorsFile file =
      load(write("misaligned.safetensors", file_bytes(header, raw_bytes<float>({0.75f, -3.0f}))));
  const Array& array = file.tensors.at("t").array;
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(array.data()) % alignof(float), 0u);
  EXPECT_EQ(array.data_as<const float>()[0], 0.75f);
  EXPECT_EQ(array.data_as<const float>()[1], -3.0f);
}

TEST_F(SafetensorsTest, AcceptsEmptyTensorsAndAnEmptyHeader) {
  const SafetensorsFile empty = load(write("empty.safetensors", file_bytes("{}")));
  EXPECT_TRUE(empty.tensors.empty());
  const SafetensorsFile zeros = load(write(
      "zeros.safetensors", file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                      R"("b":{"dtype":"I8","shape":[2,0,3],"data_offsets":[0,0]},)"
                                      R"("c":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                      "\x05")));
  EXPECT_EQ(zeros.tensors.at("b").array.shape(), (Shape{2, 0, 3}));
  EXPECT_EQ(zeros.tensors.at("c").array.data_as<const std::uint8_t>()[0], 5);
}

TEST_F(SafetensorsTest, AcceptsNonAsciiNames) {
  const std::string name = "caf\xc3\xa9.\xe2\x82\xac.\xf0\x9d\x84\x9e";  // café.€.𝄞
  const fs::path path = directory_ / "utf8.safetensors";
  save(path, std::map<std::string, Array>{{name, Array::zeros(DType::kF32, {2})}});
  EXPECT_EQ(load(path).tensors.count(name), 1u);
}

TEST_F(SafetensorsTest, WritesStridedArraysInRowMajorOrder) {
  // A transposed view of [[1, 2, 3], [4, 5, 6]].
  Array matrix = Array::empty(DType::kF32, {2, 3});
  for (int i = 0; i < 6; ++i) matrix.data_as<float>()[i] = static_cast<float>(i + 1);
  const Array transposed =
      Array::borrow(matrix.data(), DType::kF32, {3, 2}, {1, 3}, Device::cpu(), matrix.owner());
  const fs::path path = directory_ / "strided.safetensors";
  save(path, std::map<std::string, Array>{{"t", transposed}});
  const Array loaded = load(path).tensors.at("t").array;
  EXPECT_EQ(loaded.shape(), (Shape{3, 2}));
  const std::vector<float> expected = {1, 4, 2, 5, 3, 6};
  EXPECT_EQ(std::vector<float>(loaded.data_as<const float>(), loaded.data_as<const float>() + 6),
            expected);
}

// ---------------------------------------------------------------------------------------------
// Hostile files: one test per rule, each checking the error type and what the message says.

TEST_F(SafetensorsTest, RejectsAMissingFile) {
  const std::string message = load_error_at<IOError>(directory_ / "absent.safetensors");
  EXPECT_TRUE(contains(message, "absent.safetensors")) << message;
  EXPECT_TRUE(contains(message, "cannot open")) << message;
}

TEST_F(SafetensorsTest, RejectsADirectory) {
  const std::string message = load_error_at<IOError>(directory_);
  EXPECT_TRUE(contains(message, "expected a regular file, got a directory")) << message;
}

TEST_F(SafetensorsTest, RejectsAFileShorterThanTheLengthField) {
  for (int length : {0, 1, 7}) {
    const std::string message = load_error<ValueError>(std::string(length, '\0'));
    EXPECT_TRUE(contains(message, "hostile.safetensors")) << message;
    EXPECT_TRUE(contains(message, "got a file of " + std::to_string(length) + " bytes")) << message;
  }
}

TEST_F(SafetensorsTest, RejectsAHeaderLengthOverTheLimit) {
  const std::string message =
      load_error<ValueError>(little_endian_u64(100'000'001) + std::string(16, ' '));
  EXPECT_TRUE(contains(message, "expected at most 100000000 bytes, got 100000001")) << message;
  // Lengths near 2^64 must not wrap around in the bounds arithmetic.
  const std::string huge = load_error<ValueError>(little_endian_u64(~std::uint64_t{0}) + "{}");
  EXPECT_TRUE(contains(huge, "header length")) << huge;
}

TEST_F(SafetensorsTest, RejectsAHeaderLengthBeyondTheFile) {
  const std::string message = load_error<ValueError>(little_endian_u64(10) + "{}");
  EXPECT_TRUE(contains(message, "expected at most the 2 bytes after the length field, got 10"))
      << message;
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotUtf8) {
  const std::vector<std::string> bad_names = {
      "\xff",              // never valid
      "\x80",              // continuation without a lead
      "\xc3",              // truncated two-byte sequence
      "\xc0\xaf",          // overlong '/'
      "\xe0\x80\xaf",      // overlong '/' in three bytes
      "\xed\xa0\x80",      // UTF-16 surrogate
      "\xf4\x90\x80\x80",  // beyond U+10FFFF
  };
  for (const std::string& name : bad_names) {
    const std::string message = load_error<ValueError>(file_bytes("{\"" + name + "\":1}"));
    EXPECT_TRUE(contains(message, "expected UTF-8 text, got an invalid byte at offset 2"))
        << message;
  }
  // A multibyte sequence cut off by the end of the header.
  const std::string message = load_error<ValueError>(file_bytes("{}\xe2\x82"));
  EXPECT_TRUE(contains(message, "UTF-8")) << message;
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotJson) {
  for (const std::string header : {"", "{", "{\"a\":}", "{} {}", "nope"}) {
    const std::string message = load_error<ValueError>(file_bytes(header));
    EXPECT_TRUE(contains(message, "header: expected JSON, got a parse error")) << message;
  }
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotAnObject) {
  const std::string message = load_error<ValueError>(file_bytes("[1, 2]"));
  EXPECT_TRUE(contains(message, "expected a JSON object, got array")) << message;
}

TEST_F(SafetensorsTest, RejectsNestingAtItsFirstContainer) {
  // The reader knows the format's fixed shape, so a hostile nesting is refused at its first
  // bracket instead of being parsed (and allocated) down to some depth limit.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string in_metadata =
      load_error<ValueError>(file_bytes("{\"__metadata__\":" + deep + "}"));
  EXPECT_TRUE(contains(in_metadata, "__metadata__: expected an object of strings, got array"))
      << in_metadata;
  const std::string in_shape = entry_error(R"({"dtype":"U8","shape":)" + deep + "}", "");
  EXPECT_TRUE(contains(in_shape,
                       "tensor 't': shape: expected non-negative integers below 2^63, "
                       "got array"))
      << in_shape;
}

TEST_F(SafetensorsTest, RejectsAnEntryThatIsNotAnObject) {
  const std::string message = entry_error("[1]", "");
  EXPECT_TRUE(contains(message, "tensor 't': expected an object")) << message;
}

TEST_F(SafetensorsTest, RejectsAnEntryMissingAField) {
  const std::map<std::string, std::string> entries = {
      {"dtype", R"({"shape":[1],"data_offsets":[0,1]})"},
      {"shape", R"({"dtype":"U8","data_offsets":[0,1]})"},
      {"data_offsets", R"({"dtype":"U8","shape":[1]})"},
  };
  for (const auto& [field, entry] : entries) {
    const std::string message = entry_error(entry, "x");
    EXPECT_TRUE(contains(message, "tensor 't': expected a \"" + field + "\" field")) << message;
  }
}

TEST_F(SafetensorsTest, RejectsAnUnknownDType) {
  for (const std::string dtype : {"\"F128\"", "\"f32\"", "7"}) {
    const std::string message =
        entry_error(R"({"dtype":)" + dtype + R"(,"shape":[1],"data_offsets":[0,4]})", "abcd");
    EXPECT_TRUE(contains(message, "tensor 't': dtype: expected")) << message;
  }
  const std::string message =
      entry_error(R"({"dtype":"F128","shape":[1],"data_offsets":[0,4]})", "abcd");
  EXPECT_TRUE(contains(message, "BF16")) << message;  // the list of valid names
  EXPECT_TRUE(contains(message, "got 'F128'")) << message;
}

TEST_F(SafetensorsTest, RejectsAShapeThatIsNotNonNegativeIntegers) {
  for (const std::string shape : {"[-1]", "[1.5]", "[\"2\"]", "[9223372036854775808]", "4"}) {
    const std::string message =
        entry_error(R"({"dtype":"U8","shape":)" + shape + R"(,"data_offsets":[0,0]})", "");
    EXPECT_TRUE(contains(message, "tensor 't': shape: expected")) << message;
  }
}

TEST_F(SafetensorsTest, RejectsMalformedDataOffsets) {
  for (const std::string offsets : {"[0]", "[0,1,1]", "[1,0]", "[-1,0]", "[0,\"1\"]", "{}"}) {
    const std::string message =
        entry_error(R"({"dtype":"U8","shape":[1],"data_offsets":)" + offsets + "}", "x");
    EXPECT_TRUE(contains(message, "tensor 't': data_offsets: expected [begin, end]")) << message;
  }
}

TEST_F(SafetensorsTest, RejectsDuplicateTensorNames) {
  const std::string message =
      load_error<ValueError>(file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                        R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                        "xy"));
  EXPECT_TRUE(contains(message, "expected unique keys, got 'a' twice")) << message;
}

TEST_F(SafetensorsTest, RejectsDuplicateKeysInsideAnEntryOrTheMetadata) {
  const std::string in_entry =
      entry_error(R"({"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]})", "x");
  EXPECT_TRUE(contains(in_entry, "got 'dtype' twice")) << in_entry;
  const std::string in_metadata =
      load_error<ValueError>(file_bytes(R"({"__metadata__":{"k":"1","k":"2"}})"));
  EXPECT_TRUE(contains(in_metadata, "got 'k' twice")) << in_metadata;
}

TEST_F(SafetensorsTest, RejectsMetadataThatIsNotAnObjectOfStrings) {
  const std::string not_object = load_error<ValueError>(file_bytes(R"({"__metadata__":["a"]})"));
  EXPECT_TRUE(contains(not_object, "__metadata__: expected an object of strings, got array"))
      << not_object;
  const std::string not_string =
      load_error<ValueError>(file_bytes(R"({"__metadata__":{"layers":6}})"));
  EXPECT_TRUE(contains(not_string, "expected a string for key 'layers', got number")) << not_string;
}

TEST_F(SafetensorsTest, RejectsAGapBetweenTensors) {
  const std::string message =
      load_error<ValueError>(file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                        R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
                                        "xyz"));
  EXPECT_TRUE(contains(message, "tensor 'b': expected data starting at byte 1")) << message;
  EXPECT_TRUE(contains(message, "gap")) << message;
}

TEST_F(SafetensorsTest, RejectsAGapBeforeTheFirstTensor) {
  const std::string message =
      entry_error(R"({"dtype":"U8","shape":[1],"data_offsets":[1,2]})", "xy");
  EXPECT_TRUE(contains(message, "expected data starting at byte 0")) << message;
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string message =
      load_error<ValueError>(file_bytes(R"({"a":{"dtype":"U16","shape":[1],"data_offsets":[0,2]},)"
                                        R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                                        "xyz"));
  EXPECT_TRUE(contains(message, "tensor 'b'")) << message;
  EXPECT_TRUE(contains(message, "overlapping tensor 'a'")) << message;
}

TEST_F(SafetensorsTest, RejectsDataBeyondTheEndOfTheFile) {
  const std::string message =
      entry_error(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "abcd");
  EXPECT_TRUE(contains(message, "tensor 't': expected data inside the file's 4 data bytes"))
      << message;
}

TEST_F(SafetensorsTest, RejectsTrailingBytes) {
  const std::string message =
      entry_error(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", "abcdef");
  EXPECT_TRUE(contains(message, "got 2 trailing bytes")) << message;
}

TEST_F(SafetensorsTest, RejectsASizeThatDisagreesWithShapeAndDType) {
  const std::string message =
      entry_error(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})", std::string(20, 'x'));
  EXPECT_TRUE(contains(message, "tensor 't': expected 24 bytes for F32 of shape (2, 3)"))
      << message;
}

TEST_F(SafetensorsTest, RejectsShapesWhoseSizeOverflows) {
  // 2^62 elements fit in int64, 2^64 bytes do not.
  const std::string bytes =
      entry_error(R"({"dtype":"F32","shape":[2305843009213693952,2],"data_offsets":[0,0]})", "");
  EXPECT_TRUE(contains(bytes, "tensor 't': expected a byte size that fits in 64 bits")) << bytes;
  // 2^64 elements do not fit either.
  const std::string elements =
      entry_error(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})", "");
  EXPECT_TRUE(contains(elements, "tensor 't': shape")) << elements;
}

TEST_F(SafetensorsTest, RejectsF4WithAnOddOrMissingLastDim) {
  for (const std::string shape : {"[3]", "[2,5]", "[]"}) {
    const std::string message =
        entry_error(R"({"dtype":"F4","shape":)" + shape + R"(,"data_offsets":[0,1]})", "x");
    EXPECT_TRUE(contains(message, "tensor 't': shape: expected an even last dim for F4"))
        << message;
  }
}

TEST_F(SafetensorsTest, RejectsValidDTypesBrecciaCannotHold) {
  const std::map<std::string, int> element_bytes = {
      {"BOOL", 1}, {"U16", 2}, {"I16", 2}, {"U32", 4}, {"U64", 8}};
  for (const auto& [dtype, bytes] : element_bytes) {
    const std::string message =
        entry_error(R"({"dtype":")" + dtype + R"(","shape":[1],"data_offsets":[0,)" +
                        std::to_string(bytes) + "]}",
                    std::string(bytes, '\0'));
    EXPECT_TRUE(contains(message, "dtype " + dtype + " is valid safetensors but breccia has no"))
        << message;
  }
}

// ---------------------------------------------------------------------------------------------
// The writer: argument checks and atomicity

TEST_F(SafetensorsTest, SaveRejectsDeviceArraysBeforeTouchingTheDisk) {
  float fake_device_memory[2] = {};
  const Array on_gpu =
      Array::borrow(fake_device_memory, DType::kF32, {2}, {}, Device::cuda(0), nullptr);
  try {
    save(directory_ / "gpu.safetensors", std::map<std::string, Array>{{"w", on_gpu}});
    ADD_FAILURE() << "expected a DeviceError";
  } catch (const DeviceError& error) {
    EXPECT_TRUE(contains(error.what(), "tensor 'w': expected a cpu array, got one on cuda:0"))
        << error.what();
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(SafetensorsTest, SaveRejectsAnArrayOfTheWrongDTypeForItsFileDType) {
  const StoredTensor mismatched{Array::zeros(DType::kF32, {2}), SafetensorsDType::kF16};
  EXPECT_THROW(
      save(directory_ / "x.safetensors", std::map<std::string, StoredTensor>{{"w", mismatched}}),
      TypeError);
  const StoredTensor unrepresentable{Array::zeros(DType::kU8, {2}), SafetensorsDType::kBool};
  EXPECT_THROW(save(directory_ / "x.safetensors",
                    std::map<std::string, StoredTensor>{{"w", unrepresentable}}),
               ValueError);
  EXPECT_TRUE(entries().empty());
}

TEST_F(SafetensorsTest, SaveRejectsReservedAndEmptyNames) {
  for (const std::string name : {"__metadata__", ""}) {
    EXPECT_THROW(save(directory_ / "x.safetensors",
                      std::map<std::string, Array>{{name, Array::zeros(DType::kU8, {1})}}),
                 ValueError);
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(SafetensorsTest, SaveIntoAMissingDirectoryFailsWithoutCreatingIt) {
  const fs::path path = directory_ / "missing" / "x.safetensors";
  try {
    save(path, std::map<std::string, Array>{{"w", Array::zeros(DType::kU8, {1})}});
    ADD_FAILURE() << "expected an IOError";
  } catch (const IOError& error) {
    EXPECT_TRUE(contains(error.what(), "cannot create temporary file")) << error.what();
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(SafetensorsTest, SaveThatCannotRenameRemovesItsTemporaryFile) {
  // rename() cannot replace a directory with a file, so the write succeeds and the last step
  // fails: the temporary file must not be left behind and the directory must be untouched.
  const fs::path target = directory_ / "taken";
  fs::create_directory(target);
  try {
    save(target, std::map<std::string, Array>{{"w", Array::zeros(DType::kF32, {64})}});
    ADD_FAILURE() << "expected an IOError";
  } catch (const IOError& error) {
    EXPECT_TRUE(contains(error.what(), "cannot replace it")) << error.what();
  }
  EXPECT_EQ(entries(), std::vector<std::string>{"taken"});
  EXPECT_TRUE(fs::is_directory(target));
}

TEST_F(SafetensorsTest, SaveFailingMidWriteKeepsTheOldFileAndLeavesNoTemporary) {
  const fs::path path = directory_ / "model.safetensors";
  save(path, std::map<std::string, Array>{{"old", Array::zeros(DType::kU8, {4})}});
  const std::string old_bytes = read(path);

  // A file size limit makes write() fail part way (EFBIG), even for root. The signal it would
  // raise is ignored so that the failure arrives as an error code.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string message;
  try {
    save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kF32, {1 << 16})}});
  } catch (const IOError& error) {
    message = error.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, previous_handler);

  EXPECT_TRUE(contains(message, "cannot write")) << message;
  EXPECT_EQ(read(path), old_bytes);
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, SaveReplacesAnExistingFile) {
  const fs::path path = directory_ / "model.safetensors";
  save(path, std::map<std::string, Array>{{"old", Array::zeros(DType::kU8, {4})}});
  save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kI32, {3})}});
  const SafetensorsFile file = load(path);
  EXPECT_EQ(file.tensors.count("old"), 0u);
  EXPECT_EQ(file.tensors.at("new").array.shape(), (Shape{3}));
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"});
}

// ---------------------------------------------------------------------------------------------
// The embedded weights

TEST(EmbeddedWeights, HoldTheThreeMiniLmAttentionMatrices) {
  const SafetensorsFile file =
      load(fs::path(BRECCIA_TEST_DATA) / "minilm-l6-layer0-qkv.safetensors");
  ASSERT_EQ(file.tensors.size(), 3u);
  for (const char* part : {"query", "key", "value"}) {
    const std::string name = std::string("encoder.layer.0.attention.self.") + part + ".weight";
    ASSERT_EQ(file.tensors.count(name), 1u) << name;
    const Array& weight = file.tensors.at(name).array;
    EXPECT_EQ(weight.dtype(), DType::kF32);
    EXPECT_EQ(weight.shape(), (Shape{384, 384}));
    // Trained weights: finite, not all zero.
    double sum_of_squares = 0.0;
    for (std::int64_t i = 0; i < weight.numel(); ++i) {
      const float value = weight.data_as<const float>()[i];
      ASSERT_TRUE(std::isfinite(value));
      sum_of_squares += static_cast<double>(value) * value;
    }
    EXPECT_GT(sum_of_squares, 0.0) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Issue 11: the holes a hostile user found, one test each

TEST_F(SafetensorsTest, NulByteInTensorNameIsRefusedByLoadAndSave) {
  // "model.weight\u0000evil" used to reach Python as "model.weight", shadowing the real one.
  const std::string header = R"({"model.weight":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("model.weight\u0000evil":{"dtype":"U8","shape":[1],)"
                             R"("data_offsets":[1,2]}})";
  const std::string message = load_error<ValueError>(file_bytes(header, "ab"));
  EXPECT_TRUE(contains(message, "tensor name: expected no NUL bytes, got 'model.weight\\0evil'"))
      << message;
  const std::string name("a\0x", 3);
  const std::string saving = test_support::error_message<ValueError>([&] {
    save(directory_ / "x.safetensors",
         std::map<std::string, Array>{{name, Array::zeros(DType::kU8, {1})}});
  });
  EXPECT_TRUE(contains(saving, "expected no NUL bytes, got 'a\\0x'")) << saving;
  EXPECT_FALSE(fs::exists(directory_ / "x.safetensors"));
}

TEST_F(SafetensorsTest, NulByteInPathIsRefusedInsteadOfTruncatingIt) {
  const fs::path real = directory_ / "real.safetensors";
  save(real, std::map<std::string, Array>{{"w", Array::zeros(DType::kU8, {1})}});
  const fs::path tricked = real.native() + std::string("\0.evil", 6);
  EXPECT_TRUE(contains(load_error_at<ValueError>(tricked), "path: expected a path without NUL"));
  EXPECT_THROW(save(tricked, std::map<std::string, Array>{{"w", Array::zeros(DType::kU8, {2})}}),
               ValueError);
  EXPECT_EQ(load(real).tensors.at("w").array.shape(), (Shape{1}));  // not overwritten
}

TEST_F(SafetensorsTest, HeaderParsingIsLinearInTheTensorCount) {
  // 100k tensors took 65 s when the duplicate check rescanned the header object at its end.
  constexpr int kTensors = 100'000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i) {
    header += (i > 0 ? "," : "") + ("\"t" + std::to_string(i)) +
              R"(":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})";
  }
  header += "}";
  const fs::path path = write("many.safetensors", file_bytes(header));
  const auto start = std::chrono::steady_clock::now();
  const SafetensorsFile file = load(path);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(file.tensors.size(), static_cast<std::size_t>(kTensors));
  // One to two seconds in a release build on the busy 2-core development machine, up to nine
  // under ASan; the quadratic parser took 65 s in a release build, so this still catches it.
  EXPECT_LT(seconds, 30.0);
}

TEST_F(SafetensorsTest, FifoIsRefusedWithoutBlocking) {
  const fs::path fifo = directory_ / "pipe.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string message = load_error_at<IOError>(fifo);  // used to block in open() forever
  EXPECT_TRUE(contains(message, "expected a regular file, got a FIFO")) << message;
}

TEST_F(SafetensorsTest, WritesThroughALoadedArrayStayPrivateToTheProcess) {
  // Frameworks without read-only tensors (torch) write through the flag; that used to
  // segfault on the read-only mapping. The mapping is private, so the file is unchanged.
  const fs::path path = directory_ / "m.safetensors";
  save(path, std::map<std::string, Array>{{"w", Array::zeros(DType::kF32, {1024})}});
  const std::string before = read(path);
  const SafetensorsFile file = load(path);
  const Array& w = file.tensors.at("w").array;
  EXPECT_TRUE(w.read_only());
  static_cast<float*>(w.data())[7] = 42.0f;
  EXPECT_EQ(w.data_as<const float>()[7], 42.0f);
  EXPECT_EQ(read(path), before);
  EXPECT_EQ(load(path).tensors.at("w").array.data_as<const float>()[7], 0.0f);
}

TEST_F(SafetensorsTest, TruncatedWhileLoadedRaisesSigbusUnlessCopied) {
  const fs::path path = directory_ / "m.safetensors";
  Array values = Array::empty(DType::kF32, {1 << 16});
  for (int i = 0; i < (1 << 16); ++i) values.data_as<float>()[i] = static_cast<float>(i);
  save(path, std::map<std::string, Array>{{"w", values}});

  const SafetensorsFile copied = load(path, {.copy = true});
  // The documented risk of a mapping: reading pages the file no longer has.
  EXPECT_EXIT(
      {
        const SafetensorsFile mapped = load(path);
        fs::resize_file(path, 64);
        volatile float sink = mapped.tensors.at("w").array.data_as<const float>()[(1 << 16) - 1];
        (void)sink;
        std::_Exit(0);
      },
      [](int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }, "");
  fs::resize_file(path, 64);
  const Array& w = copied.tensors.at("w").array;
  for (int i = 0; i < (1 << 16); i += 4099) EXPECT_EQ(w.data_as<const float>()[i], i);
}

TEST_F(SafetensorsTest, JsonNumberOverflowIsAValueErrorNamingTheFile) {
  for (const std::string number : {"1e400", "18446744073709551616", "-1e400"}) {
    const std::string message = load_error<ValueError>(
        file_bytes(R"({"x":{"dtype":"U8","shape":[)" + number + R"(],"data_offsets":[0,0]}})"));
    EXPECT_TRUE(contains(message,
                         "hostile.safetensors': tensor 'x': shape: expected "
                         "non-negative integers below 2^63, got " +
                             number))
        << message;
  }
}

TEST_F(SafetensorsTest, LoadRefusesWhatSaveRefuses) {
  // A NUL-padded header: the JSON parser stopped at the NUL and ignored what followed.
  const std::string json = R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  const std::string padded =
      load_error<ValueError>(file_bytes(json + std::string("\0\0{junk", 7), "a"));
  EXPECT_TRUE(contains(padded, "got a NUL byte at offset " + std::to_string(json.size())))
      << padded;
  EXPECT_TRUE(contains(load_error<ValueError>(file_bytes(
                           R"({"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "a")),
                       "tensor name: expected a non-empty name"));
  const std::string extra =
      entry_error(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"comment":"hi"})", "a");
  EXPECT_TRUE(contains(extra,
                       "expected only the fields dtype, shape and data_offsets, got "
                       "\"comment\""))
      << extra;
}

TEST_F(SafetensorsTest, AbsurdShapesAreRefusedAtLoad) {
  std::string dims = "[";
  for (int i = 0; i < 1000; ++i) dims += i > 0 ? ",1" : "1";
  const std::string wide =
      entry_error(R"({"dtype":"U8","shape":)" + dims + R"(],"data_offsets":[0,1]})", "a");
  EXPECT_TRUE(contains(wide, "shape: expected at most 64 dims, got 1000")) << wide;
  // 2^64 elements around a zero dim: empty, but NumPy refuses to build it.
  const std::string huge =
      entry_error(R"({"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]})", "");
  EXPECT_TRUE(contains(huge, "overflows int64")) << huge;
}

TEST_F(SafetensorsTest, InterruptedWriteLeavesTheTargetAndNoTemporary) {
  const fs::path path = directory_ / "model.safetensors";
  save(path, std::map<std::string, Array>{{"old", Array::zeros(DType::kU8, {4})}});
  const std::string old_bytes = read(path);
  struct Interrupted {};
  int calls = 0;
  EXPECT_THROW(
      save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kF32, {1 << 23})}}, {},
           [&](std::uint64_t, std::uint64_t) {
             if (++calls == 3) throw Interrupted{};
           }),
      Interrupted);
  EXPECT_EQ(read(path), old_bytes);
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"});
  // A 32 MiB write is checked between pieces, and once more just before the rename.
  int total = 0;
  save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kF32, {1 << 23})}}, {},
       [&](std::uint64_t, std::uint64_t) { ++total; });
  EXPECT_GE(total, 5);
}

TEST_F(SafetensorsTest, WriteProgressCountsUpToTheFileSize) {
  const fs::path path = directory_ / "model.safetensors";
  std::vector<std::pair<std::uint64_t, std::uint64_t>> reports;
  save(path, std::map<std::string, Array>{{"w", Array::zeros(DType::kF32, {1 << 23})}}, {},
       [&](std::uint64_t written, std::uint64_t total) { reports.emplace_back(written, total); });
  const auto size = static_cast<std::uint64_t>(fs::file_size(path));
  ASSERT_GE(reports.size(), 5u);
  for (std::size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].second, size);
    if (i > 0) EXPECT_GE(reports[i].first, reports[i - 1].first);
  }
  EXPECT_EQ(reports.front().first, 0u);
  EXPECT_EQ(reports.back().first, size);  // the report just before the rename
}

// ---------------------------------------------------------------------------------------------
// SafetensorsWriter: one tensor at a time

// The tensors of every stored dtype in an order that puts odd-sized ones between others.
std::vector<std::pair<std::string, StoredTensor>> mixed_tensors(std::mt19937& random) {
  Array fp6 = Array::zeros(DType::kE2M3, {3, 4});
  for (std::int64_t i = 0; i < fp6.numel(); ++i) fp6.data_as<std::uint8_t>()[i] = random() & 0x3F;
  return {
      {"codes.odd", {random_array(DType::kU8, {3}, random), SafetensorsDType::kU8}},
      {"weight", {random_array(DType::kE4M3, {16, 64}, random), SafetensorsDType::kF8E4M3}},
      {"scale", {random_array(DType::kF32, {2, 3}, random), SafetensorsDType::kF32}},
      {"bias.odd", {random_array(DType::kBF16, {5}, random), SafetensorsDType::kBF16}},
      {"packed", {random_array(DType::kU8, {4, 8}, random), SafetensorsDType::kF4}},
      {"fp6", {fp6, SafetensorsDType::kF6E2M3}},
      {"ids", {random_array(DType::kI64, {3}, random), SafetensorsDType::kI64}},
      {"empty", {random_array(DType::kF32, {0, 4}, random), SafetensorsDType::kF32}},
      {"scalar", {random_array(DType::kF64, {}, random), SafetensorsDType::kF64}},
  };
}

TEST_F(SafetensorsTest, WriterStreamsTensorsThatLoadBackAlignedWithAnyHeaderRoom) {
  std::mt19937 random(23);
  const auto tensors = mixed_tensors(random);
  const Metadata metadata = {{"format", "pt"}, {"note", "streamed"}};
  // The header's size (padded to 8 bytes), from a first write with room to spare.
  std::uint64_t exact = 0;
  {
    const fs::path probe = directory_ / "probe.safetensors";
    SafetensorsWriter writer(probe);
    for (const auto& [name, tensor] : tensors) writer.add(name, tensor);
    writer.finish(metadata);
    std::string header = read(probe).substr(8, std::uint64_t{1} << 16);
    exact = (header.find_last_not_of(' ') + 1 + 7) / 8 * 8;
    fs::remove(probe);
  }
  // Room to spare, room to the byte, and too little (the data is copied behind the header).
  for (const std::uint64_t room : {std::uint64_t{1} << 16, exact, std::uint64_t{8}}) {
    SCOPED_TRACE(room);
    const fs::path path = directory_ / "streamed.safetensors";
    fs::remove(path);
    {
      SafetensorsWriter writer(path, room);
      for (const auto& [name, tensor] : tensors) writer.add(name, tensor);
      EXPECT_FALSE(fs::exists(path));  // nothing under the final name before finish()
      writer.finish(metadata);
    }
    const SafetensorsFile file = load(path);
    EXPECT_EQ(file.metadata, metadata);
    ASSERT_EQ(file.tensors.size(), tensors.size());
    const std::string text = read(path);
    std::uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = header_length << 8 | std::uint8_t(text[i]);
    EXPECT_EQ(header_length % 8, 0u);
    if (room != 8) EXPECT_EQ(header_length, room);  // written in the room kept for it
    for (const auto& [name, original] : tensors) {
      SCOPED_TRACE(name);
      const StoredTensor& loaded = file.tensors.at(name);
      EXPECT_EQ(loaded.dtype, original.dtype);
      EXPECT_EQ(loaded.array.shape(), original.array.shape());
      EXPECT_EQ(array_bytes(loaded.array), array_bytes(original.array));
      // Borrowed from the mapping (read-only), not copied for misalignment; FP6 is unpacked.
      EXPECT_EQ(loaded.array.read_only(), original.dtype != SafetensorsDType::kF6E2M3);
    }
    EXPECT_EQ(entries(), std::vector<std::string>{"streamed.safetensors"});  // no temporary
  }
}

TEST_F(SafetensorsTest, WriterDestroyedBeforeFinishLeavesTheTargetAndNoTemporary) {
  const fs::path path = directory_ / "model.safetensors";
  save(path, std::map<std::string, Array>{{"old", Array::zeros(DType::kU8, {4})}});
  const std::string old_bytes = read(path);
  {
    SafetensorsWriter writer(path);
    writer.add("new", {Array::zeros(DType::kF32, {1024}), SafetensorsDType::kF32});
  }
  EXPECT_EQ(read(path), old_bytes);
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, WriterRefusesFurtherCallsAfterAFailedWrite) {
  const fs::path path = directory_ / "model.safetensors";
  std::optional<SafetensorsWriter> writer(std::in_place, path);
  writer->add("w", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32});
  // 32 FP6 codes (24 bytes, written at once), one with its top bits set: packing fails midway.
  Array codes = Array::zeros(DType::kE2M3, {32});
  codes.data_as<std::uint8_t>()[5] = 0x40;
  EXPECT_THROW(writer->add("codes", {codes, SafetensorsDType::kF6E2M3}), ValueError);
  try {
    writer->add("next", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32});
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& error) {
    EXPECT_TRUE(contains(error.what(), "an earlier write failed")) << error.what();
  }
  EXPECT_THROW(writer->finish(), ValueError);
  writer.reset();
  EXPECT_TRUE(entries().empty());  // no file, no temporary
}

TEST_F(SafetensorsTest, WriterRefusesWhatSaveRefusesAndANameAddedTwice) {
  const fs::path path = directory_ / "model.safetensors";
  SafetensorsWriter writer(path);
  writer.add("w", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32});
  try {
    writer.add("w", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32});
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& error) {
    EXPECT_TRUE(contains(error.what(), "'w' added twice")) << error.what();
  }
  EXPECT_THROW(writer.add("", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32}),
               ValueError);
  EXPECT_THROW(writer.add("__metadata__", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32}),
               ValueError);
  EXPECT_THROW(writer.add("x", {Array::zeros(DType::kU8, {2}), SafetensorsDType::kF32}), TypeError);
  writer.finish();
  EXPECT_EQ(load(path).tensors.size(), 1u);
  EXPECT_THROW(writer.finish(), ValueError);
  EXPECT_THROW(writer.add("late", {Array::zeros(DType::kF32, {2}), SafetensorsDType::kF32}),
               ValueError);
}

TEST_F(SafetensorsTest, TemporaryFilesOfAKilledWriterAreCleanedByTheNextSave) {
  const fs::path path = directory_ / "model.safetensors";
  save(path, std::map<std::string, Array>{{"old", Array::zeros(DType::kU8, {4})}});
  const std::string old_bytes = read(path);
  // A child killed mid-write (SIGKILL: no handler, no cleanup) leaves its temporary file.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kF32, {1 << 22})}}, {},
         [](std::uint64_t, std::uint64_t) { ::raise(SIGKILL); });
    std::_Exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::vector<std::string> after_kill = entries();
  ASSERT_EQ(after_kill.size(), 2u);
  const std::string leftover = after_kill[0];
  EXPECT_TRUE(
      leftover.starts_with(".model.safetensors.breccia-partial-" + std::to_string(child) + "-"))
      << leftover;
  EXPECT_EQ(read(path), old_bytes);
  EXPECT_TRUE(is_temporary_file(directory_ / leftover));
  EXPECT_FALSE(is_temporary_file(path));
  // Readers refuse it by name; listing "*.safetensors" never matches it.
  EXPECT_TRUE(contains(load_error_at<ValueError>(directory_ / leftover), "temporary file"));
  // A live writer's file (this process's pid) is left alone; the dead one's is removed.
  const std::string live =
      ".model.safetensors.breccia-partial-" + std::to_string(::getpid()) + "-999";
  write(live, "partial");
  save(path, std::map<std::string, Array>{{"new", Array::zeros(DType::kU8, {2})}});
  EXPECT_EQ(entries(), (std::vector<std::string>{live, "model.safetensors"}));
}

}  // namespace
}  // namespace breccia::io
