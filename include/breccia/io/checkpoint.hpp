// Quantized checkpoints in safetensors files: ScaledTensors and plain arrays, in breccia's own
// layout or in the conventions of the checkpoints people publish.
//
// breccia's layout: a ScaledTensor `w` is stored as `w` (data: F8_E4M3 / F8_E5M2 for FP8 and
// MXFP8, F6_E2M3 / F6_E3M2 bit-packed for MXFP6, F4 with the logical shape for MXFP4 and NVFP4,
// U8 packed bytes for INT4, which has no safetensors dtype), `w.scale` (F32, F8_E8M0 for the MX
// recipes, F8_E4M3 for NVFP4, the INT4 scale dtype),
// `w.global_scale` (F32, NVFP4) and `w.zero_point` (U8, unsigned INT4); the metadata key
// "breccia" holds the JSON text {"w": {"recipe": {...}, "layout": {...}}, ...}.
//
// Conventions (read when the file has no "breccia" key; written on request); for a weight
// named `x.weight`:
// - DeepSeek-V3 FP8: x.weight F8_E4M3 [out, in], x.weight_scale_inv F32
//   [ceil(out/128), ceil(in/128)] -> Float8BlockScaling(block_m=128, block_k=128,
//   power_2_scale=False), PerBlockMN(128, 128).
// - DeepSeek-V4: x.weight F8_E4M3 [out, in] with x.scale F8_E8M0 (F32 in its FP8-expert
//   checkpoints) [ceil(out/128), ceil(in/128)] (64 and 32 blocks are read too) ->
//   Float8BlockScaling(block_m=block_k=128, power_2_scale = the scale is E8M0), the E8M0
//   scales widened to fp32 exactly; routed experts x.weight I8 [out, in/2] (E2M1 pairs, low
//   nibble first) with x.scale F8_E8M0 [out, in/32] -> MXFP4BlockScaling, PerBlockMN(1, 32).
//   Written back byte for byte: power-of-two fp32 scales as E8M0.
// - compressed-tensors: nvfp4-pack-quantized (x.weight_packed U8 [N, K/2], x.weight_scale
//   F8_E4M3 [N, K/16], x.weight_global_scale F32 [1], an ENCODE factor G: breccia's
//   global_scale is 1/G); FP8 (x.weight F8, x.weight_scale [1] per tensor, [N, 1] per channel or
//   [ceil(N/128), ceil(K/128)] per block); INT4 pack-quantized (x.weight_packed I32
//   [N, ceil(K/8)], eight nibbles per word from the low end, stored as q + 8; x.weight_scale
//   [N, groups]; x.weight_shape [2]; x.weight_zero_point I32 [ceil(N/8), groups] packed along
//   rows when asymmetric).
// - ModelOpt: NVFP4 (x.weight U8 [N, K/2], x.weight_scale F8_E4M3 [N, K/16],
//   x.weight_scale_2 F32 [], a DECODE factor), FP8 (x.weight F8_E4M3 with x.weight_scale F32 []
//   per tensor, [N] per channel, [N/128, 1, K/128, 1] per block) and MXFP8 (x.weight F8_E4M3,
//   x.weight_scale U8 [N, K/32], E8M0).
// Tensors a convention has but breccia does not model (input_scale, input_global_scale, ...)
// stay plain arrays under their own names.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "breccia/array.hpp"
#include "breccia/io/safetensors.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia::io {

enum class Convention : std::uint8_t {
  kBreccia,
  kDeepSeekV3,
  kDeepSeekV4,  // FP8 with E8M0 block scales under `<p>.scale`, FP4 experts as I8 + E8M0 1x32
  kCompressedTensors,
  kModelOpt,
  kGptOss,  // OpenAI gpt-oss: MXFP4 as `<name>_blocks` (..., G, 16) and `<name>_scales` (..., G)
};

std::string_view to_string(Convention convention);  // "breccia", "deepseek-v3", ...
// Inverse of to_string; ValueError naming `argument` for any other text.
Convention convention_from_string(std::string_view text, std::string_view argument = "convention");

// The metadata key of breccia's per-tensor recipe and layout JSON.
inline constexpr std::string_view kBrecciaMetadataKey = "breccia";

using CheckpointEntry = std::variant<Array, ScaledTensor>;

// Where an entry of a Checkpoint came from.
struct TensorSource {
  std::string convention;           // a Convention's name ("breccia", "deepseek-v3", ...) or
                                    // "plain" (an array stored as it is)
  std::vector<std::string> stored;  // the stored tensors it was read from, its data first
  std::string file;                 // the file holding its data ("" for a single file)
};

