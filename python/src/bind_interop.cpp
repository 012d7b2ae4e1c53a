// breccia._core's interop functions: DLPack capsules in and out, and the DeepSeek-V3
// quantizer. Conversion only; the work is done by breccia::dlpack and breccia::interop.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string_view.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "breccia/array.hpp"
#include "breccia/dlpack.hpp"
#include "breccia/error.hpp"
#include "breccia/interop/deepseek.hpp"
#include "breccia/interop/dlpack_legacy.hpp"
#include "breccia/interop/transformer_engine.hpp"
#include "breccia/scale_layout.hpp"
#include "interop/dlpack_abi.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace breccia::python {
namespace {

// Capsule names of the DLPack Python protocol; a consumer renames a capsule to the "used_"
// form once it owns the tensor, so only an unconsumed capsule frees it.
constexpr const char* kVersionedName = "dltensor_versioned";
constexpr const char* kUsedVersionedName = "used_dltensor_versioned";
constexpr const char* kLegacyName = "dltensor";
constexpr const char* kUsedLegacyName = "used_dltensor";

template <class Managed>
void delete_managed(void* pointer) {
  auto* managed = static_cast<Managed*>(pointer);
  if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
}

void delete_unconsumed_capsule(PyObject* capsule) {
  // A consumed capsule was renamed, and its tensor belongs to the consumer.
  if (PyCapsule_IsValid(capsule, kVersionedName)) {
    delete_managed<dlpack::abi::DLManagedTensorVersioned>(
        PyCapsule_GetPointer(capsule, kVersionedName));
  } else if (PyCapsule_IsValid(capsule, kLegacyName)) {
    delete_managed<dlpack::abi::DLManagedTensor>(PyCapsule_GetPointer(capsule, kLegacyName));
  }
}

// versioned: a DLPack 1.1 "dltensor_versioned" capsule; else a pre-1.0 "dltensor" one.
// bytes_as: another dtype of the same size to label the bytes with, for consumers that lack
// the array's own (NumPy has no bfloat16: it takes the bytes as float16 and views them).
nb::object export_capsule(const Array& array, bool float8_codes, bool packed_float4,
                          bool versioned, std::optional<std::string_view> bytes_as) {
  const dlpack::ExportOptions options{.float8_codes = float8_codes,
                                      .packed_float4 = packed_float4};
  const Array exported =
      bytes_as ? array.viewed_as(dtype_from_name(*bytes_as, "bytes_as")) : array;
  void* managed = versioned ? dlpack::to_versioned(exported, options)
                            : dlpack::to_legacy(exported, options);
  PyObject* capsule = PyCapsule_New(managed, versioned ? kVersionedName : kLegacyName,
                                    delete_unconsumed_capsule);
  if (capsule == nullptr) {
    if (versioned) {
      delete_managed<dlpack::abi::DLManagedTensorVersioned>(managed);
    } else {
      delete_managed<dlpack::abi::DLManagedTensor>(managed);
    }
    throw nb::python_error();
  }
  return nb::steal(capsule);
}

// Takes ownership of the tensor in an unconsumed capsule (versioned or legacy) and marks the
// capsule used. A rejected tensor stays with the capsule, which still frees it.
Array import_capsule(nb::handle capsule) {
  PyObject* object = capsule.ptr();
  if (!PyCapsule_CheckExact(object)) {
    fail<TypeError>("capsule: expected a DLPack PyCapsule, got ",
                    nb::cast<std::string_view>(nb::str(capsule.type())));
  }
  if (PyCapsule_IsValid(object, kVersionedName)) {
    Array array = dlpack::from_versioned(PyCapsule_GetPointer(object, kVersionedName));
    PyCapsule_SetName(object, kUsedVersionedName);
    return array;
  }
  if (PyCapsule_IsValid(object, kLegacyName)) {
    Array array = dlpack::from_legacy(PyCapsule_GetPointer(object, kLegacyName));
    PyCapsule_SetName(object, kUsedLegacyName);
    return array;
  }
  const char* name = PyCapsule_GetName(object);
  fail<ValueError>("capsule: expected an unconsumed 'dltensor_versioned' or 'dltensor' capsule, "
                   "got one named '", name == nullptr ? "" : name, "'");
}

// TransformerEngine scale-buffer kinds by the names the Python bridge uses.
interop::TeScaleBuffer te_scale_buffer_kind(std::string_view name) {
  if (name == "tiles") return interop::TeScaleBuffer::kTiles;
  if (name == "columnwise_tiles") return interop::TeScaleBuffer::kColumnwiseTiles;
  if (name == "pad4") return interop::TeScaleBuffer::kPad4;
  if (name == "transposed_pad4") return interop::TeScaleBuffer::kTransposedPad4;
  fail<ValueError>("kind: expected 'tiles', 'columnwise_tiles', 'pad4' or 'transposed_pad4', got '",
                   name, "'");
}

}  // namespace

