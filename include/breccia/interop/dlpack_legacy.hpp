// Pre-1.0 (unversioned) DLPack export, for consumers that call __dlpack__() without
// max_version and accept only a "dltensor" capsule (JAX, for one).
#pragma once

#include "breccia/array.hpp"
#include "breccia/dlpack.hpp"

namespace breccia::dlpack {

// A DLManagedTensor* (as void*) that keeps `array` alive until its deleter runs. The legacy
// struct has no read-only flag, so a read-only array is refused (ValueError) rather than
// handed out as writable.
void* to_legacy(const Array& array, const ExportOptions& options = {});

}  // namespace breccia::dlpack
