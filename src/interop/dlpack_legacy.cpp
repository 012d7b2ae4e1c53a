#include "breccia/interop/dlpack_legacy.hpp"

#include <memory>

#include "breccia/error.hpp"
#include "interop/dlpack_abi.hpp"

namespace breccia::dlpack {
namespace {

// The legacy tensor wraps a versioned export: same DLTensor, and the versioned deleter frees
// everything the export owns.
struct LegacyContext {
  abi::DLManagedTensorVersioned* versioned = nullptr;
  abi::DLManagedTensor managed{};
};

void delete_legacy(abi::DLManagedTensor* self) {
  auto* context = static_cast<LegacyContext*>(self->manager_ctx);
  context->versioned->deleter(context->versioned);
  delete context;
}

}  // namespace

void* to_legacy(const Array& array, const ExportOptions& options) {
  if (array.read_only()) {
    fail<ValueError>(
        "array: a read-only array cannot be exported as a legacy DLPack tensor, "
        "which has no read-only flag; ask for DLPack >= 1.0 (max_version=(1, 0))");
  }
  auto context = std::make_unique<LegacyContext>();
  context->versioned = static_cast<abi::DLManagedTensorVersioned*>(to_versioned(array, options));
  context->managed.dl_tensor = context->versioned->dl_tensor;
  // A legacy tensor has no flags to say FP6 codes take a byte each: those go out as uint8.
  if (context->managed.dl_tensor.dtype.bits == 6)
    context->managed.dl_tensor.dtype = {abi::kDLUInt, 8, 1};
  context->managed.manager_ctx = context.get();
  context->managed.deleter = delete_legacy;
  return &context.release()->managed;
}

}  // namespace breccia::dlpack
