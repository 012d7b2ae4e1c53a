#include "breccia/dlpack.hpp"

#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "breccia/error.hpp"
#include "interop/dlpack_abi.hpp"

namespace breccia::dlpack {
namespace {

using abi::DLDataType;
using abi::DLDevice;
using abi::DLManagedTensor;
using abi::DLManagedTensorVersioned;
using abi::DLTensor;

// Everything an exported tensor points at lives here, freed by the consumer's deleter call.
struct ExportContext {
  Array array;  // keeps the memory alive
  Shape shape;
  Strides strides;
  DLManagedTensorVersioned managed{};
};

void delete_export(DLManagedTensorVersioned* self) {
  delete static_cast<ExportContext*>(self->manager_ctx);
}

DLDataType export_dtype(DType dtype, const ExportOptions& options) {
  const auto bits = static_cast<std::uint8_t>(8 * itemsize(dtype));
  // Consumers that predate the float8 codes still get the bytes, as uint8.
  const auto float8 = [&](std::uint8_t code) -> DLDataType {
    return {options.float8_codes ? code : abi::kDLUInt, bits, 1};
  };
  switch (dtype) {
    case DType::kU8:
      return {abi::kDLUInt, bits, 1};
    case DType::kI8:
    case DType::kI32:
    case DType::kI64:
      return {abi::kDLInt, bits, 1};
    case DType::kF16:
    case DType::kF32:
    case DType::kF64:
      return {abi::kDLFloat, bits, 1};
    case DType::kBF16:
      return {abi::kDLBfloat, bits, 1};
    case DType::kE4M3:
      return float8(abi::kDLFloat8_e4m3fn);
    case DType::kE5M2:
      return float8(abi::kDLFloat8_e5m2);
    case DType::kE8M0:
      return float8(abi::kDLFloat8_e8m0fnu);
    // One FP6 code per byte: DLPack's float6 codes with 6 bits, which to_versioned marks
    // IS_SUBBYTE_TYPE_PADDED (a byte per element rather than bit-packed).
    case DType::kE2M3:
      return options.float8_codes ? DLDataType{abi::kDLFloat6_e2m3fn, 6, 1}
                                  : DLDataType{abi::kDLUInt, bits, 1};
    case DType::kE3M2:
      return options.float8_codes ? DLDataType{abi::kDLFloat6_e3m2fn, 6, 1}
                                  : DLDataType{abi::kDLUInt, bits, 1};
  }
  fail<ValueError>("array: expected a breccia dtype, got enum value ", static_cast<int>(dtype));
}

DLDevice export_device(Device device) {
  if (device.is_cpu()) return {abi::kDLCPU, 0};
  return {abi::kDLCUDA, device.id};
}

// Maps every code with one element per item; packed float4 is handled by the caller.
DType import_dtype(const DLDataType& dtype, std::string_view argument) {
  if (dtype.lanes != 1) {
    fail<ValueError>(argument, ": expected scalar elements (lanes 1), got lanes ", dtype.lanes);
  }
  const int bits = dtype.bits;
  switch (dtype.code) {
    case abi::kDLUInt:
      if (bits == 8) return DType::kU8;
      break;
    case abi::kDLInt:
      if (bits == 8) return DType::kI8;
      if (bits == 32) return DType::kI32;
      if (bits == 64) return DType::kI64;
      break;
    case abi::kDLFloat:
      if (bits == 16) return DType::kF16;
      if (bits == 32) return DType::kF32;
      if (bits == 64) return DType::kF64;
      break;
    case abi::kDLBfloat:
      if (bits == 16) return DType::kBF16;
      break;
    case abi::kDLFloat8_e4m3fn:
      if (bits == 8) return DType::kE4M3;
      break;
    case abi::kDLFloat8_e5m2:
      if (bits == 8) return DType::kE5M2;
      break;
    case abi::kDLFloat8_e8m0fnu:
      if (bits == 8) return DType::kE8M0;
      break;
  }
  fail<ValueError>(argument,
                   ": expected a dtype breccia holds (uint8, int8/32/64, float16/32/64, "
                   "bfloat16, float8_e4m3fn, float8_e5m2, float8_e8m0fnu, float6_e2m3fn, "
                   "float6_e3m2fn, float4_e2m1fn), got "
                   "DLPack type code ",
                   static_cast<int>(dtype.code), " with ", bits, " bits");
}

Device import_device(const DLDevice& device, std::string_view argument) {
  switch (device.device_type) {
    case abi::kDLCPU:
    case abi::kDLCUDAHost:  // pinned host memory is ordinary CPU-addressable memory
      return Device::cpu();
    case abi::kDLCUDA:
      return Device::cuda(device.device_id);
  }
  fail<DeviceError>(argument, ": expected a CPU, CUDA or CUDA-host tensor, got DLPack device type ",
                    device.device_type, " (id ", device.device_id, ")");
}

// Calls the producer's deleter when the last Array referring to the tensor goes. It is armed
// only once the Array exists, so a rejected tensor is left to its caller untouched.
template <class Managed>
struct ProducerHandle {
  Managed* managed = nullptr;

