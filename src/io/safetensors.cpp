#include "breccia/io/safetensors.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <simdjson.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "breccia/error.hpp"

namespace breccia::io {
namespace {

// The reference implementation's limit: a larger header is an attack, not a model.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kTemporaryMarker = ".breccia-partial-";
// Long writes are cut into pieces of this size, with a WritePoll call between them.
constexpr std::size_t kWritePiece = std::size_t{8} << 20;

struct DTypeInfo {
  SafetensorsDType dtype;
  std::string_view name;
  int bits;
};

// In the order the reference writer lays tensors out (widest first, ties by name); save()
// follows it so that its files match the reference byte for byte.
constexpr DTypeInfo kDTypes[] = {
    {SafetensorsDType::kU64, "U64", 64},       {SafetensorsDType::kI64, "I64", 64},
    {SafetensorsDType::kF64, "F64", 64},       {SafetensorsDType::kF32, "F32", 32},
    {SafetensorsDType::kU32, "U32", 32},       {SafetensorsDType::kI32, "I32", 32},
    {SafetensorsDType::kBF16, "BF16", 16},     {SafetensorsDType::kF16, "F16", 16},
    {SafetensorsDType::kU16, "U16", 16},       {SafetensorsDType::kI16, "I16", 16},
    {SafetensorsDType::kF8E8M0, "F8_E8M0", 8}, {SafetensorsDType::kF8E4M3, "F8_E4M3", 8},
    {SafetensorsDType::kF8E5M2, "F8_E5M2", 8}, {SafetensorsDType::kI8, "I8", 8},
    {SafetensorsDType::kU8, "U8", 8},          {SafetensorsDType::kF6E2M3, "F6_E2M3", 6},
    {SafetensorsDType::kF6E3M2, "F6_E3M2", 6}, {SafetensorsDType::kF4, "F4", 4},
    {SafetensorsDType::kBool, "BOOL", 8},
};

std::size_t layout_rank(SafetensorsDType dtype) {
  for (std::size_t rank = 0; rank < std::size(kDTypes); ++rank) {
    if (kDTypes[rank].dtype == dtype) return rank;
  }
  fail<ValueError>("safetensors dtype: expected one of the format's dtypes, got code ",
                   static_cast<int>(dtype));
}

const DTypeInfo& info(SafetensorsDType dtype) {
  return kDTypes[layout_rank(dtype)];
}

std::string known_dtype_list() {
  std::string list;
  for (const DTypeInfo& entry : kDTypes) {
    if (!list.empty()) list += ", ";
    list += entry.name;
  }
  return list;
}

std::string errno_text(int error) {
  return std::strerror(error);
}

// The file's bytes: a private mapping, released with munmap, or a heap copy (LoadOptions::copy).
// Arrays that view them keep this alive.
class FileBytes {
 public:
  FileBytes(void* address, std::size_t length, bool mapped)
      : address_(address), length_(length), mapped_(mapped) {}
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes() {
    if (mapped_) {
      munmap(address_, length_);
    } else {
      ::operator delete(address_, std::align_val_t{64});
    }
  }
  const std::byte* bytes() const { return static_cast<const std::byte*>(address_); }
  std::byte* mutable_bytes() const { return static_cast<std::byte*>(address_); }
  std::size_t length() const { return length_; }