void bind_interop(nb::module_& m) {
  m.def("dlpack_export", &export_capsule, "array"_a, "float8_codes"_a = true,
        "packed_float4"_a = false, "versioned"_a = true, "bytes_as"_a = nb::none(),
        "A DLPack capsule sharing the array's memory: 'dltensor_versioned' (1.1) or, with "
        "versioned=False, 'dltensor' (pre-1.0).");
  m.def("dlpack_import", &import_capsule, "capsule"_a,
        "The Array of a DLPack capsule, without copying; the capsule is marked used.");
  m.def("swizzle_scales", &swizzle_scales, "scale"_a,
        "Compact (..., R, C) 1-byte scales -> padded, 128 x 4-tile swizzled (GEMM-ready).");
  m.def("unswizzle_scales", &unswizzle_scales, "swizzled"_a, "rows"_a, "cols"_a,
        "Padded, swizzled scales -> the compact (..., rows, cols) form.");
  m.def("nvfp4_global_scale_from_amax", &interop::nvfp4_global_scale_from_amax, "amax"_a,
        "NVFP4 global_scale (decode) from TransformerEngine's stored amax.");
  m.def("nvfp4_amax_for_global_scale", &interop::nvfp4_amax_for_global_scale, "global_scale"_a,
        "An amax whose NVFP4 global_scale is exactly `global_scale`.");
  m.def(
      "te_scale_buffer",
      [](const Array& compact, std::string_view kind, bool swizzle) {
        return interop::te_scale_buffer(compact, te_scale_buffer_kind(kind), swizzle);
      },
      "compact"_a, "kind"_a, "swizzle"_a = false,
      "Compact (R, C) scales -> TransformerEngine's padded (maybe swizzled) scale buffer.");
  m.def(
      "te_compact_scales",
      [](const Array& buffer, std::int64_t rows, std::int64_t cols, std::string_view kind,
         bool swizzled) {
        return interop::te_compact_scales(buffer, rows, cols, te_scale_buffer_kind(kind), swizzled);
      },
      "buffer"_a, "rows"_a, "cols"_a, "kind"_a, "swizzled"_a = false,
      "TransformerEngine's scale buffer -> the compact (rows, cols) scales.");
  m.def("te_transpose", &interop::te_transpose, "data"_a, "packed_fp4"_a = false,
        "TE's transposed columnwise data: (..., K) as a (rows, K) matrix -> (K, rows).");
  m.def(
      "deepseek_v3_quantize",
      [](const Array& x, std::int64_t block_m, std::int64_t block_k, std::string_view fp8_format,
         bool ue8m0) {
        return interop::deepseek_v3_quantize(
            x, interop::DeepSeekQuantOptions{.block_m = block_m,
                                             .block_k = block_k,
                                             .fp8_format = fp8_format_from_string(fp8_format),
                                             .ue8m0 = ue8m0});
      },
      "x"_a, "block_m"_a = 1, "block_k"_a = 128, "fp8_format"_a = "E4M3", "ue8m0"_a = false,
      "DeepSeek-V3's block quantizer: s = max(amax, 1e-4) / fmax, q = x / s.");
}

}  // namespace breccia::python
