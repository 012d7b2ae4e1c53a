// breccia._core's safetensors checkpoint functions (breccia/io/checkpoint.hpp): entries cross
// as a dict of name -> Array | ScaledTensor; every check and conversion happens in C++.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <string>

#include "breccia/error.hpp"
#include "breccia/io/checkpoint.hpp"
#include "breccia/io/model.hpp"

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

nb::dict source_to_dict(const io::TensorSource& source) {
  nb::dict out;
  out["convention"] = source.convention;
  out["stored"] = source.stored;
  out["file"] = source.file;
  return out;
}

nb::dict report_to_dict(const io::ConvertReport& report) {
  nb::list tensors;
  for (const io::ConvertedTensor& tensor : report.tensors) {
    nb::dict item;
    item["name"] = nb::str(tensor.name.data(), tensor.name.size());
    item["action"] = tensor.action;
    item["detail"] = tensor.detail;
    item["shard"] = tensor.shard;
    item["bytes_in"] = tensor.bytes_in;
    item["bytes_out"] = tensor.bytes_out;
    tensors.append(item);
  }
  nb::dict out;
  out["tensors"] = tensors;
  out["shards"] = report.shards;
  out["resumed_shards"] = report.resumed_shards;
  out["copied_files"] = report.copied_files;
  out["convention"] = std::string(io::to_string(report.convention));
  out["bytes_read"] = report.bytes_read;
  out["bytes_written"] = report.bytes_written;
  return out;
}

io::ConvertTarget target_from(const std::string& format, std::int64_t group_size, bool int4_signed,
                              std::string_view int4_scale_dtype, std::string_view scale_rounding,
                              std::string_view fp8_format) {
  io::ConvertTarget target;
  target.format = format;
  target.group_size = group_size;
  target.int4_signed = int4_signed;
  target.int4_scale_dtype = int4_scale_dtype_from_string(int4_scale_dtype);
  target.scale_rounding = mx_scale_rounding_from_string(scale_rounding);
  target.fp8_format = fp8_format_from_string(fp8_format);
  return target;
}

}  // namespace