 private:
  void* address_;
  std::size_t length_;
  bool mapped_;
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error close() can return for buffered writes.
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "a special file";
}

void read_all(int fd, std::byte* to, std::size_t length, const std::string& where) {
  std::size_t done = 0;
  while (done < length) {
    const ssize_t got = ::read(fd, to + done, length - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail<IOError>(where, ": cannot read: ", errno_text(errno));
    if (got == 0) {
      fail<IOError>(where, ": expected ", length, " bytes, got ", done,
                    " (the file shrank while it was read)");
    }
    done += static_cast<std::size_t>(got);
  }
}

std::shared_ptr<FileBytes> open_file(const std::filesystem::path& path, const LoadOptions& options,
                                     const std::string& where) {
  require_no_nul(path, "path");
  if (is_temporary_file(path)) {
    fail<ValueError>(where, ": expected a safetensors file, got the unfinished temporary file of ",
                     "an interrupted save (its name has the form .<name>", kTemporaryMarker,
                     "<pid>-<n>)");
  }
  // stat() first: open() of a FIFO without a writer would block forever.
  struct stat status{};
  if (::stat(path.c_str(), &status) != 0) {
    fail<IOError>(where, ": cannot open: ", errno_text(errno));
  }
  if (!S_ISREG(status.st_mode)) {
    fail<IOError>(where, ": expected a regular file, got ", file_kind(status.st_mode));
  }
  // O_NONBLOCK too, in case the path was swapped for a FIFO since; it changes nothing for a
  // regular file.
  const FileDescriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (file.get() < 0) fail<IOError>(where, ": cannot open: ", errno_text(errno));
  if (::fstat(file.get(), &status) != 0) {
    fail<IOError>(where, ": cannot stat: ", errno_text(errno));
  }
  if (!S_ISREG(status.st_mode)) {
    fail<IOError>(where, ": expected a regular file, got ", file_kind(status.st_mode));
  }
  const auto length = static_cast<std::uint64_t>(status.st_size);
  if (length < 8) {
    fail<ValueError>(where, ": expected at least the 8-byte header length, got a file of ", length,
                     " bytes");
  }
  if (options.copy) {
    auto buffer = std::make_shared<FileBytes>(::operator new(length, std::align_val_t{64}), length,
                                              /*mapped=*/false);
    read_all(file.get(), buffer->mutable_bytes(), length, where);
    return buffer;
  }
  // Writable but private: writes (from frameworks without read-only tensors) go to this
  // process's copies of the pages, never to the file. MAP_NORESERVE: pages never written cost
  // no swap reservation.
  void* address =
      ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file.get(), 0);
  if (address == MAP_FAILED) {
    fail<IOError>(where, ": cannot map ", length, " bytes: ", errno_text(errno));
  }
  return std::make_shared<FileBytes>(address, length, /*mapped=*/true);
}

// Index of the first byte that breaks UTF-8 (overlong forms, surrogates and code points past
// U+10FFFF included), or nullopt when `text` is valid.
std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    int continuation = 0;
    std::uint32_t code_point = 0;
    std::uint32_t smallest = 0;
    if ((lead & 0xE0) == 0xC0) {
      continuation = 1, code_point = lead & 0x1F, smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      continuation = 2, code_point = lead & 0x0F, smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      continuation = 3, code_point = lead & 0x07, smallest = 0x10000;
    } else {
      return i;
    }
    if (i + continuation >= text.size()) return i;  // truncated sequence
    for (int k = 1; k <= continuation; ++k) {
      const unsigned char next = bytes[i + k];
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    const bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
    if (code_point < smallest || surrogate || code_point > 0x10FFFF) return i;
    i += continuation + 1;
  }
  return std::nullopt;
}

// `name` with NUL bytes shown as \0, for messages.
std::string printable(std::string_view name) {
  std::string text;
  for (const char c : name) {
    if (c == '\0') {
      text += "\\0";
    } else {
      text += c;
    }
  }
  return text;
}

// The rules save() enforces on names, which load() enforces too: a name with a NUL would be cut
// short by C APIs (and by Python's bindings), so two names could come out as one.
void require_valid_name(std::string_view name, const std::string& where) {
  if (name.empty() || name == kMetadataKey) {
    fail<ValueError>(where, ": tensor name: expected a non-empty name other than ", kMetadataKey,
                     ", got '", name, "'");
  }
  if (const auto nul = name.find('\0'); nul != std::string_view::npos) {
    fail<ValueError>(where, ": tensor name: expected no NUL bytes, got '", printable(name),
                     "' with one at offset ", nul);
  }
}

struct TensorEntry {
  std::string name;
  SafetensorsDType dtype;
  Shape shape;
  std::int64_t begin;
  std::int64_t end;
};

// "<file>: tensor '<name>'" in messages, written only when there is one: a header of a million
// tensors should not build a million strings on its way to success.
struct TensorWhere {
  const std::string& file;
  std::string_view name;
  friend std::ostream& operator<<(std::ostream& out, const TensorWhere& where) {
    return out << where.file << ": tensor '" << printable(where.name) << "'";
  }
};

// Bytes a tensor of `shape` and `dtype` occupies.
std::int64_t stored_bytes(SafetensorsDType dtype, const Shape& shape, const TensorWhere& where) {
  std::int64_t numel = 0;
  try {
    numel = checked_numel(shape);  // "shape: ..." on failure
  } catch (const ValueError& error) {
    fail<ValueError>(where, ": ", error.what());
  }
  const int bits = info(dtype).bits;
  if (bits == 4) {
    if (shape.empty() || shape.back() % 2 != 0) {
      fail<ValueError>(where,
                       ": shape: expected an even last dim for F4 (two codes per byte), "
                       "got ",
                       shape_str(shape));
    }
    return numel / 2;
  }
  if (bits == 6) {
    if (numel % 4 != 0) {
      fail<ValueError>(where,
                       ": shape: expected a multiple of 4 elements for F6 (four codes "
                       "in three bytes), got ",
                       shape_str(shape));
    }
    return numel / 4 * 3;
  }
  std::int64_t bytes = 0;
  if (__builtin_mul_overflow(numel, bits / 8, &bytes)) {
    fail<ValueError>(where, ": expected a byte size that fits in 64 bits, got ", numel,
                     " elements of ", bits / 8, " bytes");
  }
  return bytes;
}

// The header's tensor entries and metadata.
struct Header {
  std::vector<TensorEntry> entries;
  std::vector<std::uint32_t> by_name;  // indices of the entries, in name order
  Metadata metadata;
};

// Reads the header with simdjson's On-Demand API straight into tensor entries and metadata,
// checking each rule at the token it concerns. No JSON document is built: with one (nlohmann),
// a million-tensor header spent seconds on the document's nodes and a second on lexing alone.
// Anything but the format's fixed shape (an object of entries {dtype, shape, data_offsets} and
// one __metadata__ object of strings) is refused at its first token, so nesting never goes
// deeper than three and every byte of the header is read. A name given twice is found once the
// names are sorted.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& where) : where_(where) {}

  Header parse(std::string_view text) {
    // One copy with the padding simdjson reads past the end with; the mapping has none.
    const simdjson::padded_string padded(text.data(), text.size());
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document document = take(parser.iterate(padded));
    const Type type = take(document.type());
    if (type != Type::object) {
      // type() judges by the first byte; an atom that is not one (`nope`) is a parse error.
      bool atom_valid = true;
      if (type == Type::null) atom_valid = take(document.is_null());
      if (type == Type::boolean) take(document.get_bool());
      if (!atom_valid) take(simdjson::simdjson_result<bool>(simdjson::N_ATOM_ERROR));
      fail<ValueError>(where_, ": header: expected a JSON object, got ", type_name(type));
    }
    Header header;
    // About 60 bytes of header per tensor: reserve, so the entries are not moved as they grow.
    header.entries.reserve(text.size() / 64);
    bool metadata_seen = false;
    for (auto member : take(document.get_object())) {
      simdjson::ondemand::field field = take(std::move(member));
      const std::string_view key = take(field.unescaped_key());
      if (key == kMetadataKey) {
        if (metadata_seen) duplicate(key);
        metadata_seen = true;
        header.metadata = read_metadata(field.value());
      } else {
        require_valid_name(key, where_);
        header.entries.push_back(read_entry(std::string(key), field.value()));
      }
    }
    // Past the object is the end of the document, or more text.
    if (const char* rest = nullptr; !document.current_location().get(rest)) {
      fail<ValueError>(where_,
                       ": header: expected JSON, got a parse error (text after the object)");
    }
    index_by_name(header);
    return header;
  }

