// DLPack 1.1 interchange for Array: versioned managed tensors in and out, with the float8 and
// float4 type codes (plain uint8 for consumers that predate them).
#pragma once

#include <cstdint>

#include "breccia/array.hpp"

namespace breccia::dlpack {

struct ExportOptions {
  // Use the DLPack 1.1 float8 and float6 codes for those dtypes (FP6 one code per byte, flagged
  // IS_SUBBYTE_TYPE_PADDED); false exports them as uint8.
  bool float8_codes = true;
  // Export uint8 data that holds packed E2M1 pairs as float4_e2m1fn (code 17, bits 4) with
  // the logical shape (last dim doubled).
  bool packed_float4 = false;
};

// A DLManagedTensorVersioned* (as void*, so this header does not need dlpack's) that keeps
// `array` alive until its deleter runs. It carries the read-only flag if `array.read_only()`.
void* to_versioned(const Array& array, const ExportOptions& options = {});

// Wraps a DLManagedTensorVersioned* without copying; the Array calls its deleter when the last
// reference goes. float4_e2m1fn tensors come in as uint8 with the last dim halved; float6
// tensors one code per byte (IS_SUBBYTE_TYPE_PADDED) come in as FP6 (bit-packed ones are
// refused). Rejects
// unsupported dtypes, lanes != 1, and major versions other than 1, with ValueError (DeviceError
// for an unsupported device). A rejected tensor is left untouched: its deleter is not called,
// so the caller still owns it. A read-only tensor is accepted (breccia only reads its inputs)
// and comes back with Array::read_only() set.
Array from_versioned(void* managed_tensor_versioned);

// The same for a legacy (pre-1.0, unversioned) DLManagedTensor*.
Array from_legacy(void* managed_tensor);

}  // namespace breccia::dlpack
