// The C ABI of DLPack 1.1 (https://dmlc.github.io/dlpack/latest/c_api.html), written out here
// because the system's dlpack.h predates versioned tensors and the 1.1 float8/float4 codes.
// Only what breccia produces or accepts is named; layouts are checked below.
#pragma once

#include <cstddef>
#include <cstdint>

namespace breccia::dlpack::abi {

struct DLPackVersion {
  std::uint32_t major;
  std::uint32_t minor;
};

// The version breccia writes into the tensors it exports.
inline constexpr DLPackVersion kExportVersion{1, 1};

// DLDeviceType (a C enum, hence int32).
inline constexpr std::int32_t kDLCPU = 1;
inline constexpr std::int32_t kDLCUDA = 2;
inline constexpr std::int32_t kDLCUDAHost = 3;  // pinned host memory: CPU-addressable

struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};

// DLDataTypeCode.
inline constexpr std::uint8_t kDLInt = 0;
inline constexpr std::uint8_t kDLUInt = 1;
inline constexpr std::uint8_t kDLFloat = 2;
inline constexpr std::uint8_t kDLBfloat = 4;
inline constexpr std::uint8_t kDLFloat8_e4m3fn = 10;
inline constexpr std::uint8_t kDLFloat8_e5m2 = 12;
inline constexpr std::uint8_t kDLFloat8_e8m0fnu = 14;
inline constexpr std::uint8_t kDLFloat6_e2m3fn = 15;  // 6 bits: packed, or a byte each (padded)
inline constexpr std::uint8_t kDLFloat6_e3m2fn = 16;
inline constexpr std::uint8_t kDLFloat4_e2m1fn = 17;  // 4 bits, two per byte, low nibble first

struct DLDataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;  // vector width; breccia handles only scalars (1)
};

// A view of memory. `data` plus `byte_offset` is element 0; shape and strides (in elements,
// null meaning row-major) have `ndim` entries each.
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
};

// Pre-1.0 ownership wrapper: the consumer calls deleter(self) once when done.
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// Bits of DLManagedTensorVersioned::flags.
inline constexpr std::uint64_t kFlagReadOnly = std::uint64_t{1} << 0;
inline constexpr std::uint64_t kFlagIsCopied = std::uint64_t{1} << 1;
// Sub-byte elements each stored in a whole byte instead of packed two to a byte.
inline constexpr std::uint64_t kFlagSubbyteTypePadded = std::uint64_t{1} << 2;

// 1.0+ ownership wrapper; the version comes first so a consumer can read it before anything
// whose layout might change.
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  std::uint64_t flags;
  DLTensor dl_tensor;
};

static_assert(sizeof(DLDataType) == 4);
static_assert(sizeof(DLDevice) == 8);
static_assert(sizeof(void*) != 8 || sizeof(DLTensor) == 48);
static_assert(sizeof(void*) != 8 || offsetof(DLManagedTensorVersioned, dl_tensor) == 32);
static_assert(offsetof(DLManagedTensor, dl_tensor) == 0);

}  // namespace breccia::dlpack::abi