  ProducerHandle() = default;
  ProducerHandle(const ProducerHandle&) = delete;
  ProducerHandle& operator=(const ProducerHandle&) = delete;
  ~ProducerHandle() {
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
  }
};

template <class Managed>
Array import_tensor(Managed* managed, bool subbyte_padded, std::string_view argument) {
  const DLTensor& tensor = managed->dl_tensor;
  if (tensor.ndim < 0) fail<ValueError>(argument, ": expected ndim >= 0, got ", tensor.ndim);
  if (tensor.ndim > 0 && tensor.shape == nullptr) {
    fail<ValueError>(argument, ": expected a shape array for ndim ", tensor.ndim, ", got null");
  }
  if (tensor.byte_offset > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    fail<ValueError>(argument, ": expected a byte_offset below 2^63, got ", tensor.byte_offset);
  }
  Shape shape(tensor.shape, tensor.shape + tensor.ndim);
  Strides strides;
  if (tensor.strides != nullptr) strides.assign(tensor.strides, tensor.strides + tensor.ndim);
  const Device device = import_device(tensor.device, argument);

  DType dtype = DType::kU8;
  const bool packed_float4 = tensor.dtype.code == abi::kDLFloat4_e2m1fn && tensor.dtype.bits == 4;
  if (packed_float4 && tensor.dtype.lanes == 1) {
    if (subbyte_padded) {
      fail<ValueError>(argument,
                       ": expected float4_e2m1fn packed two per byte, got the padded "
                       "one-per-byte layout (DLPack flag IS_SUBBYTE_TYPE_PADDED)");
    }
    if (shape.empty() || shape.back() % 2 != 0) {
      fail<ValueError>(argument,
                       ": expected a float4_e2m1fn tensor whose last dim is even "
                       "(two elements per byte), got shape ",
                       shape_str(shape));
    }
    // Pairs share a byte, so only a row-major layout can be expressed in whole bytes.
    const Array logical = Array::borrow(tensor.data, DType::kU8, shape, strides, device, nullptr);
    if (!logical.is_contiguous()) {
      fail<ValueError>(argument, ": expected a row-major float4_e2m1fn tensor, got shape ",
                       shape_str(shape), " with strides ", shape_str(strides));
    }
    shape.back() /= 2;
    strides.clear();
  } else if ((tensor.dtype.code == abi::kDLFloat6_e2m3fn ||
              tensor.dtype.code == abi::kDLFloat6_e3m2fn) &&
             tensor.dtype.bits == 6 && tensor.dtype.lanes == 1) {
    if (!subbyte_padded) {
      fail<ValueError>(argument,
                       ": expected float6 codes one per byte (DLPack flag "
                       "IS_SUBBYTE_TYPE_PADDED, as ml_dtypes and torchao hold them), got "
                       "bit-packed float6 (four codes in three bytes), which breccia does not "
                       "read without a copy");
    }
    dtype = tensor.dtype.code == abi::kDLFloat6_e2m3fn ? DType::kE2M3 : DType::kE3M2;
  } else {
    dtype = import_dtype(tensor.dtype, argument);
  }

  auto handle = std::make_shared<ProducerHandle<Managed>>();
  Array array = Array::borrow(tensor.data, dtype, std::move(shape), std::move(strides), device,
                              handle, static_cast<std::int64_t>(tensor.byte_offset));
  handle->managed = managed;
  return array;
}

}  // namespace

void* to_versioned(const Array& array, const ExportOptions& options) {
  if (!array.defined()) {
    fail<ValueError>("array: expected a defined Array to export, got ", array.str());
  }
  auto context = std::make_unique<ExportContext>();
  context->array = array;
  context->shape = array.shape();
  context->strides = array.strides();
  DLDataType dtype = export_dtype(array.dtype(), options);
  if (options.packed_float4) {
    if (array.dtype() != DType::kU8) {
      fail<TypeError>("array: packed_float4 export expects uint8 bytes holding E2M1 pairs, got ",
                      dtype_name(array.dtype()));
    }
    if (array.ndim() == 0 || !array.is_contiguous()) {
      fail<ValueError>(
          "array: packed_float4 export expects a contiguous array of at least 1-D, "
          "got shape ",
          shape_str(array.shape()), " with strides ", shape_str(array.strides()));
    }
    context->shape.back() *= 2;
    checked_numel(context->shape, "array (as float4_e2m1fn)");
    context->strides = contiguous_strides(context->shape);
    dtype = {abi::kDLFloat4_e2m1fn, 4, 1};
  }

  DLManagedTensorVersioned& managed = context->managed;
  managed.version = abi::kExportVersion;
  managed.manager_ctx = context.get();
  managed.deleter = delete_export;
  managed.flags = array.read_only() ? abi::kFlagReadOnly : 0;
  if (dtype.bits == 6) managed.flags |= abi::kFlagSubbyteTypePadded;
  DLTensor& tensor = managed.dl_tensor;
  tensor.data = array.base();
  tensor.device = export_device(array.device());
  tensor.ndim = array.ndim();
  tensor.dtype = dtype;
  tensor.shape = context->shape.data();
  tensor.strides = context->strides.data();
  tensor.byte_offset = static_cast<std::uint64_t>(array.byte_offset());
  context.release();
  return &managed;
}

Array from_versioned(void* managed_tensor_versioned) {
  constexpr std::string_view kArgument = "DLPack tensor";
  if (managed_tensor_versioned == nullptr) {
    fail<ValueError>(kArgument, ": expected a DLManagedTensorVersioned pointer, got null");
  }
  auto* managed = static_cast<DLManagedTensorVersioned*>(managed_tensor_versioned);
  if (managed->version.major != 1) {
    fail<ValueError>(kArgument, ": expected DLPack major version 1, got ", managed->version.major,
                     ".", managed->version.minor);
  }
  const bool subbyte_padded = (managed->flags & abi::kFlagSubbyteTypePadded) != 0;
  Array array = import_tensor(managed, subbyte_padded, kArgument);
  // breccia only reads its inputs, so read-only memory is fine; the mark stops a re-export
  // from handing it on as writable.
  if ((managed->flags & abi::kFlagReadOnly) != 0) array = array.marked_read_only();
  return array;
}

Array from_legacy(void* managed_tensor) {
  constexpr std::string_view kArgument = "DLPack tensor (legacy)";
  if (managed_tensor == nullptr) {
    fail<ValueError>(kArgument, ": expected a DLManagedTensor pointer, got null");
  }
  return import_tensor(static_cast<DLManagedTensor*>(managed_tensor), false, kArgument);
}

}  // namespace breccia::dlpack
