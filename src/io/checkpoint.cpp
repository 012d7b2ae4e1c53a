#include "breccia/io/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/numerics.hpp"
#include "breccia/plan.hpp"
#include "core/strict_json.hpp"

namespace breccia::io {
namespace {

// compressed-tensors packs INT4 into int32 words whose little-endian bytes are breccia's packed
// bytes; reading the words as bytes relies on the host order matching the file's.
static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");

using Json = nlohmann::json;

constexpr std::string_view kScale = ".scale";
constexpr std::string_view kGlobalScale = ".global_scale";
constexpr std::string_view kZeroPoint = ".zero_point";

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string without_suffix(std::string_view text, std::string_view suffix) {
  return std::string(text.substr(0, text.size() - suffix.size()));
}

StoredTensor stored(const Array& array, SafetensorsDType dtype) {
  const std::optional<DType> expected = array_dtype_for(dtype);
  return {array.dtype() == *expected ? array : array.viewed_as(*expected), dtype};
}

bool is_fp8(SafetensorsDType dtype) {
  return dtype == SafetensorsDType::kF8E4M3 || dtype == SafetensorsDType::kF8E5M2;
}

Fp8Format fp8_format_of(SafetensorsDType dtype) {
  return dtype == SafetensorsDType::kF8E5M2 ? Fp8Format::kE5M2 : Fp8Format::kE4M3;
}

SafetensorsDType fp8_file_dtype(Fp8Format format) {
  return format == Fp8Format::kE5M2 ? SafetensorsDType::kF8E5M2 : SafetensorsDType::kF8E4M3;
}

// A fresh fp32 array holding `array`'s values (F16/BF16/F32 codes, exactly converted).
// The dtype is checked before any element is read: a one-byte array read as 16-bit codes
// would run past its end.
Array to_f32(const Array& array, const std::string& where) {
  if (array.dtype() == DType::kF32) return array;
  if (array.dtype() != DType::kF16 && array.dtype() != DType::kBF16) {
    fail<ValueError>(where, ": expected an F32, F16 or BF16 scale, got ",
                     dtype_name(array.dtype()));
  }
  const Array in = array.contiguous();
  Array out = Array::empty(DType::kF32, in.shape());
  auto* values = out.data_as<float>();
  const auto* codes = in.data_as<const std::uint16_t>();
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    values[i] = in.dtype() == DType::kF16 ? formats::F16::decode(codes[i])
                                          : formats::BF16::decode(codes[i]);
  }
  return out;
}

float only_value(const Array& array) {
  return array.contiguous().data_as<const float>()[0];
}

Array scalar_f32(float value) {
  Array out = Array::empty(DType::kF32, {});
  out.data_as<float>()[0] = value;
  return out;
}

// The tensors of one checkpoint (one file, or the shards of a model read as one) as the
// conventions consume them.
class FileTensors {
 public:
  FileTensors(SafetensorsFile file, std::string where) : where_(std::move(where)) {
    for (auto& [name, tensor] : file.tensors) origin_.emplace(name, 0);
    file_ = std::move(file);
  }
  // Shards, each with its file name; a tensor name in two shards is a ValueError.
  FileTensors(std::vector<std::pair<SafetensorsFile, std::string>> shards, std::string where)
      : where_(std::move(where)) {
    for (std::size_t index = 0; index < shards.size(); ++index) {
      auto& [file, shard] = shards[index];
      shard_names_.push_back(shard);
      for (auto& [name, tensor] : file.tensors) {
        const auto [at, fresh] = origin_.emplace(name, index);
        if (!fresh) {
          fail<ValueError>(where_, ": tensor '", name, "' is in both '", shard_names_[at->second],
                           "' and '", shard, "'");
        }
        file_.tensors.emplace(name, std::move(tensor));
      }
      shard_metadata_.push_back(std::move(file.metadata));
    }
  }

  const std::string& where() const { return where_; }
  // The metadata of a single file, or of the first shard.
  const Metadata& metadata() const {
    return shard_metadata_.empty() ? file_.metadata : shard_metadata_.front();
  }
  // Every shard's metadata (one entry for a single file).
  std::vector<Metadata> all_metadata() const {
    return shard_metadata_.empty() ? std::vector<Metadata>{file_.metadata} : shard_metadata_;
  }
  // The file name holding `name` ("" for a single file).
  std::string shard_of(const std::string& name) const {
    return shard_names_.empty() ? std::string() : shard_names_[origin_.at(name)];
  }
  std::vector<std::string> names() const {
    std::vector<std::string> names;
    for (const auto& [name, tensor] : file_.tensors) names.push_back(name);
    return names;
  }
  bool has(const std::string& name) const {
    return file_.tensors.contains(name) && !consumed_.contains(name);
  }
  const StoredTensor& peek(const std::string& name) const { return file_.tensors.at(name); }
  // Marks `name` as part of a ScaledTensor; ValueError when the file has no such tensor.
  const StoredTensor& take(const std::string& name, const std::string& needed_by) {
    if (!has(name)) {
      fail<ValueError>(where_, ": ", needed_by, " needs a tensor '", name,
                       "', which the file does not have");
    }
    consumed_.insert(name);
    taken_.push_back(name);
    return file_.tensors.at(name);
  }
  std::optional<StoredTensor> take_if_present(const std::string& name) {
    if (!has(name)) return std::nullopt;
    consumed_.insert(name);
    taken_.push_back(name);
    return file_.tensors.at(name);
  }
  // The names taken since `mark` (a value of taken_count()).
  std::size_t taken_count() const { return taken_.size(); }
  std::vector<std::string> taken_since(std::size_t mark) const {
    return {taken_.begin() + static_cast<std::ptrdiff_t>(mark), taken_.end()};
  }
  // What no ScaledTensor consumed, as plain arrays.
  void add_rest(Checkpoint& checkpoint) const {
    for (const auto& [name, tensor] : file_.tensors) {
      if (consumed_.contains(name)) continue;
      checkpoint.tensors.emplace(name, tensor.array);
      checkpoint.sources[name] = {"plain", {name}, shard_of(name)};
    }
  }