void bind_io(nb::module_& m) {
  m.def(
      "load_model",
      [](const std::string& path, std::string_view validate) {
        io::Checkpoint checkpoint;
        io::ModelFiles files;
        {
          nb::gil_scoped_release unlocked;
          files = io::list_model(path);
          checkpoint = io::load_model(files, {.validate = io::validation_from_string(validate)});
        }
        nb::dict sources;
        for (const auto& [name, source] : checkpoint.sources) {
          sources[nb::str(name.data(), name.size())] = source_to_dict(source);
        }
        std::vector<std::string> shards;
        for (const auto& shard : files.shards) shards.push_back(shard.string());
        nb::dict model;
        model["directory"] = files.directory.string();
        model["shards"] = shards;
        model["index"] = files.index ? nb::cast(files.index->string()) : nb::object(nb::none());
        model["config"] = files.config ? nb::cast(files.config->string()) : nb::object(nb::none());
        return nb::make_tuple(entries_to_dict(checkpoint.tensors), sources, model,
                              nb::cast(checkpoint.anomalies));
      },
      "path"_a, "validate"_a = "warn",
      "(tensors, sources, files, anomalies) of a model directory or safetensors file; see "
      "model.hpp.");
  m.def(
      "convert_model",
      [](const std::string& source, const std::string& destination, const std::string& format,
         std::optional<std::string_view> convention, const std::vector<std::string>& ignore,
         bool default_ignore, std::int64_t group_size, bool int4_signed,
         std::string_view int4_scale_dtype, std::string_view scale_rounding,
         std::string_view fp8_format, std::uint64_t max_shard_bytes, bool overwrite, bool resume,
         std::string_view validate, const nb::object& progress,
         const std::vector<std::pair<std::string, std::string>>& format_for,
         std::string_view device) {
        io::ConvertOptions options;
        options.target = target_from(format, group_size, int4_signed, int4_scale_dtype,
                                     scale_rounding, fp8_format);
        if (convention) options.convention = io::convention_from_string(*convention);
        options.ignore = ignore;
        options.default_ignore = default_ignore;
        options.format_for = format_for;
        options.max_shard_bytes = max_shard_bytes;
        options.overwrite = overwrite;
        options.resume = resume;
        options.validate = io::validation_from_string(validate);
        options.device = device_from_string(device, "device");
        io::ConvertReport report;
        {
          nb::gil_scoped_release unlocked;
          report = io::convert_model(
              source, destination, options, [&progress](const io::ConvertProgress& done) {
                nb::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw nb::python_error();
                if (!progress.is_none()) {
                  progress(done.bytes_done, done.bytes_total, done.tensors_done, done.tensors_total,
                           done.current);
                }
              });
        }
        return report_to_dict(report);
      },
      "source"_a, "destination"_a, "format"_a, "convention"_a = nb::none(),
      "ignore"_a = std::vector<std::string>{}, "default_ignore"_a = true, "group_size"_a = 128,
      "int4_signed"_a = true, "int4_scale_dtype"_a = "bf16", "scale_rounding"_a = "floor",
      "fp8_format"_a = "E4M3", "max_shard_bytes"_a = 5'000'000'000ULL, "overwrite"_a = false,
      "resume"_a = false, "validate"_a = "error", "progress"_a = nb::none(),
      "format_for"_a = std::vector<std::pair<std::string, std::string>>{}, "device"_a = "cpu",
      "Converts a checkpoint; see model.hpp. Runs without the GIL; Ctrl-C abandons it. "
      "progress(bytes_done, bytes_total, tensors_done, tensors_total, current), if given.");
  m.def(
      "compare_entries",
      [](const std::string& name, const nb::object& value, const nb::object& reference) {
        const auto entry = [](const nb::object& object) -> io::CheckpointEntry {
          if (nb::isinstance<ScaledTensor>(object)) return nb::cast<ScaledTensor>(object);
          return nb::cast<Array>(object);
        };
        const io::CheckpointEntry a = entry(value);
        const io::CheckpointEntry b = entry(reference);
        io::TensorComparison result;
        {
          nb::gil_scoped_release unlocked;
          result = io::compare(name, a, b);
        }
        return nb::make_tuple(result.sqnr_db, result.max_abs_error, result.mismatches);
      },
      "name"_a, "value"_a, "reference"_a,
      "(sqnr_db, max_abs_error, mismatches) of two decoded tensors; see model.hpp.");
  m.def(
      "inspect_model",
      [](const std::string& path) {
        std::vector<io::TensorInfo> infos;
        {
          nb::gil_scoped_release unlocked;
          infos = io::inspect_model(path);
        }
        nb::list out;
        for (const io::TensorInfo& info : infos) {
          nb::dict item;
          item["name"] = nb::str(info.name.data(), info.name.size());
          item["convention"] = info.convention;
          item["file"] = info.file;
          item["stored"] = info.stored;
          item["shape"] = nb::tuple(nb::cast(info.shape));
          item["format"] = info.format;
          item["layout"] = info.layout;
          item["scale_shape"] = info.layout.empty()
                                    ? nb::object(nb::none())
                                    : nb::object(nb::tuple(nb::cast(info.scale_shape)));
          item["bytes"] = info.bytes;
          item["problems"] = info.problems;
          out.append(item);
        }
        return out;
      },
      "path"_a, "Per-tensor records of a checkpoint (TensorInfo in model.hpp), as dicts.");
  m.def("convert_formats", &io::convert_formats);
  m.def("default_ignore_patterns", &io::default_ignore_patterns);
  m.def("default_convention", [](const std::string& format) {
    io::ConvertTarget target;
    target.format = format;
    io::target_recipe(target);  // ValueError for an unknown format
    return std::string(io::to_string(io::default_convention(target)));
  });
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