 private:
  enum class Field { kDType, kShape, kOffsets };
  static constexpr unsigned kAllFields = 0b111;
  using Type = simdjson::ondemand::json_type;

  static const char* type_name(Type type) {
    switch (type) {
      case Type::array:
        return "array";
      case Type::object:
        return "object";
      case Type::number:
        return "number";
      case Type::string:
        return "string";
      case Type::boolean:
        return "boolean";
      case Type::null:
        break;
    }
    return "null";
  }

  static std::optional<Field> field_named(std::string_view name) {
    if (name == "dtype") return Field::kDType;
    if (name == "shape") return Field::kShape;
    if (name == "data_offsets") return Field::kOffsets;
    return std::nullopt;
  }

  // The value of a simdjson result; a syntax error becomes a ValueError naming the file.
  template <class T>
  T take(simdjson::simdjson_result<T>&& result) const {
    T value;
    if (const simdjson::error_code error = std::move(result).get(value)) {
      fail<ValueError>(where_, ": header: expected JSON, got a parse error (",
                       simdjson::error_message(error), ")");
    }
    return value;
  }

  [[noreturn]] void duplicate(std::string_view key) const {
    fail<ValueError>(where_, ": header: expected unique keys, got '", printable(key),
                     "' twice in one object");
  }

  // A non-negative integer below 2^63, or nullopt for any other number; its text for messages.
  // (The text views the parser's buffer.)
  static std::pair<std::optional<std::int64_t>, std::string_view> count(
      simdjson::ondemand::value value) {
    std::string_view text = value.raw_json_token();
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
      text.remove_suffix(1);
    }
    std::uint64_t number = 0;
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (value.get_uint64().get(number) || number > kMax) return {std::nullopt, text};
    return {static_cast<std::int64_t>(number), text};
  }

  Metadata read_metadata(simdjson::ondemand::value value) const {
    const Type type = take(value.type());
    if (type != Type::object) {
      fail<ValueError>(where_, ": __metadata__: expected an object of strings, got ",
                       type_name(type));
    }
    Metadata metadata;
    for (auto member : take(value.get_object())) {
      simdjson::ondemand::field field = take(std::move(member));
      std::string key(take(field.unescaped_key()));
      if (metadata.contains(key)) duplicate(key);
      const Type text_type = take(field.value().type());
      if (text_type != Type::string) {
        fail<ValueError>(where_, ": __metadata__: expected a string for key '", printable(key),
                         "', got ", type_name(text_type));
      }
      metadata.emplace(std::move(key), std::string(take(field.value().get_string())));
    }
    return metadata;
  }

  TensorEntry read_entry(std::string name, simdjson::ondemand::value value) const {
    TensorEntry entry{std::move(name), SafetensorsDType::kU8, {}, 0, 0};
    const TensorWhere here{where_, entry.name};
    const Type type = take(value.type());
    if (type != Type::object) {
      fail<ValueError>(here, ": expected an object with dtype, shape and data_offsets, got ",
                       type_name(type));
    }
    unsigned seen = 0;
    for (auto member : take(value.get_object())) {
      simdjson::ondemand::field field = take(std::move(member));
      const std::string_view key = take(field.unescaped_key());
      const auto which = field_named(key);
      if (!which) {
        fail<ValueError>(here, ": expected only the fields dtype, shape and data_offsets, got \"",
                         printable(key), "\"");
      }
      const unsigned bit = 1u << static_cast<int>(*which);
      if (seen & bit) duplicate(key);
      seen |= bit;
      if (*which == Field::kDType) {
        entry.dtype = read_dtype(field.value(), here);
      } else if (*which == Field::kShape) {
        entry.shape = read_shape(field.value(), here);
      } else {
        std::tie(entry.begin, entry.end) = read_offsets(field.value(), here);
      }
    }
    if (seen != kAllFields) {
      for (const char* field : {"dtype", "shape", "data_offsets"}) {
        if (!(seen & (1u << static_cast<int>(*field_named(field))))) {
          fail<ValueError>(here, ": expected a \"", field, "\" field");
        }
      }
    }
    const std::int64_t bytes = stored_bytes(entry.dtype, entry.shape, here);
    if (bytes != entry.end - entry.begin) {
      fail<ValueError>(here, ": expected ", bytes, " bytes for ", to_string(entry.dtype),
                       " of shape ", shape_str(entry.shape), ", got data_offsets [", entry.begin,
                       ", ", entry.end, "] (", entry.end - entry.begin, " bytes)");
    }
    return entry;
  }

  SafetensorsDType read_dtype(simdjson::ondemand::value value, const TensorWhere& here) const {
    const Type type = take(value.type());
    if (type != Type::string) {
      fail<ValueError>(here, ": dtype: expected a string, got ", type_name(type));
    }
    const std::string_view text = take(value.get_string());
    const auto dtype = safetensors_dtype_from_string(text);
    if (!dtype) {
      fail<ValueError>(here, ": dtype: expected one of ", known_dtype_list(), ", got '",
                       printable(text), "'");
    }
    return *dtype;
  }

  Shape read_shape(simdjson::ondemand::value value, const TensorWhere& here) const {
    const Type type = take(value.type());
    if (type != Type::array) {
      fail<ValueError>(here, ": shape: expected a list of non-negative integers, got ",
                       type_name(type));
    }
    Shape shape;
    std::size_t dims = 0;
    for (auto element : take(value.get_array())) {
      simdjson::ondemand::value dim = take(std::move(element));
      const Type dim_type = take(dim.type());
      if (dim_type != Type::number) {
        fail<ValueError>(here, ": shape: expected non-negative integers below 2^63, got ",
                         type_name(dim_type));
      }
      const auto [number, text] = count(dim);
      if (!number) {
        fail<ValueError>(here, ": shape: expected non-negative integers below 2^63, got ", text);
      }
      if (++dims <= kMaxDims) shape.push_back(*number);
    }
    if (dims > kMaxDims) {
      fail<ValueError>(here, ": shape: expected at most ", kMaxDims, " dims, got ", dims);
    }
    return shape;
  }

  std::pair<std::int64_t, std::int64_t> read_offsets(simdjson::ondemand::value value,
                                                     const TensorWhere& here) const {
    constexpr std::string_view expected =
        ": data_offsets: expected [begin, end] with 0 <= begin <= end";
    const Type type = take(value.type());
    if (type != Type::array) fail<ValueError>(here, expected, ", got ", type_name(type));
    std::vector<std::optional<std::int64_t>> offsets;
    std::string text;  // the first three, enough to tell what was wrong
    for (auto element : take(value.get_array())) {
      simdjson::ondemand::value offset = take(std::move(element));
      const Type offset_type = take(offset.type());
      if (offset_type != Type::number) {
        fail<ValueError>(here, expected, ", got a list holding a ", type_name(offset_type));
      }
      auto [number, token] = count(offset);
      if (offsets.size() < 3) (text += offsets.empty() ? "" : ", ") += token;
      offsets.push_back(number);
    }
    if (offsets.size() != 2 || !offsets[0] || !offsets[1] || *offsets[0] > *offsets[1]) {
      fail<ValueError>(here, expected, ", got [", text, offsets.size() > 3 ? ", ...]" : "]");
    }
    return {*offsets[0], *offsets[1]};
  }

  // Writers list the tensors by name, so the check is usually one sequential pass; sorting
  // through the indices costs a cache miss per comparison.
  void index_by_name(Header& header) const {
    const std::vector<TensorEntry>& entries = header.entries;
    header.by_name.resize(entries.size());
    std::iota(header.by_name.begin(), header.by_name.end(), 0u);
    const auto name_less = [&](std::uint32_t a, std::uint32_t b) {
      return entries[a].name < entries[b].name;
    };
    if (!std::is_sorted(header.by_name.begin(), header.by_name.end(), name_less)) {
      std::sort(header.by_name.begin(), header.by_name.end(), name_less);
    }
    const auto twice = std::adjacent_find(
        header.by_name.begin(), header.by_name.end(),
        [&](std::uint32_t a, std::uint32_t b) { return entries[a].name == entries[b].name; });
    if (twice != header.by_name.end()) duplicate(entries[*twice].name);
  }

  const std::string& where_;
};

