// Whole checkpoints: a model directory (sharded safetensors files, model.safetensors.index.json,
// config.json and the tokenizer's files) or one safetensors file, read as one checkpoint,
// converted between formats and conventions, inspected and compared. The `breccia` command
// line is a front end to these calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "breccia/io/checkpoint.hpp"
#include "breccia/recipes.hpp"

namespace breccia::io {

// The files of a checkpoint.
struct ModelFiles {
  std::filesystem::path directory;                 // the model directory (a file's own directory)
  std::vector<std::filesystem::path> shards;       // the safetensors files, in the index's order
  std::optional<std::filesystem::path> index;      // model.safetensors.index.json, when present
  std::optional<std::filesystem::path> config;     // config.json, when present
  std::vector<std::filesystem::path> other_files;  // regular files beside them (tokenizer, ...)
};

inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

// `path` is a safetensors file or a model directory. A directory's shards are the files its
// index maps tensors to (each must exist, and the index must name every tensor of every shard
// and no other), or without an index its *.safetensors files. Hidden files and breccia's
// temporary files are never shards. IOError / ValueError name the path and what is wrong.
ModelFiles list_model(const std::filesystem::path& path);

// Every shard of `files` read as one checkpoint (load_checkpoint of the shards).
Checkpoint load_model(const ModelFiles& files, const CheckpointLoadOptions& options = {});

// What a conversion produces.
struct ConvertTarget {
  // bf16, fp16, fp32 (weights dequantized), fp8 (per tensor), fp8-channel, fp8-block
  // (128 x 128, DeepSeek's), mxfp8, mxfp4, nvfp4, int4.
  std::string format = "bf16";
  std::int64_t group_size = 128;                             // int4 (-1: one group per row)
  bool int4_signed = true;                                   // int4: false adds zero points
  Int4ScaleDType int4_scale_dtype = Int4ScaleDType::kBF16;   // int4
  MXScaleRounding scale_rounding = MXScaleRounding::kFloor;  // mxfp8, mxfp4
  Fp8Format fp8_format = Fp8Format::kE4M3;                   // fp8, fp8-channel, fp8-block, mxfp8
  bool power_2_scale = false;  // fp8-block: scales rounded to powers of two (deepseek-v4 sets it)
};

// The formats ConvertTarget::format accepts, in documentation order.
const std::vector<std::string>& convert_formats();
// The dtype of a high-precision target (bf16, fp16, fp32), nullopt for a quantized one.
std::optional<DType> target_dtype(const ConvertTarget& target);
// The recipe weights are cast with, nullopt for a high-precision target. ValueError naming
// `format` for an unknown format.
std::optional<Recipe> target_recipe(const ConvertTarget& target);
// The convention a format is written in unless asked otherwise: the one its serving stacks
// load (deepseek-v3 for fp8-block, compressed-tensors for fp8, fp8-channel, nvfp4, mxfp4 and
// int4, breccia for mxfp8 and the high-precision ones).
Convention default_convention(const ConvertTarget& target);

// Tensor names (ECMAScript regular expressions, searched) that stay high precision by default,
// as llm-compressor's and ModelOpt's recipes leave them: embeddings, lm_head, norms, MoE routers.
const std::vector<std::string>& default_ignore_patterns();

struct ConvertOptions {
  ConvertTarget target;
  std::optional<Convention> convention;  // default_convention(target) when unset
  std::vector<std::string> ignore;       // patterns added to the defaults
  bool default_ignore = true;            // false: only `ignore`
  // Mixed precision: weights whose name matches a pattern (ECMAScript, searched; the first that
  // matches) take that quantized format instead of target.format, with target's other options.
  // The convention must hold every format; ModelOpt writes MIXED_PRECISION, compressed-tensors
  // one config group per format.
  std::vector<std::pair<std::string, std::string>> format_for;
  // Dequantized tensors that stay high precision under a quantized target (ignored weights of a
  // quantized source) become this dtype.
  DType high_precision_dtype = DType::kBF16;
  std::uint64_t max_shard_bytes = 5'000'000'000;  // as transformers' save_pretrained
  bool overwrite = false;  // DST may hold files; those breccia writes are replaced
  bool resume = false;     // shards already complete in DST are kept
  Validation validate = Validation::kError;
  // Where the casts and dequantizations run: the CPU, or a CUDA device (each tensor copied
  // there and back; the bytes written are the same, the GPU kernels being bit-identical).
  // UnsupportedError on a CUDA device when this build has no CUDA kernels.
  Device device = Device::cpu();
};

// What happened to one tensor.
struct ConvertedTensor {
  std::string name;
  std::string action;  // "quantized", "requantized", "dequantized", "kept", "dropped"
  std::string detail;  // the recipe written, or why it was kept or dropped
  std::string shard;   // the output file ("" when dropped)
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
};

struct ConvertReport {
  std::vector<ConvertedTensor> tensors;
  std::vector<std::string> shards;          // written, in order
  std::vector<std::string> resumed_shards;  // kept from an earlier run (resume)
  std::vector<std::string> copied_files;    // config.json, tokenizer, ...
  Convention convention = Convention::kBreccia;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
};

struct ConvertProgress {
  std::uint64_t bytes_done = 0;  // stored bytes of the source's tensors done so far
  std::uint64_t bytes_total = 0;
  std::size_t tensors_done = 0;
  std::size_t tensors_total = 0;
  std::string current;  // the tensor or file at work
};
// Called between tensors and files; whatever it throws abandons the conversion (no file under a
// final name is left incomplete) and propagates.
using ConvertPoll = std::function<void(const ConvertProgress&)>;

// Converts the checkpoint at `source` (list_model) into the directory `destination`: every
// weight matrix that is not ignored is cast to the target (or dequantized, for a high-precision
// target), the rest is copied as it is; shards of at most max_shard_bytes are written each
// atomically, then the index, config.json (with the convention's quantization_config) and the
// other files. Refuses (ValueError, before writing anything) a destination inside the source or
// equal to it, a non-empty destination without overwrite or resume, and a source the target's
// convention cannot express. Each converted tensor is written into its shard at once (while the
// next converts), so peak memory is a few tensors, whatever the shard size.
ConvertReport convert_model(const std::filesystem::path& source,
                            const std::filesystem::path& destination, const ConvertOptions& options,
                            const ConvertPoll& poll = {});

// One tensor of a checkpoint as `breccia inspect` shows it.
struct TensorInfo {
  std::string name;
  std::string convention;           // TensorSource::convention
  std::string file;                 // the shard holding its data
  std::vector<std::string> stored;  // the stored tensors it was read from
  Shape shape;                      // logical shape (elements)
  std::string format;               // the array's dtype name, or the recipe (recipe_repr)
  std::string layout;               // layout_repr, "" for a plain array
  Shape scale_shape;
  std::uint64_t bytes = 0;
  // What is wrong with it: numeric anomalies (numeric_anomalies), FP8 or FP4 data stored with no
  // scale, a scale or companion whose weight is missing.
  std::vector<std::string> problems;
};

// Every tensor of the checkpoint at `path` (list_model), read without refusing anomalies, in
// name order.
std::vector<TensorInfo> inspect_model(const std::filesystem::path& path);

// Per-tensor comparison of two decoded tensors of the same shape.
struct TensorComparison {
  double sqnr_db = 0;  // 10 log10(sum ref^2 / sum (x - ref)^2); +inf when equal
  double max_abs_error = 0;
  std::int64_t mismatches = 0;  // elements whose bits differ (NaN == NaN)
};
// `value` against `reference`, both decoded to fp64; ValueError naming `name` when the shapes
// differ. NaN in both at the same place counts as equal. Two integer arrays of one dtype and
// shape compare element bytes (sqnr_db inf when equal, NaN otherwise).
TensorComparison compare(const std::string& name, const CheckpointEntry& value,
                         const CheckpointEntry& reference);

}  // namespace breccia::io
