// safetensors files: a zero-copy reader over a memory mapping and an atomic writer.
//
// The format is an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the tensors' bytes, offsets relative to the end of
// the header. The reader checks every structural rule of the format before it hands out a
// single Array, so a hostile file fails with a ValueError naming the file, the tensor and the
// rule, never with a read out of bounds.
//
// Quantized checkpoints (a ScaledTensor stored as `w`, `w.scale`, ... plus recipe and layout
// JSON in the metadata) are a convention on top of these two calls, not a different format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "breccia/array.hpp"
#include "breccia/dtype.hpp"

namespace breccia::io {

// Element types as the safetensors header spells them ("F32", "BF16", "F8_E4M3", ...).
enum class SafetensorsDType : std::uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kF16,
  kBF16,
  kU32,
  kI32,
  kF32,
  kU64,
  kI64,
  kF64,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,
  kF6E2M3,  // bit-packed, four codes in three bytes; the header's shape counts elements
  kF6E3M2,
  kF4,  // E2M1, two per byte; the header's shape counts 4-bit elements
};

std::string_view to_string(SafetensorsDType dtype);
// nullopt for a string the format does not define.
std::optional<SafetensorsDType> safetensors_dtype_from_string(std::string_view text);

// The breccia dtype whose bytes hold a tensor of this file dtype (U8 for F4; F6 files are
// bit-packed and their arrays hold one code per byte, unpacked on load and packed on save,
// element i at bits 6i..6i+5 of the little-endian bit stream); nullopt for the
// integer and bool types breccia has no Array dtype for.
std::optional<DType> array_dtype_for(SafetensorsDType dtype);
// The file dtype an Array of `dtype` is written as by default.
SafetensorsDType safetensors_dtype_for(DType dtype);

using Metadata = std::map<std::string, std::string>;

// One tensor as the file holds it. For F4 the array is uint8 with the last dim halved (two
// E2M1 codes per byte, low nibble first); for every other dtype the shapes agree.
struct StoredTensor {
  Array array;
  SafetensorsDType dtype = SafetensorsDType::kF32;
};

struct SafetensorsFile {
  std::map<std::string, StoredTensor> tensors;
  Metadata metadata;

  // Just the arrays, by name.
  std::map<std::string, Array> arrays() const;
};

struct LoadOptions {
  // false: the arrays view a private, copy-on-write mapping of the file. Writing to them
  // changes only this process's pages, never the file; but the kernel reads the file lazily,
  // so truncating it while the arrays live makes reading them raise SIGBUS, and rewriting it in
  // place may show through pages not yet read (save() does neither: it renames a new file over
  // the old). true: the file is read into private memory before load() returns, which costs
  // the file's size in RAM and makes the arrays immune to whatever later happens to the file.
  bool copy = false;
};

// Opens `path` and returns every tensor as a CPU Array over the file's bytes (see LoadOptions;
// the mapping or buffer stays alive while any Array does). A tensor whose bytes are not aligned
// to its element size in the file (possible only in files other writers made) is copied, so
// pointers are always aligned. The arrays are flagged read-only; writes through a framework
// that ignores the flag (torch) stay private to the process.
// Refuses, before any call that could block: a path holding a NUL byte (ValueError), a path
// that is not a regular file (a FIFO, a device, a directory: IOError), and a breccia temporary
// file (is_temporary_file: ValueError). Throws IOError when the file cannot be opened, mapped
// or read, ValueError naming the file, the tensor and the rule when its content breaks the
// format (the JSON header included: duplicate keys, numbers out of range, NUL bytes, fields
// other than dtype, shape and data_offsets, empty names or names holding a NUL, more than
// kMaxDims dims), and ValueError for a valid dtype breccia cannot represent (BOOL, U16, ...).
SafetensorsFile load(const std::filesystem::path& path, const LoadOptions& options = {});

// Called between pieces of a long write (every few MiB), with the bytes written so far and the
// file's size, and once more just before the file is committed (written == total). Whatever it
// throws abandons the write: the temporary file is removed, `path` is untouched and the
// exception propagates. The Python bindings use it to honour Ctrl-C and to show progress.
using WritePoll = std::function<void(std::uint64_t written, std::uint64_t total)>;

// Writes `tensors` (CPU arrays, any strides) and `metadata` to `path`. The file appears whole
// or not at all: it is written to a temporary file in the same directory (see
// temporary_file_prefix), flushed to disk and renamed over `path`; on any failure the temporary
// file is removed and `path` is untouched. A process killed mid-write leaves its temporary file
// behind; the next save() to the same `path` removes those whose writer is no longer running.
// Names must be non-empty, free of NUL bytes and not "__metadata__"; `path` must hold no NUL.
// Throws ValueError / DeviceError for bad arguments (before touching the disk) and IOError when
// writing fails.
void save(const std::filesystem::path& path, const std::map<std::string, StoredTensor>& tensors,
          const Metadata& metadata = {}, const WritePoll& poll = {});
// The same, each array written under its own dtype (safetensors_dtype_for).
void save(const std::filesystem::path& path, const std::map<std::string, Array>& tensors,
          const Metadata& metadata = {}, const WritePoll& poll = {});

// save() one tensor at a time, for tensors produced one after another (the checkpoint
// converter): add() writes a tensor's bytes at once, so the caller can free it before making
// the next, and a file larger than memory can be written. The header is written last, into
// `header_room` bytes kept at the front of the file (padded with spaces, as the format allows);
// a header that outgrows the room makes finish() copy the data once, behind a larger header.
// Tensors lie in the order added, except that one whose byte count is not a multiple of 8 (it
// would misalign the next) is kept (the Array, not a copy: leave it unchanged) until finish(),
// which writes those widest first, as save() orders a file: every tensor stays aligned to its
// element size. As with save(), the file appears under `path` only when finish() renames its
// flushed temporary file over it; a writer destroyed before finish() (an exception, an
// abandoned job) removes its temporary file and leaves `path` untouched. add() checks its
// arguments as save() does and refuses a name added twice (ValueError, the writer still
// usable); after a failed write (IOError) the writer refuses further calls.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(const std::filesystem::path& path,
                             std::uint64_t header_room = std::uint64_t{1} << 16);
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  void add(const std::string& name, const StoredTensor& tensor);
  // Writes what waits, the header and `metadata`, flushes and renames; the writer is then done.
  void finish(const Metadata& metadata = {});

 private:
  void write_rest(const Metadata& metadata);
  struct State;
  std::unique_ptr<State> state_;
};

// Temporary files of an unfinished save(path) are named
// "<dir>/.<file name>.breccia-partial-<pid>-<n>": hidden, and without the ".safetensors" ending,
// so that loaders that list a directory for "*.safetensors" never pick them up.
std::string temporary_file_prefix(
    const std::filesystem::path& path);  // "<dir>/.<name>.breccia-partial-"
// Whether `path`'s file name has the form above.
bool is_temporary_file(const std::filesystem::path& path);
// Removes the temporary files of save(path) whose writing process is gone (on this machine);
// returns how many. save() calls it; it is public for tools that clean up without writing.
int remove_stale_temporaries(const std::filesystem::path& path);

// ValueError naming `argument` when `path` holds a NUL byte, which the operating system would
// silently treat as the end of the path.
void require_no_nul(const std::filesystem::path& path, std::string_view argument);

}  // namespace breccia::io