// The header's tensor entries (also by name) and metadata, every rule of the format checked.
Header parse_header(std::string_view text, const std::string& where) {
  // JSON allows no raw NUL anywhere, and a parser that stops at one would ignore what follows.
  if (const auto nul = text.find('\0'); nul != std::string_view::npos) {
    fail<ValueError>(where, ": header: expected JSON text padded with spaces, got a NUL byte at ",
                     "offset ", nul);
  }
  return HeaderParser(where).parse(text);
}

// The tensors must tile [0, data_bytes) exactly, so no byte is read twice or left unaccounted.
void check_tiling(const std::vector<TensorEntry>& entries, std::int64_t data_bytes,
                  const std::string& where) {
  // Sorted by value, without a trip to the entry per comparison; ties go by header order.
  struct Span {
    std::int64_t begin;
    std::int64_t end;
    std::uint32_t index;
    auto operator<=>(const Span&) const = default;
  };
  std::vector<Span> spans;
  spans.reserve(entries.size());
  for (std::uint32_t i = 0; i < entries.size(); ++i) {
    spans.push_back({entries[i].begin, entries[i].end, i});
  }
  if (!std::is_sorted(spans.begin(), spans.end())) std::sort(spans.begin(), spans.end());
  std::int64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Span& span : spans) {
    const std::string& name = entries[span.index].name;
    if (span.end > data_bytes) {
      fail<ValueError>(where, ": tensor '", name, "': expected data inside the file's ", data_bytes,
                       " data bytes, got data_offsets [", span.begin, ", ", span.end, "]");
    }
    if (span.begin > covered) {
      fail<ValueError>(where, ": tensor '", name, "': expected data starting at byte ", covered,
                       " (tensors are contiguous), got a gap: data_offsets [", span.begin, ", ",
                       span.end, "]");
    }
    if (span.begin < covered) {
      fail<ValueError>(where, ": tensor '", name, "': expected data starting at byte ", covered,
                       ", got data_offsets [", span.begin, ", ", span.end, "] overlapping tensor '",
                       *previous, "'");
    }
    covered = span.end;
    previous = &name;
  }
  if (covered != data_bytes) {
    fail<ValueError>(where, ": expected the tensors to fill the file's ", data_bytes,
                     " data bytes, got ", data_bytes - covered, " trailing bytes");
  }
}

// FP6 codes bit-packed as the little-endian stream of 6-bit fields (element i at bits
// 6i..6i+5): every four codes fill three bytes.
void unpack_6bit(const std::uint8_t* packed, std::uint8_t* codes, std::int64_t count) {
  for (std::int64_t group = 0; group < count / 4; ++group) {
    const std::uint32_t bits = packed[3 * group] | std::uint32_t{packed[3 * group + 1]} << 8 |
                               std::uint32_t{packed[3 * group + 2]} << 16;
    for (int k = 0; k < 4; ++k) codes[4 * group + k] = (bits >> (6 * k)) & 0x3Fu;
  }
}