struct Checkpoint {
  std::map<std::string, CheckpointEntry> tensors;
  std::map<std::string, TensorSource> sources;  // by tensor name, one per entry of `tensors`
  Metadata metadata;                            // the file's metadata without the "breccia" key
  // compressed-tensors' NVFP4 encode factor G, as read, by tensor name. 1/(1/G) is not G for
  // about one fp32 value in six, so save_checkpoint writes this value back (when it still
  // matches the tensor's global_scale) to keep a round trip byte for byte.
  std::map<std::string, float> encode_global_scales;
  // numeric_anomalies of every ScaledTensor, when loaded with Validation::kWarn.
  std::vector<std::string> anomalies;
};

// What load_checkpoint does about numeric anomalies (numeric_anomalies): refuse the file, report
// them in Checkpoint::anomalies, or skip the check. Structural lies (shapes, dtypes, missing
// tensors) are errors whatever this says.
enum class Validation : std::uint8_t { kError, kWarn, kOff };
// "error", "warn" or "off"; ValueError naming `argument` for any other text.
Validation validation_from_string(std::string_view text, std::string_view argument = "validate");

struct CheckpointLoadOptions {
  bool copy = false;  // LoadOptions::copy
  Validation validate = Validation::kError;
};

// Maps `path` (see io::load) and rebuilds its ScaledTensors, which borrow the mapping wherever
// the stored bytes are breccia's (every breccia-layout tensor; DeepSeek-V3, ModelOpt and the
// NVFP4/FP8 data of compressed-tensors). Throws ValueError naming the file and tensor when the
// metadata or a convention's tensors do not describe valid ScaledTensors (a tensor stored
// under a dtype other than the one its role has included), or, under Validation::kError, when
// a ScaledTensor has a numeric anomaly; UnsupportedError for a convention feature breccia does
// not model (compressed-tensors act-order g_idx).
Checkpoint load_checkpoint(const std::filesystem::path& path,
                           const CheckpointLoadOptions& options = {});

// The shards of one checkpoint read as one file (a scale may lie in another shard than its
// weight): every shard is mapped as load_checkpoint maps one. `where` names the checkpoint in
// errors; a tensor name in two shards is a ValueError naming both.
Checkpoint load_checkpoint(const std::vector<std::filesystem::path>& shards,
                           const CheckpointLoadOptions& options, const std::string& where);

// Values a well-formed ScaledTensor can hold but that no quantizer produces from finite input,
// and that decode to NaN, inf, sign-flipped or zeroed weights: scales (decode factors) that are
// NaN, infinite, negative, or zero where that is not the all-zero block's value (FP8 and INT4
// scales must be positive; E8M0's NaN code; a NaN or negative E4M3 block scale), an NVFP4
// global_scale that is NaN, infinite, negative, or zero over non-zero block scales, and zero
// points above 15. One message per offending array, naming `name`, the count and the first
// offender; empty when there is none. The tensor's arrays must be on the CPU (DeviceError).
std::vector<std::string> numeric_anomalies(const std::string& name, const ScaledTensor& tensor);

struct SaveOptions {
  Convention convention = Convention::kBreccia;
  Metadata extra_metadata;
  std::map<std::string, float> encode_global_scales;  // as Checkpoint's
};

// Writes `tensors` atomically (io::save, `poll` included). With a convention other than
// kBreccia, every ScaledTensor must be one the convention can express (see above) and plain arrays
// are written as they are; ValueError names the tensor and what the convention supports otherwise.
void save_checkpoint(const std::filesystem::path& path,
                     const std::map<std::string, CheckpointEntry>& tensors,
                     const SaveOptions& options = {}, const WritePoll& poll = {});

// save_checkpoint one entry at a time, over a SafetensorsWriter: add() encodes the entry as the
// convention stores it and writes its bytes at once, so a converter holds one tensor, not a
// whole file, in memory. The file holds what save_checkpoint would write for the same entries,
// laid out in the order added (see SafetensorsWriter), and appears only when finish() returns.
// An entry the convention cannot express is refused (ValueError) before any of it is written;
// once an entry has been written in part (an IOError midway), further calls are refused.
class CheckpointWriter {
 public:
  CheckpointWriter(const std::filesystem::path& path, SaveOptions options,
                   std::uint64_t header_room = std::uint64_t{1} << 16);
  void add(const std::string& name, const CheckpointEntry& entry);
  void finish();

 private:
  SaveOptions options_;
  SafetensorsWriter file_;
  Metadata records_;  // breccia's recipe and layout record of each entry, as JSON text
  bool failed_ = false;
};

}  // namespace breccia::io