 private:
  SafetensorsFile file_;
  std::string where_;
  std::map<std::string, std::size_t> origin_;
  std::vector<std::string> shard_names_;
  std::vector<Metadata> shard_metadata_;
  std::set<std::string> consumed_;
  std::vector<std::string> taken_;
};

// Records where the entry that the stored tensors taken since `mark` make came from: the
// convention, the stored names and the file of the first of them (the data).
void record_source(const FileTensors& file, Checkpoint& checkpoint, const std::string& name,
                   std::string convention, std::size_t mark) {
  std::vector<std::string> stored = file.taken_since(mark);
  std::string shard = stored.empty() ? std::string() : file.shard_of(stored.front());
  checkpoint.sources[name] = {std::move(convention), std::move(stored), std::move(shard)};
}

void require_file_dtype(const FileTensors& file, const std::string& name,
                        const StoredTensor& tensor, std::initializer_list<SafetensorsDType> allowed,
                        std::string_view role) {
  for (const SafetensorsDType dtype : allowed) {
    if (tensor.dtype == dtype) return;
  }
  std::string expected;
  for (const SafetensorsDType dtype : allowed) {
    expected += (expected.empty() ? "" : " or ") + std::string(to_string(dtype));
  }
  fail<ValueError>(file.where(), ": tensor '", name, "' (", role, "): expected dtype ", expected,
                   ", got ", to_string(tensor.dtype));
}

// Builds the ScaledTensor, turning a constructor error into one that names the file.
ScaledTensor build(const FileTensors& file, const std::string& name, std::string_view source,
                   Array data, Array scale, const Recipe& recipe, const Layout& layout,
                   std::optional<Array> global_scale = std::nullopt,
                   std::optional<Array> zero_point = std::nullopt) {
  try {
    return ScaledTensor(std::move(data), std::move(scale), recipe, layout, std::move(global_scale),
                        std::move(zero_point));
  } catch (const std::exception& error) {
    fail<ValueError>(file.where(), ": ", source, " describes '", name, "' as ", recipe_repr(recipe),
                     " with ", layout_repr(layout),
                     ", which its stored tensors do not fit: ", error.what());
  }
}

// --- breccia's own layout ----------------------------------------------------------------

std::vector<SafetensorsDType> data_file_dtypes(ElementFormat format) {
  switch (format) {
    case ElementFormat::kE4M3:
      return {SafetensorsDType::kF8E4M3, SafetensorsDType::kU8};
    case ElementFormat::kE5M2:
      return {SafetensorsDType::kF8E5M2, SafetensorsDType::kU8};
    case ElementFormat::kE2M1:
      return {SafetensorsDType::kF4, SafetensorsDType::kU8};
    case ElementFormat::kE2M3:  // bit-packed in the file, one code per byte in memory
      return {SafetensorsDType::kF6E2M3, SafetensorsDType::kU8};
    case ElementFormat::kE3M2:
      return {SafetensorsDType::kF6E3M2, SafetensorsDType::kU8};
    default:
      return {SafetensorsDType::kU8};
  }
}

void load_breccia_entries(FileTensors& file, const std::string& json_text, Checkpoint& checkpoint) {
  const std::string source = "metadata '" + std::string(kBrecciaMetadataKey) + "'";
  const Json entries = detail::parse_strict_json<Json>(json_text, file.where() + ": " + source);
  if (!entries.is_object()) {
    fail<ValueError>(file.where(), ": ", source, ": expected a JSON object of tensor names, got ",
                     entries.type_name());
  }
  for (const auto& [name, entry] : entries.items()) {
    const std::string what = source + " entry '" + name + "'";
    if (!entry.is_object() || entry.size() != 2 || !entry.contains("recipe") ||
        !entry.contains("layout") || !entry["recipe"].is_object() || !entry["layout"].is_object()) {
      fail<ValueError>(file.where(), ": ", what,
                       ": expected {\"recipe\": {...}, \"layout\": {...}}, got ", entry.dump());
    }
    Recipe recipe;
    Layout layout;
    try {
      recipe = recipe_from_json(entry["recipe"].dump());
      validate(recipe);
      layout = layout_from_json(entry["layout"].dump());
      validate(layout);
    } catch (const std::exception& error) {
      fail<ValueError>(file.where(), ": ", what, ": ", error.what());
    }
    const std::size_t mark = file.taken_count();
    const StoredTensor data = file.take(name, what);
    const std::vector<SafetensorsDType> allowed = data_file_dtypes(spec_of(recipe).element);
    if (std::find(allowed.begin(), allowed.end(), data.dtype) == allowed.end()) {
      fail<ValueError>(file.where(), ": ", what, ": ", recipe_repr(recipe),
                       " data cannot be stored as ", to_string(data.dtype), " (tensor '", name,
                       "')");
    }
    // Each companion under the one dtype save_checkpoint writes for it: bytes stored as
    // another type are a structural lie, however the arrays could be reinterpreted.
    const std::string scale_name = name + std::string(kScale);
    const StoredTensor scale = file.take(scale_name, what);
    const SafetensorsDType scale_dtype = safetensors_dtype_for(spec_of(recipe).scale_dtype);
    if (scale.dtype != scale_dtype) {
      fail<ValueError>(file.where(), ": ", what, ": ", recipe_repr(recipe), " stores its scale as ",
                       to_string(scale_dtype), ", got tensor '", scale_name, "' as ",
                       to_string(scale.dtype));
    }
    std::optional<Array> global_scale;
    if (auto stored = file.take_if_present(name + std::string(kGlobalScale))) {
      require_file_dtype(file, name + std::string(kGlobalScale), *stored, {SafetensorsDType::kF32},
                         "global_scale");
      global_scale = stored->array;
    }
    std::optional<Array> zero_point;
    if (auto stored = file.take_if_present(name + std::string(kZeroPoint))) {
      require_file_dtype(file, name + std::string(kZeroPoint), *stored, {SafetensorsDType::kU8},
                         "zero_point");
      zero_point = stored->array;
    }
    checkpoint.tensors.emplace(name, build(file, name, source, data.array, scale.array, recipe,
                                           layout, global_scale, zero_point));
    record_source(file, checkpoint, name, "breccia", mark);
  }
}

SafetensorsDType scale_file_dtype(const ScaledTensor& tensor) {
  // The scale's logical format decides, whatever dtype holds its bytes.
  return safetensors_dtype_for(tensor.spec().scale_dtype);
}

SafetensorsDType data_file_dtype(const ScaledTensor& tensor) {
  return data_file_dtypes(tensor.spec().element).front();
}

// --- conventions: reading ---------------------------------------------------------------

constexpr std::int64_t kDeepSeekBlock = 128;

void load_deepseek_v3(FileTensors& file, const std::string& name,
                      std::map<std::string, CheckpointEntry>& tensors) {
  const std::string source = "DeepSeek-V3 weight_scale_inv";
  const std::string scale_name = name + "_scale_inv";
  const StoredTensor data = file.take(name, source + " '" + scale_name + "'");
  const StoredTensor scale = file.take(scale_name, source);
  require_file_dtype(file, name, data, {SafetensorsDType::kF8E4M3, SafetensorsDType::kF8E5M2},
                     "DeepSeek-V3 FP8 weight");
  require_file_dtype(file, scale_name, scale, {SafetensorsDType::kF32}, "DeepSeek-V3 scale");
  const Recipe recipe = Float8BlockScaling{.fp8_format = fp8_format_of(data.dtype),
                                           .block_k = kDeepSeekBlock,
                                           .block_m = kDeepSeekBlock,
                                           .power_2_scale = false};
  tensors.emplace(name, build(file, name, source, data.array, scale.array, recipe,
                              PerBlockMN{kDeepSeekBlock, kDeepSeekBlock}));
}

// E8M0 codes (one byte each) as fp32 values, exactly: code c is 2^(c - 127), 0xFF NaN.
Array e8m0_to_f32(const Array& codes) {
  const Array in = codes.contiguous();
  Array out = Array::empty(DType::kF32, in.shape());
  const auto* from = in.data_as<const std::uint8_t>();
  auto* to = out.data_as<float>();
  for (std::int64_t i = 0; i < in.numel(); ++i) to[i] = formats::E8M0::decode(from[i]);
  return out;
}

// The square block (128, 64 or 32: DeepSeek-V4 uses 128, V4.1 32) whose grid over `shape` is
// `scale_shape`, or 0.
std::int64_t square_block_of(const Shape& shape, const Shape& scale_shape) {
  if (shape.size() != 2 || scale_shape.size() != 2) return 0;
  for (const std::int64_t block : {kDeepSeekBlock, std::int64_t{64}, std::int64_t{32}}) {
    if (scale_shape == Shape{(shape[0] + block - 1) / block, (shape[1] + block - 1) / block}) {
      return block;
    }
  }
  return 0;
}

// DeepSeek-V4: `<p>.weight` F8_E4M3 with `<p>.scale` E8M0 (or, in the FP8-expert "Base"
// checkpoints, F32) per square block, and routed experts as `<p>.weight` I8 [N, K/2] (E2M1
// pairs, low nibble first) with `<p>.scale` E8M0 [N, K/32]: MXFP4, read without a copy. E8M0
// block scales become the fp32 powers of two of Float8BlockScaling(power_2_scale=True).
void load_deepseek_v4(FileTensors& file, const std::string& prefix, Checkpoint& checkpoint) {
  const std::string name = prefix + ".weight";
  const std::string scale_name = prefix + ".scale";
  const std::string source = "DeepSeek-V4 '" + name + "' / '" + scale_name + "'";
  const StoredTensor data = file.take(name, source);
  const StoredTensor scale = file.take(scale_name, source);
  if (data.dtype == SafetensorsDType::kI8) {
    require_file_dtype(file, scale_name, scale, {SafetensorsDType::kF8E8M0, SafetensorsDType::kU8},
                       "E8M0 scales of FP4 experts");
    checkpoint.tensors.emplace(
        name, build(file, name, source, data.array.viewed_as(DType::kU8),
                    scale.array.viewed_as(DType::kE8M0), MXFP4BlockScaling{}, PerBlockMN{1, 32}));
    return;
  }
  require_file_dtype(file, scale_name, scale, {SafetensorsDType::kF8E8M0, SafetensorsDType::kF32},
                     "FP8 block scales");
  const std::int64_t block = square_block_of(data.array.shape(), scale.array.shape());
  if (block == 0) {
    fail<ValueError>(file.where(), ": tensor '", scale_name,
                     "': expected one scale per 128x128 (or 64x64, 32x32) block of weight ",
                     shape_str(data.array.shape()), ", got shape ", shape_str(scale.array.shape()));
  }
  const bool e8m0 = scale.dtype == SafetensorsDType::kF8E8M0;
  const Recipe recipe = Float8BlockScaling{.fp8_format = fp8_format_of(data.dtype),
                                           .block_k = block,
                                           .block_m = block,
                                           .power_2_scale = e8m0};
  checkpoint.tensors.emplace(
      name, build(file, name, source, data.array, e8m0 ? e8m0_to_f32(scale.array) : scale.array,
                  recipe, PerBlockMN{block, block}));
}

// NVFP4 as compressed-tensors (global scale G encodes: breccia's is 1/G) or ModelOpt
// (weight_scale_2 decodes, as breccia's).
void load_nvfp4(FileTensors& file, const std::string& name, const std::string& data_name,
                const std::string& global_name, bool global_is_encode, Checkpoint& checkpoint) {
  const std::string source =
      global_is_encode ? "compressed-tensors nvfp4-pack-quantized" : "ModelOpt NVFP4";
  const StoredTensor data = file.take(data_name, source);
  const StoredTensor scale = file.take(name + "_scale", source);
  const StoredTensor global = file.take(global_name, source);
  require_file_dtype(file, data_name, data, {SafetensorsDType::kU8, SafetensorsDType::kF4},
                     "packed E2M1 pairs");
  require_file_dtype(file, name + "_scale", scale, {SafetensorsDType::kF8E4M3},
                     "E4M3 block scales");
  require_file_dtype(file, global_name, global, {SafetensorsDType::kF32}, "per-tensor scale");
  if (global.array.numel() != 1) {
    fail<ValueError>(file.where(), ": tensor '", global_name,
                     "' (per-tensor scale): expected one element, got shape ",
                     shape_str(global.array.shape()));
  }
  Array global_scale = global.array.reshaped({});
  if (global_is_encode) {
    const float encode = only_value(global.array);
    global_scale = scalar_f32(1.0f / encode);
    checkpoint.encode_global_scales[name] = encode;
  }
  checkpoint.tensors.emplace(name, build(file, name, source, data.array, scale.array,
                                         NVFP4BlockScaling{}, PerBlockMN{1, 16}, global_scale));
}

// OpenAI gpt-oss MXFP4: `<name>_blocks` U8 (..., G, 16), 32 E2M1 codes a group two per byte,
// low nibble first (breccia's packing), and `<name>_scales` U8 (..., G), E8M0 (bias 127): MXFP4
// along the last axis of a (..., G * 32) tensor, read without a copy.
void load_gpt_oss(FileTensors& file, const std::string& name, Checkpoint& checkpoint) {
  const std::string source = "gpt-oss MXFP4 '" + name + "_blocks' / '" + name + "_scales'";
  const StoredTensor blocks = file.take(name + "_blocks", source);
  const StoredTensor scales = file.take(name + "_scales", source);
  require_file_dtype(file, name + "_blocks", blocks, {SafetensorsDType::kU8}, "packed E2M1 blocks");
  require_file_dtype(file, name + "_scales", scales, {SafetensorsDType::kU8}, "E8M0 scales");
  const Shape& shape = blocks.array.shape();
  if (shape.size() < 3 || shape.back() != 16 ||
      Shape(shape.begin(), shape.end() - 1) != scales.array.shape()) {
    fail<ValueError>(file.where(), ": ", source,
                     ": expected blocks (..., G, 16) of at least 3 "
                     "dimensions and scales (..., G), got ",
                     shape_str(shape), " and ", shape_str(scales.array.shape()));
  }
  Shape data_shape(shape.begin(), shape.end() - 2);
  data_shape.push_back(shape[shape.size() - 2] * 16);
  checkpoint.tensors.emplace(
      name, build(file, name, source, blocks.array.reshaped(data_shape),
                  scales.array.viewed_as(DType::kE8M0), MXFP4BlockScaling{}, PerBlockMN{1, 32}));
}

// compressed-tensors mxfp4-pack-quantized: `<name>_packed` U8 [N, K/2] (low nibble = even
// column) and `<name>_scale` U8 [N, K/32], E8M0 (bias 127), no global scale; zero-copy.
void load_compressed_mxfp4(FileTensors& file, const std::string& name, Checkpoint& checkpoint) {
  const std::string source = "compressed-tensors mxfp4-pack-quantized";
  const StoredTensor data = file.take(name + "_packed", source);
  const StoredTensor scale = file.take(name + "_scale", source);
  require_file_dtype(file, name + "_packed", data, {SafetensorsDType::kU8}, "packed E2M1 pairs");
  require_file_dtype(file, name + "_scale", scale, {SafetensorsDType::kU8}, "E8M0 scales");
  checkpoint.tensors.emplace(
      name, build(file, name, source, data.array, scale.array.viewed_as(DType::kE8M0),
                  MXFP4BlockScaling{}, PerBlockMN{1, 32}));
}

// compressed-tensors' int32 words (eight nibbles per word along a row, low end first) of a
// [rows, cols] nibble matrix -> breccia's packed bytes [rows, cols / 2], each XORed with `flip`.
Array unpack_words_to_pairs(const Array& words, std::int64_t rows, std::int64_t cols,
                            std::uint8_t flip) {
  const Array in = words.contiguous();
  const std::int64_t words_per_row = in.dim(-1);
  Array out = Array::empty(DType::kU8, {rows, cols / 2});
  const auto* bytes = in.data_as<const std::uint8_t>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < cols / 2; ++b) {
      to[r * (cols / 2) + b] = bytes[r * words_per_row * 4 + b] ^ flip;
    }
  }
  return out;
}