std::vector<std::uint8_t> pack_6bit(const Array& codes, const std::string& where) {
  const Array contiguous = codes.contiguous();
  const auto* from = contiguous.data_as<const std::uint8_t>();
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(codes.numel() / 4 * 3));
  for (std::int64_t group = 0; group < codes.numel() / 4; ++group) {
    std::uint32_t bits = 0;
    for (int k = 0; k < 4; ++k) {
      const std::uint8_t code = from[4 * group + k];
      if (code > 0x3F) {
        fail<ValueError>(where, ": expected FP6 codes below 64 (the top two bits clear), got ",
                         static_cast<int>(code), " at element ", 4 * group + k);
      }
      bits |= std::uint32_t{code} << (6 * k);
    }
    for (int b = 0; b < 3; ++b) packed[3 * group + b] = static_cast<std::uint8_t>(bits >> (8 * b));
  }
  return packed;
}

// The entry's array; its shape is moved out of the entry.
Array to_array(TensorEntry& entry, const std::shared_ptr<FileBytes>& mapping,
               std::size_t data_start, const std::string& where) {
  const auto dtype = array_dtype_for(entry.dtype);
  if (!dtype) {
    fail<ValueError>(where, ": tensor '", entry.name, "': dtype ", to_string(entry.dtype),
                     " is valid safetensors but breccia has no array type for it (expected "
                     "U8, I8, I32, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0, F6_E2M3, "
                     "F6_E3M2 or F4)");
  }
  Shape shape = std::move(entry.shape);
  if (entry.dtype == SafetensorsDType::kF4) shape.back() /= 2;
  const std::byte* bytes = mapping->bytes() + data_start + entry.begin;
  if (info(entry.dtype).bits == 6) {  // bit-packed in the file, one code per byte in memory
    Array codes = Array::empty(*dtype, std::move(shape));
    unpack_6bit(reinterpret_cast<const std::uint8_t*>(bytes), codes.data_as<std::uint8_t>(),
                codes.numel());
    return codes;
  }
  if (reinterpret_cast<std::uintptr_t>(bytes) % itemsize(*dtype) == 0) {
    // Writes could not reach the file, but they would be surprising; frameworks that honour
    // the flag (NumPy) refuse them.
    return Array::borrow(const_cast<std::byte*>(bytes), *dtype, std::move(shape), {}, Device::cpu(),
                         mapping)
        .marked_read_only();
  }
  Array copy = Array::empty(*dtype, std::move(shape));
  std::memcpy(copy.data(), bytes, static_cast<std::size_t>(entry.end - entry.begin));
  return copy;
}

// A write's progress, reported to its WritePoll.
struct WriteProgress {
  const WritePoll& poll;
  std::uint64_t written = 0;
  std::uint64_t total = 0;
  void report() const {
    if (poll) poll(written, total);
  }
};

// Writes in pieces of kWritePiece bytes, reporting progress before each.
void write_all(int fd, const void* data, std::size_t length, const std::string& where,
               WriteProgress& progress) {
  const auto* cursor = static_cast<const char*>(data);
  while (length > 0) {
    progress.report();
    const ssize_t written = ::write(fd, cursor, std::min(length, kWritePiece));
    if (written < 0) {
      if (errno == EINTR) continue;
      fail<IOError>(where, ": cannot write: ", errno_text(errno));
    }
    cursor += written;
    length -= static_cast<std::size_t>(written);
    progress.written += static_cast<std::uint64_t>(written);
  }
}

// Creates a fresh file next to `path` that no other writer can be using.
std::pair<std::filesystem::path, int> create_temporary(const std::filesystem::path& path,
                                                       const std::string& where) {
  static std::atomic<unsigned> counter{0};
  const std::string prefix = temporary_file_prefix(path) + std::to_string(::getpid()) + "-";
  for (int attempt = 0;; ++attempt) {
    const std::filesystem::path candidate = prefix + std::to_string(counter++);
    const int fd = ::open(candidate.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return {candidate, fd};
    if (errno != EEXIST || attempt == 100) {
      fail<IOError>(where, ": cannot create temporary file '", candidate.string(),
                    "': ", errno_text(errno));
    }
  }
}

// The writer's pid in a temporary file name made for `path`, or nullopt when `name` is not one.
std::optional<pid_t> temporary_writer(std::string_view name, std::string_view target_name) {
  const std::string prefix = "." + std::string(target_name) + std::string(kTemporaryMarker);
  if (!name.starts_with(prefix)) return std::nullopt;
  const std::string_view rest = name.substr(prefix.size());
  const auto dash = rest.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash + 1 == rest.size()) return std::nullopt;
  const auto digits = [](std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(rest.substr(0, dash)) || !digits(rest.substr(dash + 1)) || dash > 9) {
    return std::nullopt;
  }
  return static_cast<pid_t>(std::stol(std::string(rest.substr(0, dash))));
}

