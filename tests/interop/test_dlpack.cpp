#include "breccia/dlpack.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "breccia/error.hpp"
#include "interop/dlpack_abi.hpp"

namespace breccia::dlpack {
namespace {

using abi::DLManagedTensor;
using abi::DLManagedTensorVersioned;

struct ExpectedCode {
  DType dtype;
  std::uint8_t code;
  std::uint8_t bits;
};

// Type codes from the DLPack 1.1 specification.
constexpr ExpectedCode kCodes[] = {
    {DType::kU8, 1, 8},    {DType::kI8, 0, 8},    {DType::kI32, 0, 32},  {DType::kI64, 0, 64},
    {DType::kF16, 2, 16},  {DType::kBF16, 4, 16}, {DType::kF32, 2, 32},  {DType::kF64, 2, 64},
    {DType::kE4M3, 10, 8}, {DType::kE5M2, 12, 8}, {DType::kE8M0, 14, 8},
};

// Memory whose release is counted, as the owner of an exported Array.
struct CountedBuffer {
  std::vector<std::uint8_t> bytes;
  int releases = 0;

  std::shared_ptr<void> owner() {
    return {bytes.data(), [this](void*) { ++releases; }};
  }
};

Array patterned(DType dtype, const Shape& shape, CountedBuffer& buffer) {
  buffer.bytes.resize(checked_numel(shape) * itemsize(dtype));
  std::iota(buffer.bytes.begin(), buffer.bytes.end(), std::uint8_t{3});
  return Array::borrow(buffer.bytes.data(), dtype, shape, {}, Device::cpu(), buffer.owner());
}

TEST(DLPackExport, DescribesEveryDTypeWithItsCode) {
  for (const auto& expected : kCodes) {
    CountedBuffer buffer;
    const Array array = patterned(expected.dtype, {3, 4}, buffer);
    auto* managed = static_cast<DLManagedTensorVersioned*>(to_versioned(array));
    EXPECT_EQ(managed->version.major, 1u);
    EXPECT_EQ(managed->version.minor, 1u);
    EXPECT_EQ(managed->flags, 0u);
    const auto& tensor = managed->dl_tensor;
    EXPECT_EQ(tensor.data, buffer.bytes.data());
    EXPECT_EQ(tensor.device.device_type, abi::kDLCPU);
    EXPECT_EQ(tensor.device.device_id, 0);
    EXPECT_EQ(tensor.ndim, 2);
    EXPECT_EQ(tensor.dtype.code, expected.code) << dtype_name(expected.dtype);
    EXPECT_EQ(tensor.dtype.bits, expected.bits) << dtype_name(expected.dtype);
    EXPECT_EQ(tensor.dtype.lanes, 1);
    EXPECT_EQ(tensor.shape[0], 3);
    EXPECT_EQ(tensor.shape[1], 4);
    EXPECT_EQ(tensor.strides[0], 4);
    EXPECT_EQ(tensor.strides[1], 1);
    EXPECT_EQ(tensor.byte_offset, 0u);
    managed->deleter(managed);
  }
}

TEST(DLPackExport, Float8AsUint8ForOlderConsumers) {
  for (DType dtype : {DType::kE4M3, DType::kE5M2, DType::kE8M0}) {
    CountedBuffer buffer;
    auto* managed = static_cast<DLManagedTensorVersioned*>(
        to_versioned(patterned(dtype, {5}, buffer), {.float8_codes = false}));
    EXPECT_EQ(managed->dl_tensor.dtype.code, abi::kDLUInt);
    EXPECT_EQ(managed->dl_tensor.dtype.bits, 8);
    const Array back = from_versioned(managed);
    EXPECT_EQ(back.dtype(), DType::kU8);
    EXPECT_EQ(back.viewed_as(dtype).data(), buffer.bytes.data());
  }
}

TEST(DLPackRoundTrip, KeepsPointerGeometryAndBytesForEveryDType) {
  for (const auto& expected : kCodes) {
    CountedBuffer buffer;
    {
      Array original = patterned(expected.dtype, {2, 3, 5}, buffer);
      const std::vector<std::uint8_t> bytes_before = buffer.bytes;
      void* managed = to_versioned(original);
      original = Array();  // the export alone must keep the memory alive
      EXPECT_EQ(buffer.releases, 0);
      const Array back = from_versioned(managed);
      EXPECT_EQ(back.dtype(), expected.dtype);
      EXPECT_EQ(back.shape(), (Shape{2, 3, 5}));
      EXPECT_EQ(back.strides(), (Strides{15, 5, 1}));
      EXPECT_EQ(back.device(), Device::cpu());
      EXPECT_EQ(back.data(), buffer.bytes.data());
      EXPECT_EQ(std::memcmp(back.data(), bytes_before.data(), bytes_before.size()), 0);
      EXPECT_EQ(buffer.releases, 0);
    }
    EXPECT_EQ(buffer.releases, 1) << dtype_name(expected.dtype);
  }
}

TEST(DLPackRoundTrip, KeepsStridesAndByteOffsetOfViews) {
  CountedBuffer buffer;
  buffer.bytes.resize(4 * 6 * 4);
  // A reversed, column-stepped view of a (4, 6) float32 matrix.
  const Array view = Array::borrow(buffer.bytes.data(), DType::kF32, {4, 3}, {-6, 2},
                                   Device::cpu(), buffer.owner(), 3 * 6 * 4);
  const Array back = from_versioned(to_versioned(view));
  EXPECT_EQ(back.strides(), view.strides());
  EXPECT_EQ(back.byte_offset(), view.byte_offset());
  EXPECT_EQ(back.base(), view.base());
  EXPECT_EQ(back.data(), view.data());
}

TEST(DLPackRoundTrip, PackedFloat4DoublesThenHalvesTheLastDim) {
  CountedBuffer buffer;
  const Array packed = patterned(DType::kU8, {3, 4}, buffer);
  auto* managed = static_cast<DLManagedTensorVersioned*>(
      to_versioned(packed, {.packed_float4 = true}));
  const auto& tensor = managed->dl_tensor;
  EXPECT_EQ(tensor.dtype.code, abi::kDLFloat4_e2m1fn);
  EXPECT_EQ(tensor.dtype.bits, 4);
  EXPECT_EQ(tensor.dtype.lanes, 1);
  EXPECT_EQ(tensor.shape[0], 3);
  EXPECT_EQ(tensor.shape[1], 8);
  EXPECT_EQ(tensor.strides[0], 8);
  EXPECT_EQ(tensor.strides[1], 1);
  const Array back = from_versioned(managed);
  EXPECT_EQ(back.dtype(), DType::kU8);
  EXPECT_EQ(back.shape(), (Shape{3, 4}));
  EXPECT_EQ(back.data(), buffer.bytes.data());
}

TEST(DLPackExport, PackedFloat4NeedsContiguousUint8) {
  CountedBuffer buffer;
  EXPECT_THROW(to_versioned(patterned(DType::kI8, {4}, buffer), {.packed_float4 = true}),
               TypeError);
  const Array transposed = Array::borrow(buffer.bytes.data(), DType::kU8, {2, 2}, {1, 2},
                                         Device::cpu(), nullptr);
  EXPECT_THROW(to_versioned(transposed, {.packed_float4 = true}), ValueError);
  std::uint8_t scalar = 0;
  EXPECT_THROW(to_versioned(Array::borrow(&scalar, DType::kU8, {}, {}, Device::cpu(), nullptr),
                            {.packed_float4 = true}),
               ValueError);
}

TEST(DLPackExport, DeviceAndReadOnlyAreCarried) {
  std::vector<float> stand_in(8);
  const Array on_gpu =
      Array::borrow(stand_in.data(), DType::kF32, {8}, {}, Device::cuda(3), nullptr);
  auto* managed = static_cast<DLManagedTensorVersioned*>(to_versioned(on_gpu.marked_read_only()));
  EXPECT_EQ(managed->dl_tensor.device.device_type, abi::kDLCUDA);
  EXPECT_EQ(managed->dl_tensor.device.device_id, 3);
  EXPECT_EQ(managed->flags & abi::kFlagReadOnly, abi::kFlagReadOnly);
  const Array back = from_versioned(managed);
  EXPECT_EQ(back.device(), Device::cuda(3));
  EXPECT_TRUE(back.read_only());
}

TEST(DLPackExport, RejectsUndefinedArrays) {
  EXPECT_THROW(to_versioned(Array()), ValueError);
}

// A producer built by hand, as another framework would hand one over. It outlives every Array
// in a test, so its deleter only counts calls.
template <class Managed>
struct Producer {
  std::vector<std::uint8_t> storage = std::vector<std::uint8_t>(256);
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
  Managed managed{};
  int deleter_calls = 0;