void load_compressed_int4(FileTensors& file, const std::string& name,
                          std::map<std::string, CheckpointEntry>& tensors) {
  const std::string source = "compressed-tensors pack-quantized";
  const std::string packed_name = name + "_packed";
  if (file.has(name + "_g_idx")) {
    fail<UnsupportedError>(file.where(), ": tensor '", name,
                           "_g_idx': compressed-tensors act-order (g_idx) permutes the groups, "
                           "which breccia's INT4Scaling does not model");
  }
  const StoredTensor packed = file.take(packed_name, source);
  const StoredTensor shape_tensor = file.take(name + "_shape", source);
  const StoredTensor scale = file.take(name + "_scale", source);
  const std::optional<StoredTensor> zero_point = file.take_if_present(name + "_zero_point");
  require_file_dtype(file, packed_name, packed, {SafetensorsDType::kI32}, "int32 words");
  require_file_dtype(file, name + "_shape", shape_tensor,
                     {SafetensorsDType::kI32, SafetensorsDType::kI64}, "logical shape");
  require_file_dtype(file, name + "_scale", scale,
                     {SafetensorsDType::kF16, SafetensorsDType::kBF16, SafetensorsDType::kF32},
                     "group scales");
  if (packed.array.ndim() != 2 || shape_tensor.array.numel() != 2 || scale.array.ndim() != 2) {
    fail<ValueError>(file.where(), ": '", name,
                     "': expected 2-D weight_packed and weight_scale "
                     "and a 2-element weight_shape, got shapes ",
                     shape_str(packed.array.shape()), ", ", shape_str(scale.array.shape()), " and ",
                     shape_str(shape_tensor.array.shape()));
  }
  const Array shape_values = shape_tensor.array.contiguous();
  auto dim = [&](int i) -> std::int64_t {
    return shape_tensor.dtype == SafetensorsDType::kI32
               ? shape_values.data_as<const std::int32_t>()[i]
               : shape_values.data_as<const std::int64_t>()[i];
  };
  const std::int64_t rows = dim(0);
  const std::int64_t cols = dim(1);
  const std::int64_t groups = scale.array.dim(1);
  if (rows < 0 || rows != packed.array.dim(0) || cols <= 0 || cols % 2 != 0 ||
      packed.array.dim(1) != (cols + 7) / 8 || scale.array.dim(0) != rows || groups <= 0 ||
      cols % groups != 0) {
    fail<ValueError>(file.where(), ": '", name, "': weight_shape (", rows, ", ", cols,
                     ") does not fit weight_packed ", shape_str(packed.array.shape()),
                     " (expected (rows, ceil(cols/8)) with an even cols) and weight_scale ",
                     shape_str(scale.array.shape()), " (expected (rows, groups dividing cols))");
  }
  const bool per_channel = groups == 1;
  const INT4Scaling recipe{
      .group_size = per_channel ? -1 : cols / groups,
      .is_signed = !zero_point.has_value(),
      .scale_dtype = scale.dtype == SafetensorsDType::kF16    ? Int4ScaleDType::kF16
                     : scale.dtype == SafetensorsDType::kBF16 ? Int4ScaleDType::kBF16
                                                              : Int4ScaleDType::kF32};
  const Layout layout = per_channel ? Layout{PerChannel{}} : Layout{PerBlockK{cols / groups}};
  // Stored nibbles are q + 8 for signed codes: flipping bit 3 gives the two's complement nibble.
  Array data = unpack_words_to_pairs(packed.array, rows, cols, recipe.is_signed ? 0x88 : 0x00);
  std::optional<Array> zero_points;
  if (zero_point) {
    require_file_dtype(file, name + "_zero_point", *zero_point, {SafetensorsDType::kI32},
                       "zero points packed along rows");
    if (zero_point->array.ndim() != 2 || zero_point->array.dim(0) != (rows + 7) / 8 ||
        zero_point->array.dim(1) != groups) {
      fail<ValueError>(file.where(), ": '", name, "_zero_point': expected shape (", (rows + 7) / 8,
                       ", ", groups, "), got ", shape_str(zero_point->array.shape()));
    }
    const Array words = zero_point->array.contiguous();
    Array unpacked = Array::empty(DType::kU8, {rows, groups});
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t g = 0; g < groups; ++g) {
        const auto word =
            static_cast<std::uint32_t>(words.data_as<const std::int32_t>()[(r / 8) * groups + g]);
        unpacked.data_as<std::uint8_t>()[r * groups + g] = (word >> (4 * (r % 8))) & 0xF;
      }
    }
    zero_points = unpacked;
  }
  tensors.emplace(name, build(file, name, source, data, scale.array, recipe, layout, std::nullopt,
                              zero_points));
}