// Makes the rename itself durable; a failure here cannot undo the rename, so it is ignored.
void sync_directory(const std::filesystem::path& directory) {
  const FileDescriptor dir(
      ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

}  // namespace

void require_no_nul(const std::filesystem::path& path, std::string_view argument) {
  if (const auto nul = path.native().find('\0'); nul != std::string::npos) {
    fail<ValueError>(argument, ": expected a path without NUL bytes, got '",
                     printable(path.native()), "' with one at offset ", nul);
  }
}

std::string temporary_file_prefix(const std::filesystem::path& path) {
  return (path.parent_path() / ("." + path.filename().string() + std::string(kTemporaryMarker)))
      .string();
}

bool is_temporary_file(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  const auto marker = name.rfind(kTemporaryMarker);
  if (name.size() < 2 || name[0] != '.' || marker == std::string::npos || marker < 2) return false;
  return temporary_writer(name, name.substr(1, marker - 1)).has_value();
}

int remove_stale_temporaries(const std::filesystem::path& path) {
  const std::filesystem::path directory = path.parent_path().empty() ? "." : path.parent_path();
  const std::string target_name = path.filename().string();
  int removed = 0;
  std::error_code error;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
       it.increment(error)) {
    const std::optional<pid_t> writer =
        temporary_writer(it->path().filename().string(), target_name);
    // kill(pid, 0) fails with ESRCH only when no such process exists; any other answer (EPERM:
    // alive but another user's) means the writer may still be at work.
    if (!writer || *writer <= 0 || ::kill(*writer, 0) == 0 || errno != ESRCH) continue;
    if (::unlink(it->path().c_str()) == 0) ++removed;
  }
  return removed;
}

std::string_view to_string(SafetensorsDType dtype) {
  return info(dtype).name;
}

std::optional<SafetensorsDType> safetensors_dtype_from_string(std::string_view text) {
  for (const DTypeInfo& entry : kDTypes) {
    if (entry.name == text) return entry.dtype;
  }
  return std::nullopt;
}

std::optional<DType> array_dtype_for(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kU8:
    case SafetensorsDType::kF4:
      return DType::kU8;
    case SafetensorsDType::kI8:
      return DType::kI8;
    case SafetensorsDType::kI32:
      return DType::kI32;
    case SafetensorsDType::kI64:
      return DType::kI64;
    case SafetensorsDType::kF16:
      return DType::kF16;
    case SafetensorsDType::kBF16:
      return DType::kBF16;
    case SafetensorsDType::kF32:
      return DType::kF32;
    case SafetensorsDType::kF64:
      return DType::kF64;
    case SafetensorsDType::kF8E4M3:
      return DType::kE4M3;
    case SafetensorsDType::kF8E5M2:
      return DType::kE5M2;
    case SafetensorsDType::kF8E8M0:
      return DType::kE8M0;
    case SafetensorsDType::kF6E2M3:
      return DType::kE2M3;
    case SafetensorsDType::kF6E3M2:
      return DType::kE3M2;
    default:
      return std::nullopt;
  }
}

SafetensorsDType safetensors_dtype_for(DType dtype) {
  switch (dtype) {
    case DType::kU8:
      return SafetensorsDType::kU8;
    case DType::kI8:
      return SafetensorsDType::kI8;
    case DType::kI32:
      return SafetensorsDType::kI32;
    case DType::kI64:
      return SafetensorsDType::kI64;
    case DType::kF16:
      return SafetensorsDType::kF16;
    case DType::kBF16:
      return SafetensorsDType::kBF16;
    case DType::kF32:
      return SafetensorsDType::kF32;
    case DType::kF64:
      return SafetensorsDType::kF64;
    case DType::kE4M3:
      return SafetensorsDType::kF8E4M3;
    case DType::kE5M2:
      return SafetensorsDType::kF8E5M2;
    case DType::kE8M0:
      return SafetensorsDType::kF8E8M0;
    case DType::kE2M3:
      return SafetensorsDType::kF6E2M3;
    case DType::kE3M2:
      return SafetensorsDType::kF6E3M2;
  }
  fail<ValueError>("dtype: expected a breccia dtype, got code ", static_cast<int>(dtype));
}

std::map<std::string, Array> SafetensorsFile::arrays() const {
  std::map<std::string, Array> result;
  for (const auto& [name, tensor] : tensors) result.emplace(name, tensor.array);
  return result;
}

SafetensorsFile load(const std::filesystem::path& path, const LoadOptions& options) {
  const std::string where = "safetensors file '" + printable(path.native()) + "'";
  const std::shared_ptr<FileBytes> mapping = open_file(path, options, where);
  const std::byte* bytes = mapping->bytes();
  const std::uint64_t file_bytes = mapping->length();

  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i)
    header_bytes = (header_bytes << 8) | std::to_integer<unsigned>(bytes[i]);
  if (header_bytes > kMaxHeaderBytes) {
    fail<ValueError>(where, ": header length: expected at most ", kMaxHeaderBytes, " bytes, got ",
                     header_bytes);
  }
  if (header_bytes > file_bytes - 8) {
    fail<ValueError>(where, ": header length: expected at most the ", file_bytes - 8,
                     " bytes after the length field, got ", header_bytes);
  }

  const std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), header_bytes);
  // simdjson's SIMD check answers yes or no; the byte loop finds where, for the message.
  if (!simdjson::validate_utf8(header_text.data(), header_text.size())) {
    const auto bad = first_invalid_utf8(header_text);
    fail<ValueError>(where, ": header: expected UTF-8 text, got an invalid byte at offset ",
                     bad.value_or(header_text.size()));
  }
  Header header = parse_header(header_text, where);
  const std::uint64_t data_start = 8 + header_bytes;
  check_tiling(header.entries, static_cast<std::int64_t>(file_bytes - data_start), where);

  SafetensorsFile file;
  file.metadata = std::move(header.metadata);
  // In name order, each lands at the map's end; the entries give up their names and shapes.
  for (const std::uint32_t index : header.by_name) {
    TensorEntry& entry = header.entries[index];
    Array array = to_array(entry, mapping, data_start, where);
    file.tensors.emplace_hint(file.tensors.end(), std::move(entry.name),
                              StoredTensor{std::move(array), entry.dtype});
  }
  return file;
}

