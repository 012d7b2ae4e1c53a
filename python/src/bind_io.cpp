// breccia._core's safetensors checkpoint functions (breccia/io/checkpoint.hpp): entries cross
// as a dict of name -> Array | ScaledTensor; every check and conversion happens in C++.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

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
    // With its length: a C string would end at a NUL byte and could merge two names.
    out[nb::str(name.data(), name.size())] =
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

// Runs between pieces of a write made without the GIL: a pending Ctrl-C (or any signal whose
// handler raises) abandons the write, before the target is replaced; `progress` (a Python
// callable or None) hears (bytes written, file size).
io::WritePoll write_poll(const nb::object& progress) {
  return [&progress](std::uint64_t written, std::uint64_t total) {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (!progress.is_none()) progress(written, total);
  };
}

}  // namespace

void bind_io(nb::module_& m) {
  m.def(
      "load_checkpoint",
      [](const std::string& path, bool copy, std::string_view validate) {
        const io::CheckpointLoadOptions options{.copy = copy,
                                                .validate = io::validation_from_string(validate)};
        io::Checkpoint checkpoint;
        {
          nb::gil_scoped_release unlocked;
          checkpoint = io::load_checkpoint(path, options);
        }
        return nb::make_tuple(entries_to_dict(checkpoint.tensors), nb::cast(checkpoint.metadata),
                              nb::cast(checkpoint.encode_global_scales),
                              nb::cast(checkpoint.anomalies));
      },
      "path"_a, "copy"_a = false, "validate"_a = "error",
      "(tensors, metadata, encode_global_scales, anomalies) of a safetensors file; see "
      "checkpoint.hpp.");
  m.def(
      "save_checkpoint",
      [](const std::string& path, const nb::dict& tensors, std::string_view convention,
         const io::Metadata& extra_metadata,
         const std::map<std::string, float>& encode_global_scales, const nb::object& progress) {
        const std::map<std::string, io::CheckpointEntry> entries = entries_from_dict(tensors);
        const io::SaveOptions options{.convention = io::convention_from_string(convention),
                                      .extra_metadata = extra_metadata,
                                      .encode_global_scales = encode_global_scales};
        {
          nb::gil_scoped_release unlocked;
          io::save_checkpoint(path, entries, options, write_poll(progress));
        }
        // A signal that came after the last check, the rename included, is raised now; the
        // file is complete by then, and the exception says so.
        if (PyErr_CheckSignals() != 0) {
          PyObject* type = nullptr;
          PyObject* value = nullptr;
          PyObject* traceback = nullptr;
          PyErr_Fetch(&type, &value, &traceback);
          PyErr_NormalizeException(&type, &value, &traceback);
          const std::string note = "save_safetensors had already written '" + path +
                                   "' completely when this interrupt arrived";
          if (value != nullptr) {
            PyObject* added = PyObject_CallMethod(value, "add_note", "s", note.c_str());
            if (added == nullptr) PyErr_Clear();
            Py_XDECREF(added);
          }
          PyErr_Restore(type, value, traceback);
          throw nb::python_error();
        }
      },
      "path"_a, "tensors"_a, "convention"_a = "breccia", "extra_metadata"_a = io::Metadata{},
      "encode_global_scales"_a = std::map<std::string, float>{}, "progress"_a = nb::none(),
      "Writes a safetensors file atomically; see checkpoint.hpp. Runs without the GIL, and a "
      "Ctrl-C during the write abandons it (KeyboardInterrupt, the target untouched). "
      "progress(written, total), if given, is called between pieces of the write.");
}

}  // namespace breccia::python