// FP8 weight + weight_scale (compressed-tensors or ModelOpt): per tensor, per channel or per
// 128 x 128 block, told apart by the scale's shape (ModelOpt's channel scales are [N], its block
// scales [N/128, 1, K/128, 1]); ModelOpt's MXFP8 has U8 (E8M0) scales [N, K/32].
void load_fp8_with_scale(FileTensors& file, const std::string& name,
                         std::map<std::string, CheckpointEntry>& tensors) {
  const std::string source = "FP8 weight_scale";
  const StoredTensor data = file.take(name, source);
  const StoredTensor scale_stored = file.take(name + "_scale", source);
  const Fp8Format format = fp8_format_of(data.dtype);
  const Shape& shape = data.array.shape();
  if (scale_stored.dtype == SafetensorsDType::kU8 ||
      scale_stored.dtype == SafetensorsDType::kF8E8M0) {
    tensors.emplace(name, build(file, name, "ModelOpt MXFP8", data.array,
                                scale_stored.array.viewed_as(DType::kE8M0),
                                MXFP8BlockScaling{.fp8_format = format}, PerBlockMN{1, 32}));
    return;
  }
  Array scale = to_f32(scale_stored.array, file.where() + ": tensor '" + name + "_scale'");
  if (shape.size() == 2 && scale.ndim() == 4 && scale.dim(1) == 1 && scale.dim(3) == 1) {
    scale = scale.reshaped({scale.dim(0), scale.dim(2)});  // ModelOpt FP8_PB_WO
  }
  if (shape.size() == 2 && scale.ndim() == 1 && scale.numel() > 1) {
    scale = scale.reshaped({scale.numel(), 1});  // ModelOpt FP8_PER_CHANNEL_PER_TOKEN
  }
  const Shape& scale_shape = scale.shape();
  if (scale.numel() == 1 && scale.ndim() <= 1) {
    tensors.emplace(name, build(file, name, source, data.array, scale,
                                Float8CurrentScaling{.fp8_format = format}, PerTensor{}));
    return;
  }
  if (shape.size() == 2 && scale_shape == Shape{shape[0], 1}) {
    tensors.emplace(name, build(file, name, source, data.array, scale,
                                Float8CurrentScaling{.fp8_format = format}, PerChannel{}));
    return;
  }
  if (shape.size() == 2 && scale_shape == Shape{(shape[0] + kDeepSeekBlock - 1) / kDeepSeekBlock,
                                                (shape[1] + kDeepSeekBlock - 1) / kDeepSeekBlock}) {
    const Recipe recipe = Float8BlockScaling{.fp8_format = format,
                                             .block_k = kDeepSeekBlock,
                                             .block_m = kDeepSeekBlock,
                                             .power_2_scale = false};
    tensors.emplace(name, build(file, name, source, data.array, scale, recipe,
                                PerBlockMN{kDeepSeekBlock, kDeepSeekBlock}));
    return;
  }
  fail<ValueError>(file.where(), ": tensor '", name,
                   "_scale': expected a per-tensor [1], "
                   "per-channel [rows, 1] or 128x128-block scale for weight ",
                   shape_str(shape), ", got ", shape_str(scale_shape));
}

// compressed-tensors and ModelOpt both store FP8 as `x` + `x_scale`, told apart by the scale:
// ModelOpt's is 0-d per tensor, [N] per channel, [N/128, 1, K/128, 1] per block and U8 for MXFP8;
// compressed-tensors' [1], [N, 1] and [N/128, K/128].
std::string fp8_scale_convention(const FileTensors& file, const std::string& name) {
  const StoredTensor& scale = file.peek(name + "_scale");
  const bool modelopt = scale.array.ndim() == 0 || scale.array.ndim() == 4 ||
                        (scale.array.ndim() == 1 && scale.array.numel() > 1) ||
                        scale.dtype == SafetensorsDType::kU8 ||
                        scale.dtype == SafetensorsDType::kF8E8M0;
  return modelopt ? "modelopt" : "compressed-tensors";
}