namespace {

// save()'s checks of one tensor, before the disk is touched.
void check_stored(const std::string& name, const StoredTensor& tensor, const std::string& where) {
  require_valid_name(name, where);
  const std::string here = where + ": tensor '" + name + "'";
  const Array& array = tensor.array;
  if (!array.device().is_cpu()) {
    fail<DeviceError>(here, ": expected a cpu array, got one on ", array.device());
  }
  const auto expected_dtype = array_dtype_for(tensor.dtype);
  if (!expected_dtype) {
    fail<ValueError>(here, ": dtype ", to_string(tensor.dtype),
                     " has no breccia array type to write from");
  }
  if (array.dtype() != *expected_dtype) {
    fail<TypeError>(here, ": expected a ", dtype_name(*expected_dtype), " array to store as ",
                    to_string(tensor.dtype), ", got ", dtype_name(array.dtype()));
  }
  if (tensor.dtype == SafetensorsDType::kF4 && array.ndim() == 0) {
    fail<ValueError>(here, ": expected packed F4 bytes with at least one dim, got a scalar");
  }
  if (info(tensor.dtype).bits == 6 && array.numel() % 4 != 0) {
    fail<ValueError>(here,
                     ": expected a multiple of 4 FP6 codes (the file packs four in "
                     "three bytes), got shape ",
                     shape_str(array.shape()));
  }
  if (!array.defined()) fail<ValueError>(here, ": expected an array with memory, got none");
}

// The tensor's bytes in the file (FP6 packs four codes in three bytes).
std::int64_t file_bytes(const StoredTensor& tensor) {
  return info(tensor.dtype).bits == 6 ? tensor.array.numel() / 4 * 3 : tensor.array.nbytes();
}

// The tensor's header entry, its data at [begin, begin + file_bytes).
nlohmann::ordered_json header_entry(const StoredTensor& tensor, std::int64_t begin) {
  Shape shape = tensor.array.shape();
  if (tensor.dtype == SafetensorsDType::kF4) shape.back() *= 2;
  return {{"dtype", to_string(tensor.dtype)},
          {"shape", shape},
          {"data_offsets", {begin, begin + file_bytes(tensor)}}};
}

void write_tensor(int fd, const std::string& name, const StoredTensor& tensor,
                  const std::string& where, WriteProgress& progress) {
  if (info(tensor.dtype).bits == 6) {
    const std::vector<std::uint8_t> packed =
        pack_6bit(tensor.array, where + ": tensor '" + name + "'");
    write_all(fd, packed.data(), packed.size(), where, progress);
    return;
  }
  const Array contiguous = tensor.array.contiguous();
  write_all(fd, contiguous.data(), static_cast<std::size_t>(contiguous.nbytes()), where, progress);
}

// The 8-byte little-endian length field of a header of `length` bytes.
std::array<unsigned char, 8> length_field(std::uint64_t length) {
  std::array<unsigned char, 8> field{};
  for (int i = 0; i < 8; ++i) field[i] = static_cast<unsigned char>(length >> (8 * i));
  return field;
}

// Flushes and closes `file`, then renames `temporary` over `path` (the commit point).
void commit(FileDescriptor& file, const std::filesystem::path& temporary,
            const std::filesystem::path& path, const std::string& where) {
  if (::fsync(file.get()) != 0) fail<IOError>(where, ": cannot flush: ", errno_text(errno));
  if (file.close() != 0) fail<IOError>(where, ": cannot close: ", errno_text(errno));
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    fail<IOError>(where, ": cannot replace it with '", temporary.string(),
                  "': ", errno_text(errno));
  }
}

}  // namespace

void save(const std::filesystem::path& path, const std::map<std::string, StoredTensor>& tensors,
          const Metadata& metadata, const WritePoll& poll) {
  require_no_nul(path, "path");
  const std::string where = "safetensors file '" + path.string() + "'";

  // Validate everything before the disk is touched.
  struct Pending {
    const std::string* name;
    const StoredTensor* tensor;
    std::size_t rank;
  };
  std::vector<Pending> pending;
  for (const auto& [name, tensor] : tensors) {
    check_stored(name, tensor, where);
    pending.push_back({&name, &tensor, layout_rank(tensor.dtype)});
  }

  // Widest elements first keeps every tensor aligned to its element size in the file; the map
  // already orders equal ranks by name.
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Pending& a, const Pending& b) { return a.rank < b.rank; });

  // Metadata first, then tensors in file order, as the reference writes them.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  std::int64_t offset = 0;
  for (const Pending& item : pending) {
    header[*item.name] = header_entry(*item.tensor, offset);
    offset += file_bytes(*item.tensor);
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const auto length = length_field(header_text.size());

  remove_stale_temporaries(path);
  auto [temporary, fd] = create_temporary(path, where);
  FileDescriptor file(fd);
  WriteProgress progress{poll, 0,
                         length.size() + header_text.size() + static_cast<std::uint64_t>(offset)};
  try {
    write_all(file.get(), length.data(), length.size(), where, progress);
    write_all(file.get(), header_text.data(), header_text.size(), where, progress);
    for (const Pending& item : pending) {
      write_tensor(file.get(), *item.name, *item.tensor, where, progress);
    }
    // The last moment to abandon the write: after the rename the new file is the target.
    progress.written = progress.total;
    progress.report();
    commit(file, temporary, path, where);
  } catch (...) {
    ::unlink(temporary.c_str());
    throw;
  }
  sync_directory(path.parent_path());
}

struct SafetensorsWriter::State {
  struct Entry {
    std::string name;
    StoredTensor tensor;
  };
  std::filesystem::path path;
  std::string where;
  std::filesystem::path temporary;
  std::optional<FileDescriptor> file;
  std::uint64_t header_room = 0;
  std::int64_t offset = 0;                                            // data bytes written
  nlohmann::ordered_json entries = nlohmann::ordered_json::object();  // in file order
  std::set<std::string> names;
  std::vector<Entry> waiting;  // written by finish()
  WritePoll no_poll;
  WriteProgress progress{no_poll};
  bool finished = false;
  bool failed = false;  // a write failed: the file's state is unknown, nothing more is taken

