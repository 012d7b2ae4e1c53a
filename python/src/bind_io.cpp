// breccia._core's safetensors checkpoint functions (breccia/io/checkpoint.hpp): entries cross
// as a dict of name -> Array | ScaledTensor; every check and conversion happens in C++.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <map>
#include <string>

#include "breccia/error.hpp"
#include "breccia/io/checkpoint.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace breccia::python {
namespace {

nb::dict entries_to_dict(const std::map<std::string, io::CheckpointEntry>& tensors) {
  nb::dict out;
  for (const auto& [name, entry] : tensors) {
    out[nb::str(name.c_str())] =
        std::visit([](const auto& value) { return nb::cast(value); }, entry);
  }
  return out;
}

std::map<std::string, io::CheckpointEntry> entries_from_dict(const nb::dict& tensors) {
  std::map<std::string, io::CheckpointEntry> entries;
  for (const auto& [key, value] : tensors) {
    const std::string name = nb::cast<std::string>(key);
    if (nb::isinstance<ScaledTensor>(value)) {
      entries.emplace(name, nb::cast<ScaledTensor>(value));
    } else if (nb::isinstance<Array>(value)) {
      entries.emplace(name, nb::cast<Array>(value));
    } else {
      fail<TypeError>("tensors['", name, "']: expected a ScaledTensor or an array, got ",
                      nb::cast<std::string>(nb::str(value.type())));
    }
  }
  return entries;
}

}  // namespace

void bind_io(nb::module_& m) {
  m.def(
      "load_checkpoint",
      [](const std::string& path) {
        const io::Checkpoint checkpoint = io::load_checkpoint(path);
        return nb::make_tuple(entries_to_dict(checkpoint.tensors), nb::cast(checkpoint.metadata),
                              nb::cast(checkpoint.encode_global_scales));
      },
      "path"_a,
      "(tensors, metadata, encode_global_scales) of a safetensors file; see checkpoint.hpp.");
  m.def(
      "save_checkpoint",
      [](const std::string& path, const nb::dict& tensors, std::string_view convention,
         const io::Metadata& extra_metadata,
         const std::map<std::string, float>& encode_global_scales) {
        io::save_checkpoint(path, entries_from_dict(tensors),
                            {.convention = io::convention_from_string(convention),
                             .extra_metadata = extra_metadata,
                             .encode_global_scales = encode_global_scales});
      },
      "path"_a, "tensors"_a, "convention"_a = "breccia", "extra_metadata"_a = io::Metadata{},
      "encode_global_scales"_a = std::map<std::string, float>{},
      "Writes a safetensors file atomically; see checkpoint.hpp.");
}

}  // namespace breccia::python