bool is_deepseek_v4_weight(const StoredTensor& weight) {
  return is_fp8(weight.dtype) || weight.dtype == SafetensorsDType::kI8;
}

void load_conventions(FileTensors& file, Checkpoint& checkpoint) {
  // The distinctive companions first, then FP8 `_scale`, which several conventions share.
  for (const std::string& name : file.names()) {
    if (!file.has(name)) continue;
    const std::size_t mark = file.taken_count();
    if (ends_with(name, "_scale_inv") && file.has(without_suffix(name, "_scale_inv"))) {
      const std::string base = without_suffix(name, "_scale_inv");
      load_deepseek_v3(file, base, checkpoint.tensors);
      record_source(file, checkpoint, base, "deepseek-v3", mark);
    } else if (ends_with(name, ".scale") && file.has(without_suffix(name, ".scale") + ".weight") &&
               is_deepseek_v4_weight(file.peek(without_suffix(name, ".scale") + ".weight"))) {
      const std::string prefix = without_suffix(name, ".scale");
      load_deepseek_v4(file, prefix, checkpoint);
      record_source(file, checkpoint, prefix + ".weight", "deepseek-v4", mark);
    } else if (ends_with(name, "_global_scale") &&
               file.has(without_suffix(name, "_global_scale") + "_packed")) {
      const std::string base = without_suffix(name, "_global_scale");
      load_nvfp4(file, base, base + "_packed", name, true, checkpoint);
      record_source(file, checkpoint, base, "compressed-tensors", mark);
    } else if (ends_with(name, "_scale_2") && file.has(without_suffix(name, "_scale_2"))) {
      const std::string base = without_suffix(name, "_scale_2");
      load_nvfp4(file, base, base, name, false, checkpoint);
      record_source(file, checkpoint, base, "modelopt", mark);
    } else if (ends_with(name, "_blocks") &&
               file.has(without_suffix(name, "_blocks") + "_scales")) {
      const std::string base = without_suffix(name, "_blocks");
      load_gpt_oss(file, base, checkpoint);
      record_source(file, checkpoint, base, "gpt-oss", mark);
    } else if (ends_with(name, "_packed") && file.has(without_suffix(name, "_packed") + "_shape")) {
      const std::string base = without_suffix(name, "_packed");
      load_compressed_int4(file, base, checkpoint.tensors);
      record_source(file, checkpoint, base, "compressed-tensors", mark);
    } else if (ends_with(name, "_packed") && file.has(without_suffix(name, "_packed") + "_scale") &&
               file.peek(name).dtype == SafetensorsDType::kU8 &&
               file.peek(without_suffix(name, "_packed") + "_scale").dtype ==
                   SafetensorsDType::kU8) {
      // NVFP4's `_packed` has an E4M3 `_scale` and a `_global_scale` (taken above).
      const std::string base = without_suffix(name, "_packed");
      load_compressed_mxfp4(file, base, checkpoint);
      record_source(file, checkpoint, base, "compressed-tensors", mark);
    }
  }
  for (const std::string& name : file.names()) {
    if (!file.has(name) || !ends_with(name, "_scale")) continue;
    const std::string base = without_suffix(name, "_scale");
    if (file.has(base) && is_fp8(file.peek(base).dtype)) {
      const std::string convention = fp8_scale_convention(file, base);
      const std::size_t mark = file.taken_count();
      load_fp8_with_scale(file, base, checkpoint.tensors);
      record_source(file, checkpoint, base, convention, mark);
    }
  }
}

// --- conventions: writing ---------------------------------------------------------------

class Writer {
 public:
  void add(const std::string& name, StoredTensor tensor) {
    if (!tensors_.emplace(name, std::move(tensor)).second) {
      fail<ValueError>("tensors: two entries would both be written as '", name, "'");
    }
  }
  const std::map<std::string, StoredTensor>& tensors() const { return tensors_; }

 private:
  std::map<std::string, StoredTensor> tensors_;
};

[[noreturn]] void cannot_express(const std::string& name, const ScaledTensor& tensor,
                                 Convention convention, std::string_view supported) {
  fail<ValueError>("tensors['", name, "']: the ", to_string(convention), " convention stores ",
                   supported, "; got ", recipe_repr(tensor.recipe()), " with ",
                   layout_repr(tensor.layout()), " over shape ", shape_str(tensor.logical_shape()));
}

bool is_per_tensor_fp8(const RecipeSpec& spec) {
  return spec.family == RuleFamily::kFp8 && spec.per_tensor;
}

// DeepSeek-V3's weights: FP8 with one fp32 scale per 128 x 128 tile.
bool is_block_128(const ScaledTensor& tensor) {
  return tensor.spec().family == RuleFamily::kFp8 &&
         tensor.layout() == Layout{PerBlockMN{kDeepSeekBlock, kDeepSeekBlock}};
}

bool is_rowwise_nvfp4(const ScaledTensor& tensor) {
  return tensor.spec().family == RuleFamily::kNvfp4 && tensor.layout() == Layout{PerBlockMN{1, 16}};
}

Fp8Format fp8_format(const ScaledTensor& tensor) {
  return tensor.spec().element == ElementFormat::kE5M2 ? Fp8Format::kE5M2 : Fp8Format::kE4M3;
}

Array global_scale_as(const ScaledTensor& tensor, Shape shape) {
  return tensor.global_scale()->contiguous().reshaped(std::move(shape));
}

// compressed-tensors' encode factor for `tensor`: the one read from the file while it still
// decodes to the tensor's global_scale, else the fp32 reciprocal.
float encode_global_scale(const std::string& name, const ScaledTensor& tensor,
                          const std::map<std::string, float>& read) {
  const float decode = only_value(*tensor.global_scale());
  const auto found = read.find(name);
  if (found != read.end() &&
      std::bit_cast<std::uint32_t>(1.0f / found->second) == std::bit_cast<std::uint32_t>(decode)) {
    return found->second;
  }
  return 1.0f / decode;
}

// breccia's packed INT4 bytes -> compressed-tensors' int32 words, `flip` turning two's
// complement nibbles into q + 8; words past the row's end are zero.
Array pack_words(const Array& data, std::uint8_t flip) {
  const Array in = data.contiguous();
  const std::int64_t rows = in.dim(0);
  const std::int64_t row_bytes = in.dim(1);
  const std::int64_t words_per_row = (row_bytes * 2 + 7) / 8;
  Array out = Array::zeros(DType::kI32, {rows, words_per_row});
  auto* bytes = out.data_as<std::uint8_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < row_bytes; ++b) {
      bytes[r * words_per_row * 4 + b] = in.data_as<const std::uint8_t>()[r * row_bytes + b] ^ flip;
    }
  }
  return out;
}

Array pack_zero_points(const Array& zero_point) {
  const Array in = zero_point.contiguous();
  const std::int64_t rows = in.dim(0);
  const std::int64_t groups = in.dim(1);
  Array out = Array::zeros(DType::kI32, {(rows + 7) / 8, groups});
  auto* words = out.data_as<std::int32_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::uint32_t nibble = in.data_as<const std::uint8_t>()[r * groups + g] & 0xF;
      auto& word = words[(r / 8) * groups + g];
      word = static_cast<std::int32_t>(static_cast<std::uint32_t>(word) | nibble << (4 * (r % 8)));
    }
  }
  return out;
}