  Producer(std::vector<std::int64_t> shape_in, abi::DLDataType dtype,
           std::vector<std::int64_t> strides_in = {})
      : shape(std::move(shape_in)), strides(std::move(strides_in)) {
    std::iota(storage.begin(), storage.end(), std::uint8_t{0});
    if constexpr (std::is_same_v<Managed, DLManagedTensorVersioned>) managed.version = {1, 1};
    managed.manager_ctx = this;
    managed.deleter = [](Managed* self) {
      ++static_cast<Producer*>(self->manager_ctx)->deleter_calls;
    };
    auto& tensor = managed.dl_tensor;
    tensor.data = storage.data();
    tensor.device = {abi::kDLCPU, 0};
    tensor.ndim = static_cast<std::int32_t>(shape.size());
    tensor.dtype = dtype;
    tensor.shape = shape.data();
    tensor.strides = strides.empty() ? nullptr : strides.data();
    tensor.byte_offset = 0;
  }
};

using VersionedProducer = Producer<DLManagedTensorVersioned>;
using LegacyProducer = Producer<DLManagedTensor>;

constexpr abi::DLDataType kFloat32{abi::kDLFloat, 32, 1};
constexpr abi::DLDataType kUint8{abi::kDLUInt, 8, 1};

TEST(DLPackImport, DeleterRunsExactlyOnceWhenTheLastCopyDies) {
  VersionedProducer producer({4, 8}, kFloat32);
  {
    Array first = from_versioned(&producer.managed);
    EXPECT_EQ(first.data(), producer.storage.data());
    Array reshaped = first.reshaped({32});
    const Array bytes = first.viewed_as(DType::kI32);
    first = Array();
    reshaped = Array();
    EXPECT_EQ(producer.deleter_calls, 0);
    EXPECT_EQ(bytes.numel(), 32);
  }
  EXPECT_EQ(producer.deleter_calls, 1);
}

TEST(DLPackImport, NullStridesMeanRowMajorAndByteOffsetIsHonoured) {
  VersionedProducer producer({3, 5}, kUint8);
  producer.managed.dl_tensor.byte_offset = 17;
  const Array array = from_versioned(&producer.managed);
  EXPECT_EQ(array.strides(), (Strides{5, 1}));
  EXPECT_EQ(array.base(), producer.storage.data());
  EXPECT_EQ(array.byte_offset(), 17);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(array.data_as<std::uint8_t>()[i], 17 + i);
}

TEST(DLPackImport, ExplicitStridesArePreserved) {
  VersionedProducer producer({4, 3}, kUint8, {1, 4});
  const Array array = from_versioned(&producer.managed);
  EXPECT_EQ(array.strides(), (Strides{1, 4}));
  const Array copy = array.contiguous();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(copy.data_as<std::uint8_t>()[i * 3 + j], j * 4 + i);
  }
}

TEST(DLPackImport, AcceptsAnyMinorVersionOfMajorOne) {
  VersionedProducer producer({2}, kFloat32);
  producer.managed.version = {1, 7};
  EXPECT_EQ(from_versioned(&producer.managed).numel(), 2);
}

TEST(DLPackImport, DevicesMapToBrecciaDevices) {
  VersionedProducer cuda({2}, kFloat32);
  cuda.managed.dl_tensor.device = {abi::kDLCUDA, 2};
  EXPECT_EQ(from_versioned(&cuda.managed).device(), Device::cuda(2));
  VersionedProducer pinned({2}, kFloat32);
  pinned.managed.dl_tensor.device = {abi::kDLCUDAHost, 0};
  EXPECT_EQ(from_versioned(&pinned.managed).device(), Device::cpu());
}

TEST(DLPackImport, ReadOnlyTensorsAreAcceptedAndMarked) {
  VersionedProducer producer({4}, kFloat32);
  producer.managed.flags = abi::kFlagReadOnly;
  EXPECT_TRUE(from_versioned(&producer.managed).read_only());
  VersionedProducer writable({4}, kFloat32);
  EXPECT_FALSE(from_versioned(&writable.managed).read_only());
}

TEST(DLPackImport, Float4ComesInAsUint8WithHalvedLastDim) {
  VersionedProducer producer({3, 10}, {abi::kDLFloat4_e2m1fn, 4, 1});
  const Array array = from_versioned(&producer.managed);
  EXPECT_EQ(array.dtype(), DType::kU8);
  EXPECT_EQ(array.shape(), (Shape{3, 5}));
  EXPECT_EQ(array.data(), producer.storage.data());
  VersionedProducer strided({3, 10}, {abi::kDLFloat4_e2m1fn, 4, 1}, {10, 1});
  EXPECT_EQ(from_versioned(&strided.managed).shape(), (Shape{3, 5}));
}

// Each rejected tensor must be left to its caller: the deleter is not called.
template <class Error, class Managed>
void expect_rejected(Producer<Managed>& producer, const std::string& fragment) {
  try {
    if constexpr (std::is_same_v<Managed, DLManagedTensorVersioned>) {
      from_versioned(&producer.managed);
    } else {
      from_legacy(&producer.managed);
    }
    ADD_FAILURE() << "accepted; expected an error mentioning '" << fragment << "'";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
  EXPECT_EQ(producer.deleter_calls, 0);
}

TEST(DLPackImport, RejectsWhatBrecciaCannotHold) {
  {
    VersionedProducer odd({3, 7}, {abi::kDLFloat4_e2m1fn, 4, 1});
    expect_rejected<ValueError>(odd, "(3, 7)");
  }
  {
    VersionedProducer padded({3, 8}, {abi::kDLFloat4_e2m1fn, 4, 1});
    padded.managed.flags = abi::kFlagSubbyteTypePadded;
    expect_rejected<ValueError>(padded, "padded");
  }
  {
    VersionedProducer column_major({4, 2}, {abi::kDLFloat4_e2m1fn, 4, 1}, {1, 4});
    expect_rejected<ValueError>(column_major, "row-major");
  }
  {
    VersionedProducer vector({4}, {abi::kDLFloat, 32, 4});
    expect_rejected<ValueError>(vector, "lanes 4");
  }
  for (abi::DLDataType dtype : {abi::DLDataType{5, 64, 1}, abi::DLDataType{6, 8, 1},
                                abi::DLDataType{200, 8, 1}, abi::DLDataType{abi::kDLFloat, 8, 1},
                                abi::DLDataType{abi::kDLInt, 16, 1},
                                abi::DLDataType{abi::kDLUInt, 32, 1},
                                abi::DLDataType{abi::kDLBfloat, 32, 1},
                                abi::DLDataType{abi::kDLFloat8_e4m3fn, 16, 1}}) {
    VersionedProducer unknown({4}, dtype);
    expect_rejected<ValueError>(unknown, "code " + std::to_string(dtype.code) + " with " +
                                             std::to_string(dtype.bits) + " bits");
  }
  for (std::uint32_t major : {0u, 2u}) {
    VersionedProducer future({4}, kFloat32);
    future.managed.version = {major, 3};
    expect_rejected<ValueError>(future, "got " + std::to_string(major) + ".3");
  }
  {
    VersionedProducer opencl({4}, kFloat32);
    opencl.managed.dl_tensor.device = {4, 0};
    expect_rejected<DeviceError>(opencl, "device type 4");
  }
  {
    VersionedProducer negative({4}, kFloat32);
    negative.managed.dl_tensor.ndim = -1;
    expect_rejected<ValueError>(negative, "ndim");
  }
  {
    VersionedProducer bad_shape({4, -2}, kFloat32);
    expect_rejected<ValueError>(bad_shape, "(4, -2)");
  }
  {
    VersionedProducer no_data({4}, kFloat32);
    no_data.managed.dl_tensor.data = nullptr;
    expect_rejected<ValueError>(no_data, "null");
  }
  EXPECT_THROW(from_versioned(nullptr), ValueError);
  EXPECT_THROW(from_legacy(nullptr), ValueError);
}

TEST(DLPackLegacy, ImportsWithoutCopyingAndDeletesOnce) {
  LegacyProducer producer({2, 8}, {abi::kDLFloat8_e5m2, 8, 1});
  {
    const Array array = from_legacy(&producer.managed);
    EXPECT_EQ(array.dtype(), DType::kE5M2);
    EXPECT_EQ(array.shape(), (Shape{2, 8}));
    EXPECT_EQ(array.data(), producer.storage.data());
    const Array copy = array;
    EXPECT_EQ(producer.deleter_calls, 0);
  }
  EXPECT_EQ(producer.deleter_calls, 1);

  LegacyProducer float4({6}, {abi::kDLFloat4_e2m1fn, 4, 1});
  EXPECT_EQ(from_legacy(&float4.managed).shape(), (Shape{3}));
  LegacyProducer vector({4}, {abi::kDLFloat, 32, 2});
  expect_rejected<ValueError>(vector, "lanes 2");
}

}  // namespace
}  // namespace breccia::dlpack