  void require_usable() const {
    if (finished) fail<ValueError>(where, ": the writer has finished");
    if (failed) fail<ValueError>(where, ": an earlier write failed; the file was abandoned");
  }
};

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::uint64_t header_room)
    : state_(std::make_unique<State>()) {
  require_no_nul(path, "path");
  State& state = *state_;
  state.path = path;
  state.where = "safetensors file '" + path.string() + "'";
  // Data from a multiple of 8 bytes, as the reference pads its header; no room past what
  // readers accept.
  state.header_room =
      std::clamp<std::uint64_t>((header_room + 7) / 8 * 8, 8, kMaxHeaderBytes / 8 * 8);
  remove_stale_temporaries(path);
  auto [temporary, fd] = create_temporary(path, state.where);
  state.temporary = std::move(temporary);
  state.file.emplace(fd);
  const auto data_start = static_cast<off_t>(8 + state.header_room);
  if (::lseek(state.file->get(), data_start, SEEK_SET) != data_start) {
    const int error = errno;
    ::unlink(state.temporary.c_str());
    fail<IOError>(state.where, ": cannot seek past its header: ", errno_text(error));
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (state_ && !state_->finished) ::unlink(state_->temporary.c_str());
}

void SafetensorsWriter::add(const std::string& name, const StoredTensor& tensor) {
  State& state = *state_;
  state.require_usable();
  check_stored(name, tensor, state.where);
  if (state.names.contains(name)) {
    fail<ValueError>(state.where, ": tensor '", name, "' added twice");
  }
  // Data written now starts and ends on multiples of 8 bytes, so stays aligned.
  const std::int64_t bytes = file_bytes(tensor);
  if (bytes % 8 != 0) {
    state.waiting.push_back({name, tensor});
    state.names.insert(name);
    return;
  }
  try {
    write_tensor(state.file->get(), name, tensor, state.where, state.progress);
  } catch (...) {
    state.failed = true;
    throw;
  }
#if defined(SYNC_FILE_RANGE_WRITE)
  // Starts writing these pages back now (without waiting), so that finish()'s flush finds
  // little left and the dirty pages of a large file never pile up: advice, failure is fine.
  ::sync_file_range(state.file->get(), static_cast<off_t>(8 + state.header_room + state.offset),
                    bytes, SYNC_FILE_RANGE_WRITE);
#endif
  state.names.insert(name);
  state.entries[name] = header_entry(tensor, state.offset);
  state.offset += bytes;
}

void SafetensorsWriter::finish(const Metadata& metadata) {
  State& state = *state_;
  state.require_usable();
  try {
    write_rest(metadata);
  } catch (...) {
    state.failed = true;
    throw;
  }
  state.finished = true;
  sync_directory(state.path.parent_path());
}

void SafetensorsWriter::write_rest(const Metadata& metadata) {
  State& state = *state_;
  std::stable_sort(state.waiting.begin(), state.waiting.end(),
                   [](const State::Entry& a, const State::Entry& b) {
                     return layout_rank(a.tensor.dtype) < layout_rank(b.tensor.dtype);
                   });
  for (const State::Entry& entry : state.waiting) {
    write_tensor(state.file->get(), entry.name, entry.tensor, state.where, state.progress);
    state.entries[entry.name] = header_entry(entry.tensor, state.offset);
    state.offset += file_bytes(entry.tensor);
  }
  state.waiting.clear();

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  header.update(state.entries);
  std::string header_text = header.dump();
  const bool fits = header_text.size() <= state.header_room;
  header_text.append(
      fits ? state.header_room - header_text.size() : (8 - header_text.size() % 8) % 8, ' ');
  const auto length = length_field(header_text.size());
  if (fits) {
    if (::lseek(state.file->get(), 0, SEEK_SET) != 0) {
      fail<IOError>(state.where, ": cannot seek to its header: ", errno_text(errno));
    }
    write_all(state.file->get(), length.data(), length.size(), state.where, state.progress);
    write_all(state.file->get(), header_text.data(), header_text.size(), state.where,
              state.progress);
    commit(*state.file, state.temporary, state.path, state.where);
    return;
  }
  // The header outgrew its room: a second temporary file gets the header, then a copy of the
  // data.
  auto [copied, fd] = create_temporary(state.path, state.where);
  FileDescriptor file(fd);
  try {
    write_all(file.get(), length.data(), length.size(), state.where, state.progress);
    write_all(file.get(), header_text.data(), header_text.size(), state.where, state.progress);
    std::vector<char> buffer(kWritePiece);
    auto from = static_cast<off_t>(8 + state.header_room);
    for (std::int64_t left = state.offset; left > 0;) {
      const ssize_t got = ::pread(state.file->get(), buffer.data(),
                                  std::min<std::size_t>(buffer.size(), left), from);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fail<IOError>(state.where, ": cannot read back its data: ",
                      got == 0 ? std::string("the file ended early") : errno_text(errno));
      }
      write_all(file.get(), buffer.data(), static_cast<std::size_t>(got), state.where,
                state.progress);
      from += got;
      left -= got;
    }
    commit(file, copied, state.path, state.where);
  } catch (...) {
    ::unlink(copied.c_str());
    throw;
  }
  state.file.reset();
  ::unlink(state.temporary.c_str());
}

void save(const std::filesystem::path& path, const std::map<std::string, Array>& tensors,
          const Metadata& metadata, const WritePoll& poll) {
  std::map<std::string, StoredTensor> stored;
  for (const auto& [name, array] : tensors) {
    stored.emplace(name, StoredTensor{array, safetensors_dtype_for(array.dtype())});
  }
  save(path, stored, metadata, poll);
}

}  // namespace breccia::io