void write_compressed_tensors(const std::string& name, const ScaledTensor& tensor,
                              const SaveOptions& options, Writer& writer) {
  constexpr std::string_view kSupported =
      "2-D NVFP4 (PerBlockMN(1, 16)), MXFP4 (PerBlockMN(1, 32)), FP8 per tensor, per channel or "
      "per 128x128 block, and INT4 with PerBlockK or PerChannel groups";
  if (tensor.ndim() != 2) cannot_express(name, tensor, options.convention, kSupported);
  const RecipeSpec& spec = tensor.spec();
  if (spec.family == RuleFamily::kMx && spec.element == ElementFormat::kE2M1 &&
      tensor.layout() == Layout{PerBlockMN{1, 32}}) {
    writer.add(name + "_packed", stored(tensor.data(), SafetensorsDType::kU8));
    writer.add(name + "_scale", stored(tensor.scale(), SafetensorsDType::kU8));
    return;
  }
  if (is_rowwise_nvfp4(tensor)) {
    writer.add(name + "_packed", stored(tensor.data(), SafetensorsDType::kU8));
    writer.add(name + "_scale", stored(tensor.scale(), SafetensorsDType::kF8E4M3));
    const float encode = encode_global_scale(name, tensor, options.encode_global_scales);
    writer.add(name + "_global_scale",
               stored(scalar_f32(encode).reshaped({1}), SafetensorsDType::kF32));
    return;
  }
  if (is_per_tensor_fp8(spec) || is_block_128(tensor)) {
    writer.add(name, stored(tensor.data(), fp8_file_dtype(fp8_format(tensor))));
    Array scale = tensor.scale();
    if (tensor.layout() == Layout{PerTensor{}}) scale = scale.contiguous().reshaped({1});
    if (tensor.layout() == Layout{PerChannel{}})
      scale = scale.contiguous().reshaped({tensor.shape()[0], 1});
    writer.add(name + "_scale", stored(scale, SafetensorsDType::kF32));
    return;
  }
  if (spec.family == RuleFamily::kInt4) {
    // Groups along each row (PerBlockK, PerBlockMN(1, g), PerChannel), not down the columns.
    if (tensor.grid().block_rows != 1) cannot_express(name, tensor, options.convention, kSupported);
    const bool is_signed = spec.element == ElementFormat::kInt4Signed;
    const std::int64_t rows = tensor.shape()[0];
    const Array scale = tensor.scale().contiguous().reshaped({rows, tensor.scale().numel() / rows});
    writer.add(name + "_packed",
               stored(pack_words(tensor.data(), is_signed ? 0x88 : 0x00), SafetensorsDType::kI32));
    writer.add(name + "_scale", stored(scale, safetensors_dtype_for(scale.dtype())));
    Array shape = Array::empty(DType::kI64, {2});
    shape.data_as<std::int64_t>()[0] = rows;
    shape.data_as<std::int64_t>()[1] = tensor.logical_shape()[1];
    writer.add(name + "_shape", stored(shape, SafetensorsDType::kI64));
    if (tensor.zero_point()) {
      writer.add(name + "_zero_point",
                 stored(pack_zero_points(tensor.zero_point()->contiguous().reshaped(scale.shape())),
                        SafetensorsDType::kI32));
    }
    return;
  }
  cannot_express(name, tensor, options.convention, kSupported);
}

// fp32 powers of two (and NaN) as E8M0 codes; ValueError naming `name` for any other value.
Array f32_to_e8m0(const std::string& name, const Array& scale) {
  const Array in = scale.contiguous();
  Array out = Array::empty(DType::kE8M0, in.shape());
  const auto* from = in.data_as<const float>();
  auto* to = out.data_as<std::uint8_t>();
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    const std::uint32_t code = formats::E8M0::encode(from[i]);
    if (std::bit_cast<std::uint32_t>(formats::E8M0::decode(code)) !=
            std::bit_cast<std::uint32_t>(from[i]) &&
        !(from[i] != from[i] && code == numerics::kE8M0Nan)) {
      fail<ValueError>("tensors['", name,
                       "']: DeepSeek-V4 stores E8M0 block scales, which hold "
                       "powers of two from 2^-127 to 2^127; scale entry ",
                       i, " is ", from[i]);
    }
    to[i] = static_cast<std::uint8_t>(code);
  }
  return out;
}

void write_deepseek_v4(const std::string& name, const ScaledTensor& tensor,
                       const SaveOptions& options, Writer& writer) {
  const RecipeSpec& spec = tensor.spec();
  const std::int64_t block = tensor.ndim() == 2 ? tensor.grid().block_rows : 0;
  const bool fp8_blocks = spec.family == RuleFamily::kFp8 && !spec.per_tensor &&
                          spec.element == ElementFormat::kE4M3 &&
                          (block == 128 || block == 64 || block == 32) &&
                          tensor.layout() == Layout{PerBlockMN{block, block}};
  const bool fp4_experts = spec.family == RuleFamily::kMx && spec.element == ElementFormat::kE2M1 &&
                           tensor.ndim() == 2 && tensor.layout() == Layout{PerBlockMN{1, 32}};
  if (!ends_with(name, ".weight") || !(fp8_blocks || fp4_experts)) {
    cannot_express(name, tensor, options.convention,
                   "2-D weights named '<p>.weight': E4M3 Float8BlockScaling with square "
                   "PerBlockMN(128, 128) (64, 32) blocks, and MXFP4 (PerBlockMN(1, 32))");
  }
  const std::string scale_name = without_suffix(name, ".weight") + ".scale";
  if (fp4_experts) {
    writer.add(name, stored(tensor.data().viewed_as(DType::kI8), SafetensorsDType::kI8));
    writer.add(scale_name, stored(tensor.scale(), SafetensorsDType::kF8E8M0));
    return;
  }
  writer.add(name, stored(tensor.data(), SafetensorsDType::kF8E4M3));
  // Power-of-two scales are E8M0, as DeepSeek-V4's; others fp32, as its FP8-expert checkpoints.
  if (spec.power_2_scale) {
    writer.add(scale_name, stored(f32_to_e8m0(name, tensor.scale()), SafetensorsDType::kF8E8M0));
  } else {
    writer.add(scale_name, stored(tensor.scale(), SafetensorsDType::kF32));
  }
}

// ModelOpt's FP8 family: per tensor (FP8, a 0-d scale), per channel
// (FP8_PER_CHANNEL_PER_TOKEN, [N]), per 128 x 128 block (FP8_PB_WO, [N/128, 1, K/128, 1]) and
// MXFP8 (U8 E8M0 scales [N, K/32]), all E4M3.
void write_modelopt_fp8(const std::string& name, const ScaledTensor& tensor,
                        const SaveOptions& options, Writer& writer) {
  const RecipeSpec& spec = tensor.spec();
  const Layout& layout = tensor.layout();
  const bool e4m3 = spec.element == ElementFormat::kE4M3 && tensor.ndim() == 2;
  const Array scale = tensor.scale().contiguous();
  const std::int64_t rows = tensor.shape()[0];
  if (e4m3 && spec.family == RuleFamily::kMx && layout == Layout{PerBlockMN{1, 32}}) {
    writer.add(name, stored(tensor.data(), SafetensorsDType::kF8E4M3));
    writer.add(name + "_scale", stored(scale, SafetensorsDType::kU8));
    return;
  }
  std::optional<Shape> scale_shape;
  if (e4m3 && is_per_tensor_fp8(spec) && layout == Layout{PerTensor{}}) scale_shape = Shape{};
  if (e4m3 && is_per_tensor_fp8(spec) && layout == Layout{PerChannel{}}) scale_shape = Shape{rows};
  if (e4m3 && is_block_128(tensor)) {
    scale_shape = Shape{scale.dim(0), 1, scale.dim(1), 1};
  }
  if (!scale_shape) {
    cannot_express(name, tensor, options.convention,
                   "2-D NVFP4 (PerBlockMN(1, 16)), MXFP8 (PerBlockMN(1, 32)) and E4M3 FP8 "
                   "weights per tensor, per channel or per 128x128 block");
  }
  writer.add(name, stored(tensor.data(), SafetensorsDType::kF8E4M3));
  writer.add(name + "_scale", stored(scale.reshaped(*scale_shape), SafetensorsDType::kF32));
}

void write_convention(const std::string& name, const ScaledTensor& tensor,
                      const SaveOptions& options, Writer& writer) {
  switch (options.convention) {
    case Convention::kDeepSeekV4:
      write_deepseek_v4(name, tensor, options, writer);
      return;
    case Convention::kDeepSeekV3:
      if (tensor.ndim() != 2 || !is_block_128(tensor) || fp8_format(tensor) != Fp8Format::kE4M3) {
        cannot_express(name, tensor, options.convention,
                       "2-D E4M3 weights as Float8BlockScaling(block_m=128, block_k=128) with "
                       "PerBlockMN(128, 128)");
      }
      writer.add(name, stored(tensor.data(), SafetensorsDType::kF8E4M3));
      writer.add(name + "_scale_inv", stored(tensor.scale(), SafetensorsDType::kF32));
      return;
    case Convention::kModelOpt:
      if (tensor.ndim() == 2 && is_rowwise_nvfp4(tensor)) {
        writer.add(name, stored(tensor.data(), SafetensorsDType::kU8));
        writer.add(name + "_scale", stored(tensor.scale(), SafetensorsDType::kF8E4M3));
        writer.add(name + "_scale_2", stored(global_scale_as(tensor, {}), SafetensorsDType::kF32));
        return;
      }
      write_modelopt_fp8(name, tensor, options, writer);
      return;
    case Convention::kCompressedTensors:
      write_compressed_tensors(name, tensor, options, writer);
      return;
    case Convention::kGptOss: {
      const Shape& logical = tensor.logical_shape();
      if (tensor.ndim() < 2 || tensor.spec().family != RuleFamily::kMx ||
          tensor.spec().element != ElementFormat::kE2M1 ||
          tensor.layout() != Layout{PerBlockMN{1, 32}} || logical.back() % 32 != 0) {
        cannot_express(name, tensor, options.convention,
                       "MXFP4 (PerBlockMN(1, 32)) tensors of two or more dimensions whose last "
                       "is a multiple of 32");
      }
      Shape blocks(logical.begin(), logical.end() - 1);
      blocks.push_back(logical.back() / 32);
      blocks.push_back(16);
      writer.add(name + "_blocks",
                 stored(tensor.data().contiguous().reshaped(blocks), SafetensorsDType::kU8));
      writer.add(name + "_scales", stored(tensor.scale().contiguous(), SafetensorsDType::kU8));
      return;
    }
    case Convention::kBreccia:
      break;
  }
}

// --- numeric anomalies -------------------------------------------------------------------

// "nan", "inf", "-inf" or the shortest usual spelling of `value`, for messages.
std::string float_text(float value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  std::ostringstream text;
  text << value;
  return text.str();
}

// Counts the entries of `array` (flat, row-major) for which `bad(value)` holds, decoding each
// from `format`; "" when none, else one message naming the count and the first offender.
template <class Bad>
std::string count_anomalies(const std::string& name, std::string_view role, const Array& array,
                            ScaleFormat format, std::string_view expected, Bad bad) {
  const Array in = array.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(in.data());
  const int width = scale_bytes(format);
  std::int64_t count = 0;
  std::int64_t first = -1;
  float first_value = 0.0f;
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    const unsigned char* at = bytes + i * width;
    float value = 0.0f;
    std::uint16_t half = 0;
    switch (format) {
      case ScaleFormat::kF32:
        std::memcpy(&value, at, sizeof value);
        break;
      case ScaleFormat::kF16:
        std::memcpy(&half, at, sizeof half);
        value = formats::F16::decode(half);
        break;
      case ScaleFormat::kBF16:
        std::memcpy(&half, at, sizeof half);
        value = formats::BF16::decode(half);
        break;
      case ScaleFormat::kE4M3:
        value = formats::E4M3::decode(*at);
        break;
      case ScaleFormat::kE8M0:
        value = formats::E8M0::decode(*at);
        break;
    }
    if (!bad(value)) continue;
    if (count++ == 0) first = i, first_value = value;
  }
  if (count == 0) return {};
  return "tensor '" + name + "' " + std::string(role) + ": expected " + std::string(expected) +
         ", got " + std::to_string(count) + " of " + std::to_string(in.numel()) +
         " entries that are not (the first, at flat index " + std::to_string(first) + ", is " +
         float_text(first_value) + ")";
}

}  // namespace

std::vector<std::string> numeric_anomalies(const std::string& name, const ScaledTensor& tensor) {
  const RecipeSpec& spec = tensor.spec();
  for (const Array* array :
       {&tensor.scale(), tensor.global_scale() ? &*tensor.global_scale() : nullptr,
        tensor.zero_point() ? &*tensor.zero_point() : nullptr}) {
    if (array != nullptr && !array->device().is_cpu()) {
      fail<DeviceError>("tensor '", name, "': numeric_anomalies reads CPU arrays, got one on ",
                        array->device());
    }
  }
  std::vector<std::string> found;
  const auto add = [&](std::string message) {
    if (!message.empty()) found.push_back(std::move(message));
  };
  switch (spec.scale) {
    case ScaleFormat::kF32:
    case ScaleFormat::kF16:
    case ScaleFormat::kBF16:  // FP8 and INT4: quantizers give positive finite decode factors
      add(count_anomalies(name, "scale", tensor.scale(), spec.scale, "finite positive scales",
                          [](float v) { return !(v > 0.0f) || std::isinf(v); }));
      break;
    case ScaleFormat::kE8M0:
      add(count_anomalies(name, "scale", tensor.scale(), spec.scale, "E8M0 scales other than NaN",
                          [](float v) { return std::isnan(v); }));
      break;
    case ScaleFormat::kE4M3:  // zero is an all-zero block's scale
      add(count_anomalies(name, "scale", tensor.scale(), spec.scale,
                          "non-negative E4M3 block scales other than NaN",
                          [](float v) { return std::isnan(v) || v < 0.0f; }));
      break;
  }
  if (const auto& global = tensor.global_scale()) {
    const Array value = global->contiguous();
    const float g = value.data_as<const float>()[0];
    if (!(g >= 0.0f) || std::isinf(g)) {
      found.push_back("tensor '" + name + "' global_scale: expected a finite non-negative " +
                      "decode factor, got " + float_text(g));
    } else if (g == 0.0f) {  // only an all-zero tensor's: every block scale is zero too
      add(count_anomalies(name, "scale", tensor.scale(), spec.scale,
                          "all-zero block scales under a global_scale of 0",
                          [](float v) { return v != 0.0f; }));
    }
  }
  if (const auto& zero_point = tensor.zero_point()) {
    const Array points = zero_point->contiguous();
    const auto* codes = points.data_as<const std::uint8_t>();
    std::int64_t count = 0;
    std::int64_t first = -1;
    for (std::int64_t i = 0; i < points.numel(); ++i) {
      if (codes[i] > 15 && count++ == 0) first = i;
    }
    if (count > 0) {
      found.push_back("tensor '" + name + "' zero_point: expected values in [0, 15], got " +
                      std::to_string(count) + " of " + std::to_string(points.numel()) +
                      " outside (the first, at flat index " + std::to_string(first) + ", is " +
                      std::to_string(codes[first]) + ")");
    }
  }
  return found;
}

Validation validation_from_string(std::string_view text, std::string_view argument) {
  if (text == "error") return Validation::kError;
  if (text == "warn") return Validation::kWarn;
  if (text == "off") return Validation::kOff;
  fail<ValueError>(argument, ": expected 'error', 'warn' or 'off', got '", text, "'");
}

std::string_view to_string(Convention convention) {
  switch (convention) {
    case Convention::kBreccia:
      return "breccia";
    case Convention::kDeepSeekV3:
      return "deepseek-v3";
    case Convention::kDeepSeekV4:
      return "deepseek-v4";
    case Convention::kCompressedTensors:
      return "compressed-tensors";
    case Convention::kModelOpt:
      return "modelopt";
    case Convention::kGptOss:
      return "gpt-oss";
  }
  return "breccia";
}

Convention convention_from_string(std::string_view text, std::string_view argument) {
  for (const Convention convention :
       {Convention::kBreccia, Convention::kDeepSeekV3, Convention::kDeepSeekV4,
        Convention::kCompressedTensors, Convention::kModelOpt, Convention::kGptOss}) {
    if (to_string(convention) == text) return convention;
  }
  fail<ValueError>(argument,
                   ": expected 'breccia', 'deepseek-v3', 'deepseek-v4', 'compressed-tensors', "
                   "'modelopt' or 'gpt-oss', got '",
                   text, "'");
}

namespace {

Checkpoint load_tensors(FileTensors& file, const CheckpointLoadOptions& options) {
  Checkpoint checkpoint;
  checkpoint.metadata = file.metadata();
  checkpoint.metadata.erase(std::string(kBrecciaMetadataKey));
  bool breccia_layout = false;
  for (const Metadata& metadata : file.all_metadata()) {
    const auto records = metadata.find(std::string(kBrecciaMetadataKey));
    if (records == metadata.end()) continue;
    load_breccia_entries(file, records->second, checkpoint);
    breccia_layout = true;
  }
  if (!breccia_layout) load_conventions(file, checkpoint);
  file.add_rest(checkpoint);
  if (options.validate == Validation::kOff) return checkpoint;
  for (const auto& [name, entry] : checkpoint.tensors) {
    const auto* tensor = std::get_if<ScaledTensor>(&entry);
    if (tensor == nullptr) continue;
    for (std::string& anomaly : numeric_anomalies(name, *tensor)) {
      if (options.validate == Validation::kError) {
        fail<ValueError>(file.where(), ": ", anomaly,
                         " (numeric anomalies are refused under validate='error'; 'warn' or "
                         "'off' loads the file as it is)");
      }
      checkpoint.anomalies.push_back(file.where() + ": " + anomaly);
    }
  }
  return checkpoint;
}

}  // namespace

Checkpoint load_checkpoint(const std::filesystem::path& path,
                           const CheckpointLoadOptions& options) {
  FileTensors file(load(path, {.copy = options.copy}), "safetensors file '" + path.string() + "'");
  return load_tensors(file, options);
}

Checkpoint load_checkpoint(const std::vector<std::filesystem::path>& shards,
                           const CheckpointLoadOptions& options, const std::string& where) {
  if (shards.empty()) fail<ValueError>(where, ": expected at least one safetensors file, got none");
  std::vector<std::pair<SafetensorsFile, std::string>> files;
  files.reserve(shards.size());
  for (const std::filesystem::path& shard : shards) {
    files.emplace_back(load(shard, {.copy = options.copy}), shard.filename().string());
  }
  FileTensors file(std::move(files), where);
  return load_tensors(file, options);
}

namespace {

// The file's metadata: the caller's, PyTorch's "format" and breccia's records.
Metadata checkpoint_metadata(const SaveOptions& options) {
  Metadata metadata = options.extra_metadata;
  // What PyTorch's safetensors writer records; transformers refuses files without it.
  metadata.try_emplace("format", "pt");
  if (metadata.contains(std::string(kBrecciaMetadataKey))) {
    fail<ValueError>("extra_metadata: the key '", kBrecciaMetadataKey,
                     "' is reserved for breccia's recipe and layout records");
  }
  return metadata;
}

// The stored tensors of one entry as the convention writes it; breccia's own layout also
// records the recipe and layout (JSON text) in `records`.
void encode_entry(const std::string& name, const CheckpointEntry& entry, const SaveOptions& options,
                  Writer& writer, Metadata& records) {
  if (const auto* array = std::get_if<Array>(&entry)) {
    writer.add(name, stored(*array, safetensors_dtype_for(array->dtype())));
    return;
  }
  const auto& tensor = std::get<ScaledTensor>(entry);
  if (options.convention != Convention::kBreccia) {
    write_convention(name, tensor, options, writer);
    return;
  }
  writer.add(name, stored(tensor.data(), data_file_dtype(tensor)));
  writer.add(name + std::string(kScale), stored(tensor.scale(), scale_file_dtype(tensor)));
  if (tensor.global_scale()) {
    writer.add(name + std::string(kGlobalScale),
               stored(*tensor.global_scale(), SafetensorsDType::kF32));
  }
  if (tensor.zero_point()) {
    writer.add(name + std::string(kZeroPoint), stored(*tensor.zero_point(), SafetensorsDType::kU8));
  }
  const Json record = {{"recipe", Json::parse(recipe_to_json(tensor.recipe()))},
                       {"layout", Json::parse(layout_to_json(tensor.layout()))}};
  records[name] = record.dump();
}

// breccia's records as one metadata value: {name: {recipe, layout}, ...}.
std::string records_text(const Metadata& records) {
  std::string text = "{";
  for (const auto& [name, record] : records) {
    if (text.size() > 1) text += ',';
    text += Json(name).dump() + ":" + record;
  }
  return text + "}";
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path,
                     const std::map<std::string, CheckpointEntry>& tensors,
                     const SaveOptions& options, const WritePoll& poll) {
  Metadata metadata = checkpoint_metadata(options);
  Writer writer;
  Metadata records;
  for (const auto& [name, entry] : tensors) encode_entry(name, entry, options, writer, records);
  if (!records.empty()) metadata[std::string(kBrecciaMetadataKey)] = records_text(records);
  save(path, writer.tensors(), metadata, poll);
}

CheckpointWriter::CheckpointWriter(const std::filesystem::path& path, SaveOptions options,
                                   std::uint64_t header_room)
    : options_((checkpoint_metadata(options), std::move(options))),  // refuses a reserved key
      file_(path, header_room) {}

void CheckpointWriter::add(const std::string& name, const CheckpointEntry& entry) {
  if (failed_) fail<ValueError>("tensors['", name, "']: an earlier entry was written in part");
  Writer writer;
  Metadata record;
  encode_entry(name, entry, options_, writer, record);
  bool written = false;
  try {
    for (const auto& [stored_name, tensor] : writer.tensors()) {
      file_.add(stored_name, tensor);
      written = true;
    }
  } catch (...) {
    failed_ = written;  // part of the entry is in the file: the file cannot be finished
    throw;
  }
  records_.merge(record);
}

void CheckpointWriter::finish() {
  if (failed_) fail<ValueError>("finish: an earlier entry was written in part");
  Metadata metadata = checkpoint_metadata(options_);
  if (!records_.empty()) metadata[std::string(kBrecciaMetadataKey)] = records_text(records_);
  file_.finish(metadata);
}

}  // namespace breccia::io
