#include "breccia/io/model.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <utility>

#include "breccia/error.hpp"
#include "breccia/kernels/cpu.hpp"
#if defined(BRECCIA_WITH_CUDA)
#include "breccia/kernels/cuda.hpp"
#endif
#include "breccia/kernels/reference.hpp"
#include "breccia/numerics.hpp"
#include "breccia/ops.hpp"
#include "breccia/plan.hpp"

namespace breccia::io {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kConfigFileName = "config.json";
constexpr std::string_view kModelOptConfigFileName = "hf_quant_config.json";

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// 'path', for messages (built by appending: GCC 12 warns falsely on "'" + string + "'").
std::string quoted(const fs::path& path) {
  std::string text = "'";
  text += path.string();
  text += '\'';
  return text;
}

std::string read_text(const fs::path& path, const std::string& where) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail<IOError>(where, ": cannot open '", path.string(), "': ", std::strerror(errno));
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      ::close(fd);
      fail<IOError>(where, ": cannot read '", path.string(), "': ", std::strerror(error));
    }
    if (got == 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > (std::size_t{256} << 20)) {
      ::close(fd);
      fail<ValueError>(where, ": '", path.string(), "' is larger than 256 MiB");
    }
  }
  ::close(fd);
  return text;
}

Json parse_json_file(const fs::path& path) {
  const std::string where = quoted(path);
  const std::string text = read_text(path, where);
  try {
    return Json::parse(text);
  } catch (const std::exception& error) {
    fail<ValueError>(where, ": not valid JSON: ", error.what());
  }
}

// Writes `bytes` to `path` as save() writes a safetensors file: a temporary file beside it,
// flushed, renamed over it.
void write_file_atomically(const fs::path& path, std::string_view bytes) {
  const std::string where = quoted(path);
  const fs::path temporary = temporary_file_prefix(path) + std::to_string(::getpid()) + "-0";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail<IOError>(where, ": cannot create a temporary file: ", std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t put = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(temporary.c_str());
      fail<IOError>(where, ": cannot write: ", std::strerror(error));
    }
    done += static_cast<std::size_t>(put);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    fail<IOError>(where, ": cannot write: ", std::strerror(error));
  }
}

void copy_file_atomically(const fs::path& from, const fs::path& to) {
  const fs::path temporary = temporary_file_prefix(to) + std::to_string(::getpid()) + "-0";
  std::error_code error;
  fs::copy_file(from, temporary, fs::copy_options::overwrite_existing, error);
  if (!error) fs::rename(temporary, to, error);
  if (error) {
    fs::remove(temporary);
    fail<IOError>("cannot copy '", from.string(), "' to '", to.string(), "': ", error.message());
  }
}

// Shards named by an index, in the order of first appearance, with its weight map checked
// against the shards' headers later (load_model).
std::vector<fs::path> shards_of_index(const fs::path& directory, const fs::path& index) {
  const Json json = parse_json_file(index);
  const std::string where = quoted(index);
  if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object()) {
    fail<ValueError>(where, ": expected an object with a \"weight_map\" object");
  }
  std::vector<fs::path> shards;
  std::set<std::string> seen;
  for (const auto& [name, file] : json["weight_map"].items()) {
    if (!file.is_string()) {
      fail<ValueError>(where, ": weight_map['", name, "']: expected a file name, got ",
                       file.dump());
    }
    const std::string shard = file.get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == ".." ||
        shard.find('\0') != std::string::npos) {
      fail<ValueError>(where, ": weight_map['", name,
                       "']: expected a file name in the model directory, got '", shard, "'");
    }
    if (seen.insert(shard).second) shards.push_back(directory / shard);
  }
  std::sort(shards.begin(), shards.end());
  for (const fs::path& shard : shards) {
    if (!fs::is_regular_file(shard)) {
      fail<ValueError>(where, " names the shard '", shard.filename().string(),
                       "', which is not a file in '", directory.string(), "'");
    }
  }
  return shards;
}

// The index's weight map against what the shards hold: every tensor in the shard the index
// names, and no tensor the index does not name.
void check_index(const ModelFiles& files) {
  if (!files.index) return;
  const Json json = parse_json_file(*files.index);
  const std::string where = quoted(*files.index);
  std::map<std::string, std::string> mapped;
  for (const auto& [name, file] : json["weight_map"].items()) mapped[name] = file;
  std::size_t found = 0;
  for (const fs::path& shard : files.shards) {
    const SafetensorsFile header = load(shard);
    for (const auto& [name, tensor] : header.tensors) {
      const auto at = mapped.find(name);
      if (at == mapped.end()) {
        fail<ValueError>(where, ": the shard '", shard.filename().string(), "' holds tensor '",
                         name, "', which the index does not name");
      }
      if (at->second != shard.filename().string()) {
        fail<ValueError>(where, ": tensor '", name, "' is mapped to '", at->second, "' but is in '",
                         shard.filename().string(), "'");
      }
      ++found;
    }
  }
  if (found != mapped.size()) {
    for (const auto& [name, file] : mapped) {
      const SafetensorsFile header = load(files.directory / file);
      if (!header.tensors.contains(name)) {
        fail<ValueError>(where, ": names tensor '", name, "' in '", file,
                         "', which does not hold it");
      }
    }
  }
}

std::string shard_file_name(std::size_t index, std::size_t count) {
  if (count == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

bool is_float_array(const CheckpointEntry& entry) {
  const auto* array = std::get_if<Array>(&entry);
  return array != nullptr && (array->dtype() == DType::kF32 || array->dtype() == DType::kF16 ||
                              array->dtype() == DType::kBF16);
}

std::uint64_t stored_bytes(const CheckpointEntry& entry) {
  if (const auto* array = std::get_if<Array>(&entry)) return array->nbytes();
  const auto& tensor = std::get<ScaledTensor>(entry);
  std::uint64_t bytes = tensor.data().nbytes() + tensor.scale().nbytes();
  if (tensor.global_scale()) bytes += tensor.global_scale()->nbytes();
  if (tensor.zero_point()) bytes += tensor.zero_point()->nbytes();
  return bytes;
}

std::uint64_t planned_bytes(const QuantPlan& plan) {
  std::int64_t data = itemsize(plan.data_dtype);
  for (const std::int64_t dim : plan.data_shape) data *= dim;
  std::int64_t scale = itemsize(plan.scale_dtype);
  for (const std::int64_t dim : plan.grid.scale_shape) scale *= dim;
  return static_cast<std::uint64_t>(data + scale * (plan.has_zero_point ? 2 : 1));
}

std::uint64_t numel(const Shape& shape) {
  std::uint64_t count = 1;
  for (const std::int64_t dim : shape) count *= static_cast<std::uint64_t>(dim);
  return count;
}

// The formats each convention can hold.
bool convention_holds(Convention convention, const std::string& format) {
  switch (convention) {
    case Convention::kBreccia:
      return true;
    case Convention::kDeepSeekV3:
    case Convention::kDeepSeekV4:
      return format == "fp8-block";
    case Convention::kModelOpt:
      return format == "nvfp4" || format == "fp8" || format == "fp8-channel" ||
             format == "fp8-block" || format == "mxfp8";
    case Convention::kCompressedTensors:
      return format == "fp8" || format == "fp8-channel" || format == "fp8-block" ||
             format == "nvfp4" || format == "mxfp4" || format == "int4";
    case Convention::kGptOss:
      return format == "mxfp4";
  }
  return false;
}

enum class Action : std::uint8_t { kKeep, kDrop, kQuantize, kRequantize, kDequantize };

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kKeep:
      return "kept";
    case Action::kDrop:
      return "dropped";
    case Action::kQuantize:
      return "quantized";
    case Action::kRequantize:
      return "requantized";
    case Action::kDequantize:
      return "dequantized";
  }
  return "";
}

// A format weights are written in: the target's, or a format_for override's.
struct Choice {
  ConvertTarget target;
  Recipe recipe;
  std::string pattern;  // the format_for pattern, "" for the target's own
  std::regex regex;
};

struct Job {
  std::string name;
  const CheckpointEntry* entry = nullptr;
  const TensorSource* source = nullptr;
  Action action = Action::kKeep;
  std::string detail;
  DType dtype = DType::kBF16;  // kDequantize's output
  std::uint64_t bytes_in = 0;
  std::uint64_t estimate_out = 0;
  std::size_t shard = 0;
  bool linear_kept_high = false;     // a weight matrix left high precision (the config's ignore)
  bool reencoded = false;            // kRequantize by reencode_fp4_as_fp8, every value kept
  std::optional<float> shared_amax;  // NVFP4: the amax of its fused group (fused_group_of)
  const Choice* choice = nullptr;    // the format it is written in (quantize, requantize, kept)
};

// The GEMM a serving stack fuses a projection into (q/k/v -> qkv, gate/up -> gate_up, and
// the experts' w1/w3), as `<module prefix>:<group>`, or "" for a projection of its own.
// NVFP4 weights fused into one GEMM must share one global scale.
std::string fused_group_of(const std::string& name) {
  static const std::regex fused(
      R"(^(.*)\.(q_proj|k_proj|v_proj|gate_proj|up_proj|w1|w3)\.weight$)");
  std::smatch match;
  if (!std::regex_match(name, match, fused)) return "";
  const std::string part = match[2];
  const std::string group = part == "w1" || part == "w3"               ? "w13"
                            : part == "gate_proj" || part == "up_proj" ? "gate_up"
                                                                       : "qkv";
  return match[1].str() + ":" + group;
}

// max |value| of a tensor, decoded first when quantized.
float amax_of(const CheckpointEntry& entry) {
  if (const auto* scaled = std::get_if<ScaledTensor>(&entry)) {
    return kernels::cpu::amax(dequantize(*scaled, DType::kF32));
  }
  return kernels::cpu::amax(std::get<Array>(entry));
}

std::string module_of(const std::string& weight_name) {
  return ends_with(weight_name, ".weight") ? weight_name.substr(0, weight_name.size() - 7)
                                           : weight_name;
}

// The square tile of an E4M3 block target (0 for any other target).
std::int64_t fp8_tile(const Recipe& to) {
  const RecipeSpec target = spec_of(to);
  const auto* tile = std::get_if<PerBlockMN>(&target.rowwise_layout);
  if (target.family != RuleFamily::kFp8 || target.per_tensor ||
      target.element != ElementFormat::kE4M3 || tile == nullptr || tile->block_m != tile->block_n) {
    return 0;
  }
  return tile->block_n;
}

// DeepSeek-V4's FP4 experts (any 2-D MXFP4 weight) and FP8 blocks of the target's geometry:
// the pair reencode_fp4_as_fp8 converts with every value kept.
bool reencodes_losslessly(const ScaledTensor& from, const Recipe& to) {
  const RecipeSpec& source = from.spec();
  return source.family == RuleFamily::kMx && source.element == ElementFormat::kE2M1 &&
         from.ndim() == 2 && from.layout() == Layout{PerBlockMN{1, 32}} && fp8_tile(to) > 0 &&
         fp8_tile(to) % 32 == 0;
}

struct Planner {
  const ConvertOptions& options;
  std::optional<DType> dtype;
  std::vector<Choice> choices;  // format_for's in order, then the target's (quantized targets)
  std::vector<std::regex> ignore;
  std::vector<std::string> ignore_text;
  // The source holds quantized weights: its high-precision tensors were left so by its producer
  // and stay as they are.
  bool source_quantized = false;

  // The pattern that ignores `name`, or "".
  std::string ignored_by(const std::string& name) const {
    for (std::size_t i = 0; i < ignore.size(); ++i) {
      if (std::regex_search(name, ignore[i])) return ignore_text[i];
    }
    return "";
  }

  // The format `name` is written in.
  const Choice& choice_for(const std::string& name) const {
    for (std::size_t i = 0; i + 1 < choices.size(); ++i) {
      if (std::regex_search(name, choices[i].regex)) return choices[i];
    }
    return choices.back();
  }

  // Casts `x` for the choice (per-channel FP8 is the 1 x K block cast, whose rule is the
  // per-tensor one, relabelled).
  static ScaledTensor cast_weight(const Array& x, const Choice& choice,
                                  std::optional<float> shared_amax, const Context& context) {
    if (choice.target.format == "fp8-channel") {
      const Recipe row_blocks = Float8BlockScaling{.fp8_format = choice.target.fp8_format,
                                                   .block_k = x.shape().back(),
                                                   .block_m = 1,
                                                   .power_2_scale = false};
      const ScaledTensor rows =
          cast(x, row_blocks, CastOptions{.context = context, .tensor_amax = std::nullopt});
      return from_buffer(rows.data(), rows.scale().contiguous().reshaped({x.shape()[0]}),
                         Float8CurrentScaling{.fp8_format = choice.target.fp8_format},
                         PerChannel{});
    }
    return cast(x, choice.recipe, CastOptions{.context = context, .tensor_amax = shared_amax});
  }

  void plan(Job& job) const {
    const CheckpointEntry& entry = *job.entry;
    const auto* scaled = std::get_if<ScaledTensor>(&entry);
    if (dtype) {  // a high-precision target
      if (scaled != nullptr) {
        job.action = Action::kDequantize;
        job.dtype = *dtype;
        job.detail = "from " + recipe_repr(scaled->recipe());
        job.estimate_out = numel(scaled->logical_shape()) * itemsize(*dtype);
      }
      return;
    }
    const Shape shape =
        scaled != nullptr ? scaled->logical_shape() : std::get<Array>(entry).shape();
    const bool weight_matrix =
        shape.size() == 2 &&
        (scaled != nullptr || (is_float_array(entry) && ends_with(job.name, "weight")));
    if (!weight_matrix) return;
    if (scaled == nullptr && source_quantized) {
      job.detail = "left high precision by the source's quantization";
      job.linear_kept_high = true;
      return;
    }
    const std::string pattern = ignored_by(job.name);
    if (!pattern.empty()) {
      job.detail = "ignored (matches '" + pattern + "')";
      job.linear_kept_high = true;
      if (scaled != nullptr) {
        job.action = Action::kDequantize;
        job.dtype = options.high_precision_dtype;
        job.estimate_out = numel(shape) * itemsize(job.dtype);
      }
      return;
    }
    const Choice& choice = choice_for(job.name);
    const bool channel = choice.target.format == "fp8-channel";
    QuantPlan plan;
    try {
      plan = plan_cast(shape,
                       channel ? Recipe{Float8BlockScaling{
                                     .block_k = shape.back(), .block_m = 1, .power_2_scale = false}}
                               : choice.recipe);
    } catch (const ValueError& error) {
      job.detail = std::string("shape does not fit the format: ") + error.what();
      job.linear_kept_high = true;
      if (scaled != nullptr) {
        job.action = Action::kDequantize;
        job.dtype = options.high_precision_dtype;
        job.estimate_out = numel(shape) * itemsize(job.dtype);
      }
      return;
    }
    job.estimate_out = planned_bytes(plan);
    job.choice = &choice;
    const Recipe per_channel = Float8CurrentScaling{.fp8_format = choice.target.fp8_format};
    std::string written =
        channel ? recipe_repr(per_channel) + " per channel" : recipe_repr(choice.recipe);
    if (!choice.pattern.empty()) written += " (matches '" + choice.pattern + "')";
    if (scaled == nullptr) {
      job.action = Action::kQuantize;
      job.detail = written;
      return;
    }
    const bool same =
        channel ? scaled->recipe() == per_channel && scaled->layout() == Layout{PerChannel{}}
                : scaled->recipe() == choice.recipe && scaled->layout() == plan.layout;
    if (same) {
      job.detail = "already " + written;
      return;
    }
    job.action = Action::kRequantize;
    job.detail = written + " from " + recipe_repr(scaled->recipe());
    job.reencoded = reencodes_losslessly(*scaled, choice.recipe);
    if (job.reencoded) {
      const std::int64_t block = fp8_tile(choice.recipe);
      const Recipe reencoded = Float8BlockScaling{.fp8_format = Fp8Format::kE4M3,
                                                  .block_k = block,
                                                  .block_m = block,
                                                  .power_2_scale = true};
      job.detail =
          recipe_repr(reencoded) + ", re-encoded losslessly from " + recipe_repr(scaled->recipe());
    }
  }

  // Whether run() would compute (not keep, drop or losslessly re-encode, which stay on the CPU).
  static bool computes(const Job& job) {
    return job.action == Action::kDequantize || job.action == Action::kQuantize ||
           (job.action == Action::kRequantize && !job.reencoded);
  }

  // The job's output from `entry` (the job's source tensor, or a copy of it on the context's
  // device), on the device `entry` lies on.
  CheckpointEntry run(const Job& job, const CheckpointEntry& entry,
                      const Context& context = {}) const {
    switch (job.action) {
      case Action::kKeep:
      case Action::kDrop:
        return entry;
      case Action::kDequantize:
        return dequantize(std::get<ScaledTensor>(entry), job.dtype, context);
      case Action::kQuantize:
        return cast_weight(std::get<Array>(entry), *job.choice, job.shared_amax, context);
      case Action::kRequantize: {
        const auto& scaled = std::get<ScaledTensor>(entry);
        if (job.reencoded) {
          try {
            return reencode_fp4_as_fp8(scaled, fp8_tile(job.choice->recipe));
          } catch (const ValueError& error) {
            fail<ValueError>("'", job.source->file, "': tensor '", job.name, "': ", error.what());
          }
        }
        return cast_weight(dequantize(scaled, DType::kF32, context), *job.choice, job.shared_amax,
                           context);
      }
    }
    return entry;
  }
};

// Every array of `entry` passed through `move` (to a device and back).
template <class Move>
CheckpointEntry moved(const CheckpointEntry& entry, const Move& move) {
  if (const auto* array = std::get_if<Array>(&entry)) return move(*array);
  const auto& tensor = std::get<ScaledTensor>(entry);
  std::optional<Array> global_scale, zero_point;
  if (tensor.global_scale()) global_scale = move(*tensor.global_scale());
  if (tensor.zero_point()) zero_point = move(*tensor.zero_point());
  return ScaledTensor(move(tensor.data()), move(tensor.scale()), tensor.recipe(), tensor.layout(),
                      std::move(global_scale), std::move(zero_point));
}

// Runs the converter's jobs on options.device: on the CPU as they are; on a CUDA device each
// computing job's tensor goes there, through the same ops (the GPU kernels give the CPU's
// bytes), and its output comes back. On a device, two workspaces (each its own stream) take
// alternate jobs and the next job starts on a thread of its own while this one finishes, so
// one tensor's upload overlaps the previous one's kernels and download: copies from the
// file mapping are pageable and hold their calling thread until done.
class JobRunner {
 public:
  JobRunner(const Planner& planner, Device device) : planner_(planner) {
    if (device.is_cpu()) return;
#if defined(BRECCIA_WITH_CUDA)
    gpus_[0].emplace(device);
    gpus_[1].emplace(device);
#else
    fail<UnsupportedError>("device: this build of breccia has no CUDA kernels, got ", device,
                           " (use the CPU, or a build made with BRECCIA_CUDA=ON)");
#endif
  }

  // Waits for (and drops) a job started ahead: before what it reads (the jobs, the source's
  // mapping) goes away when a conversion is abandoned.
  void drain() noexcept {
#if defined(BRECCIA_WITH_CUDA)
    if (ahead_.valid()) ahead_.wait();
    ahead_ = {};
    ahead_job_ = nullptr;
#endif
  }

  // `job`'s output; `next`, when given, is the job run after it, started now on a device.
  CheckpointEntry run(const Job& job, const Job* next = nullptr) {
#if defined(BRECCIA_WITH_CUDA)
    if (gpus_[0] && Planner::computes(job)) {
      if (ahead_job_ != &job) drain();       // not what was announced
      std::future<CheckpointEntry> started;  // `job`, when it was started as the next one
      const int gpu = turn_;
      if (ahead_job_ == &job) {
        started = std::move(ahead_);
      } else {
        turn_ ^= 1;
      }
      ahead_job_ = nullptr;
      if (next != nullptr && Planner::computes(*next)) {
        ahead_ = std::async(std::launch::async,
                            [this, next, other = turn_] { return run_on(*next, *gpus_[other]); });
        ahead_job_ = next;
        turn_ ^= 1;
      }
      return started.valid() ? started.get() : run_on(job, *gpus_[gpu]);
    }
#endif
    (void)next;
    return planner_.run(job, *job.entry);
  }

 private:
#if defined(BRECCIA_WITH_CUDA)
  CheckpointEntry run_on(const Job& job, const kernels::cuda::DeviceWorkspace& gpu) const {
    const CheckpointEntry output = planner_.run(
        job, moved(*job.entry, [&](const Array& a) { return gpu.to_device(a); }), gpu.context());
    return moved(output, [&](const Array& a) { return gpu.to_host(a); });
  }
#endif

  const Planner& planner_;
#if defined(BRECCIA_WITH_CUDA)
  // Each keeps its own cached device memory: up to two tensors' working sets at a time.
  std::optional<kernels::cuda::DeviceWorkspace> gpus_[2];
  int turn_ = 0;  // the workspace the next job started takes
  // The job started ahead and its output; declared after the workspaces, so that a job still
  // running when the runner goes (an error elsewhere) is waited for before they are destroyed.
  const Job* ahead_job_ = nullptr;
  std::future<CheckpointEntry> ahead_;
#endif
};

// Activation scales of a source's quantization mean nothing once their weight is converted.
bool is_activation_scale(const std::string& name) {
  return ends_with(name, ".input_scale") || ends_with(name, ".input_global_scale");
}

std::string fp8_format_text(Fp8Format format) {
  return format == Fp8Format::kE5M2 ? "e5m2" : "e4m3";
}

// ModelOpt's quant_algo and group_size of a format.
std::pair<std::string, int> modelopt_algorithm(const std::string& format) {
  static const std::map<std::string, std::pair<std::string, int>> algorithms = {
      {"fp8", {"FP8", 0}},
      {"fp8-channel", {"FP8_PER_CHANNEL_PER_TOKEN", 0}},
      {"fp8-block", {"FP8_PB_WO", 0}},
      {"nvfp4", {"NVFP4", 16}},
      {"mxfp8", {"MXFP8", 32}}};
  return algorithms.at(format);
}

// quantization_config for one format, as the convention's loaders read it.
Json single_format_config(const ConvertTarget& target, Convention convention, const Json& ignore) {
  if (convention == Convention::kDeepSeekV3) {
    return {{"quant_method", "fp8"},
            {"activation_scheme", "dynamic"},
            {"fmt", fp8_format_text(target.fp8_format)},
            {"weight_block_size", {128, 128}},
            {"modules_to_not_convert", ignore}};
  }
  if (convention == Convention::kDeepSeekV4) {  // E8M0 ("ue8m0") block scales
    return {{"quant_method", "fp8"},
            {"activation_scheme", "dynamic"},
            {"fmt", fp8_format_text(target.fp8_format)},
            {"scale_fmt", "ue8m0"},
            {"weight_block_size", {128, 128}},
            {"modules_to_not_convert", ignore}};
  }
  if (convention == Convention::kModelOpt) {
    const auto [algorithm, group_size] = modelopt_algorithm(target.format);
    return {{"quant_method", "modelopt"},
            {"quant_algo", algorithm},
            {"kv_cache_quant_algo", nullptr},
            {"group_size", group_size},
            {"exclude_modules", ignore}};
  }
  if (convention == Convention::kCompressedTensors) {
    Json weights;
    Json input = nullptr;
    std::string format;
    const Json dynamic_fp8_tokens = {{"num_bits", 8},       {"type", "float"},
                                     {"strategy", "token"}, {"symmetric", true},
                                     {"dynamic", true},     {"group_size", nullptr}};
    if (target.format == "fp8" || target.format == "fp8-channel") {
      format = "float-quantized";
      weights = {{"num_bits", 8},
                 {"type", "float"},
                 {"strategy", target.format == "fp8" ? "tensor" : "channel"},
                 {"symmetric", true},
                 {"dynamic", false}};
      input = dynamic_fp8_tokens;
    } else if (target.format == "fp8-block") {
      format = "float-quantized";
      weights = {{"num_bits", 8},       {"type", "float"},
                 {"strategy", "block"}, {"block_structure", {128, 128}},
                 {"symmetric", true},   {"dynamic", false}};
      input = {{"num_bits", 8},     {"type", "float"},   {"strategy", "group"},
               {"group_size", 128}, {"symmetric", true}, {"dynamic", true}};
    } else if (target.format == "mxfp4") {
      format = "mxfp4-pack-quantized";
      weights = {{"num_bits", 4},    {"type", "float"},   {"strategy", "group"},
                 {"group_size", 32}, {"symmetric", true}, {"dynamic", false}};
    } else if (target.format == "nvfp4") {
      format = "nvfp4-pack-quantized";
      weights = {{"num_bits", 4},    {"type", "float"},   {"strategy", "tensor_group"},
                 {"group_size", 16}, {"symmetric", true}, {"dynamic", false}};
    } else {  // int4
      format = "pack-quantized";
      weights = {{"num_bits", 4},
                 {"type", "int"},
                 {"strategy", target.group_size == -1 ? "channel" : "group"},
                 {"group_size", target.group_size == -1 ? Json(nullptr) : Json(target.group_size)},
                 {"symmetric", target.int4_signed},
                 {"dynamic", false},
                 {"actorder", nullptr}};
    }
    return {{"quant_method", "compressed-tensors"},
            {"format", format},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", input},
                {"output_activations", nullptr},
                {"format", format}}}}},
            {"ignore", ignore},
            {"kv_cache_scheme", nullptr}};
  }
  if (convention == Convention::kGptOss) {
    return {{"quant_method", "mxfp4"}, {"modules_to_not_convert", ignore}};
  }
  return {{"quant_method", "breccia"},
          {"format", target.format},
          {"recipe", Json::parse(recipe_to_json(*target_recipe(target)))},
          {"modules_to_not_convert", ignore}};
}

// quantization_config for config.json: one format's, or with format_for several formats
// (modules_by_format: the quantized modules of each format written), ModelOpt's
// MIXED_PRECISION with a quant_algo per layer, compressed-tensors' config group per format, or
// breccia's per-module format map.
Json quantization_config(const ConvertTarget& target, Convention convention,
                         const std::vector<std::string>& kept_modules,
                         const std::map<std::string, std::vector<std::string>>& modules_by_format) {
  Json ignore = Json::array();
  for (const std::string& module : kept_modules) ignore.push_back(module);
  if (modules_by_format.size() <= 1) {
    ConvertTarget written = target;
    if (modules_by_format.size() == 1) written.format = modules_by_format.begin()->first;
    return single_format_config(written, convention, ignore);
  }
  if (convention == Convention::kModelOpt) {
    Json layers = Json::object();
    std::set<std::string> expert_algorithms;
    for (const auto& [format, modules] : modules_by_format) {
      const auto [algorithm, group_size] = modelopt_algorithm(format);
      Json layer = {{"quant_algo", algorithm}};
      if (group_size > 0) layer["group_size"] = group_size;
      for (const std::string& module : modules) {
        layers[module] = layer;
        if (module.find(".experts.") != std::string::npos) expert_algorithms.insert(algorithm);
      }
    }
    Json config = {{"quant_method", "modelopt"},
                   {"quant_algo", "MIXED_PRECISION"},
                   {"kv_cache_quant_algo", nullptr},
                   {"quantized_layers", layers},
                   {"exclude_modules", ignore}};
    // The routed experts' one algorithm, which MoE loaders (vLLM's and SGLang's DeepSeek-V4
    // NVFP4 paths) read to pick the fused-MoE method; absent when experts mix formats or some
    // stay high precision.
    const bool experts_kept = std::ranges::any_of(kept_modules, [](const std::string& module) {
      return module.find(".experts.") != std::string::npos;
    });
    if (expert_algorithms.size() == 1 && !experts_kept) {
      config["moe_quant_algo"] = *expert_algorithms.begin();
    }
    return config;
  }
  if (convention == Convention::kCompressedTensors) {
    Json groups = Json::object();
    for (const auto& [format, modules] : modules_by_format) {
      ConvertTarget written = target;
      written.format = format;
      Json group = single_format_config(written, convention, ignore)["config_groups"]["group_0"];
      group["targets"] = modules;
      groups["group_" + std::to_string(groups.size())] = group;
    }
    return {{"quant_method", "compressed-tensors"},
            {"format", "mixed-precision"},
            {"quantization_status", "compressed"},
            {"config_groups", groups},
            {"ignore", ignore},
            {"kv_cache_scheme", nullptr}};
  }
  Json config = single_format_config(target, convention, ignore);
  Json formats = Json::object();
  for (const auto& [format, modules] : modules_by_format) {
    for (const std::string& module : modules) formats[module] = format;
  }
  config["formats"] = formats;
  return config;
}

std::string dtype_config_name(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return "float16";
    case DType::kF32:
      return "float32";
    default:
      return "bfloat16";
  }
}

// Refuses destinations that would lose or mix data, before anything is written.
void check_destination(const ModelFiles& files, const fs::path& destination,
                       const ConvertOptions& options) {
  require_no_nul(destination, "destination");
  const fs::path source = fs::weakly_canonical(files.directory);
  const fs::path target = fs::weakly_canonical(destination);
  const auto [end, unused] =
      std::mismatch(source.begin(), source.end(), target.begin(), target.end());
  if (end == source.end()) {
    fail<ValueError>("destination: '", destination.string(),
                     "' is the source directory or inside it ('", files.directory.string(),
                     "'); expected a separate directory");
  }
  std::error_code error;
  if (fs::exists(destination, error) && !fs::is_directory(destination, error)) {
    fail<ValueError>("destination: expected a directory, got the file '", destination.string(),
                     "'");
  }
  if (options.overwrite || options.resume || !fs::exists(destination, error)) return;
  for (const auto& item : fs::directory_iterator(destination)) {
    if (!is_temporary_file(item.path())) {
      fail<ValueError>("destination: '", destination.string(), "' is not empty (it holds '",
                       item.path().filename().string(),
                       "'); ask to overwrite it (--overwrite) or to resume an interrupted "
                       "conversion (--resume)");
    }
  }
}

// Room enough for the header entries of one converted tensor (its data and a convention's
// companions, about 100 bytes each beside the name) and, in breccia's layout, its recipe and
// layout record (about 400 bytes of escaped JSON); a header that outgrows its room still comes
// out right, at the cost of moving the shard's data once.
std::uint64_t header_room_of(const std::string& name, Convention convention) {
  const std::uint64_t entries = 4 * (name.size() + 112);
  return convention == Convention::kBreccia ? entries + name.size() + 640 : entries;
}

// Whether `path` already holds exactly the entries `names` (an earlier run's complete shard).
bool shard_is_complete(const fs::path& path, const std::set<std::string>& names) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return false;
  try {
    const Checkpoint done = load_checkpoint(path, {.validate = Validation::kOff});
    std::set<std::string> held;
    for (const auto& [name, entry] : done.tensors) held.insert(name);
    return held == names;
  } catch (const std::exception&) {  // unreadable or not breccia's: convert it again
    return false;
  }
}

}  // namespace

ModelFiles list_model(const fs::path& path) {
  require_no_nul(path, "path");
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (error || !fs::exists(status)) {
    fail<IOError>("path: '", path.string(), "' does not exist");
  }
  ModelFiles files;
  if (fs::is_regular_file(status)) {
    if (!ends_with(path.filename().string(), ".safetensors")) {
      fail<ValueError>("path: expected a .safetensors file or a model directory, got '",
                       path.string(), "'");
    }
    files.directory = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    files.shards = {path};
    return files;
  }
  if (!fs::is_directory(status)) {
    fail<IOError>("path: '", path.string(), "' is neither a file nor a directory");
  }
  files.directory = path;
  std::vector<fs::path> found;
  for (const auto& item : fs::directory_iterator(path)) {
    const std::string name = item.path().filename().string();
    if (name.starts_with(".") || !item.is_regular_file()) continue;
    if (name == kIndexFileName) {
      files.index = item.path();
    } else if (name == kConfigFileName) {
      files.config = item.path();
    } else if (ends_with(name, ".safetensors")) {
      found.push_back(item.path());
    } else {
      files.other_files.push_back(item.path());
    }
  }
  std::sort(found.begin(), found.end());
  std::sort(files.other_files.begin(), files.other_files.end());
  files.shards = files.index ? shards_of_index(path, *files.index) : found;
  if (files.shards.empty()) {
    fail<ValueError>("path: the directory '", path.string(), "' holds no .safetensors file");
  }
  for (const fs::path& file : found) {
    if (std::find(files.shards.begin(), files.shards.end(), file) == files.shards.end()) {
      fail<ValueError>("path: '", file.string(), "' is not named by ", kIndexFileName,
                       "; a stray shard would be silently left out");
    }
  }
  return files;
}

Checkpoint load_model(const ModelFiles& files, const CheckpointLoadOptions& options) {
  check_index(files);
  return load_checkpoint(
      files.shards, options,
      "checkpoint '" +
          (files.shards.size() == 1 ? files.shards.front() : files.directory).string() + "'");
}

const std::vector<std::string>& convert_formats() {
  static const std::vector<std::string> formats = {
      "bf16", "fp16", "fp32", "fp8", "fp8-channel", "fp8-block", "mxfp8", "mxfp4", "nvfp4", "int4"};
  return formats;
}

std::optional<DType> target_dtype(const ConvertTarget& target) {
  if (target.format == "bf16") return DType::kBF16;
  if (target.format == "fp16") return DType::kF16;
  if (target.format == "fp32") return DType::kF32;
  return std::nullopt;
}

std::optional<Recipe> target_recipe(const ConvertTarget& target) {
  const std::string& format = target.format;
  if (target_dtype(target)) return std::nullopt;
  if (format == "fp8" || format == "fp8-channel") {
    return Float8CurrentScaling{.fp8_format = target.fp8_format};
  }
  if (format == "fp8-block") {
    return Float8BlockScaling{.fp8_format = target.fp8_format,
                              .block_k = 128,
                              .block_m = 128,
                              .power_2_scale = target.power_2_scale};
  }
  if (format == "mxfp8") {
    return MXFP8BlockScaling{.fp8_format = target.fp8_format,
                             .scale_rounding = target.scale_rounding};
  }
  if (format == "mxfp4") return MXFP4BlockScaling{.scale_rounding = target.scale_rounding};
  if (format == "nvfp4") return NVFP4BlockScaling{};
  if (format == "int4") {
    Recipe recipe = INT4Scaling{.group_size = target.group_size,
                                .is_signed = target.int4_signed,
                                .scale_dtype = target.int4_scale_dtype};
    validate(recipe);
    return recipe;
  }
  std::string known;
  for (const std::string& name : convert_formats()) known += (known.empty() ? "" : ", ") + name;
  fail<ValueError>("format: expected one of ", known, "; got '", format, "'");
}

Convention default_convention(const ConvertTarget& target) {
  const std::string& format = target.format;
  if (format == "fp8-block") return Convention::kDeepSeekV3;
  if (format == "fp8" || format == "fp8-channel" || format == "nvfp4" || format == "mxfp4" ||
      format == "int4") {
    return Convention::kCompressedTensors;
  }
  return Convention::kBreccia;
}

const std::vector<std::string>& default_ignore_patterns() {
  static const std::vector<std::string> patterns = {
      R"((^|\.)lm_head\.)",
      R"((^|\.)(embed_tokens|embeddings|embed|wte|wpe|word_embeddings)\.)",
      R"(norm[^.]*\.weight$)",
      R"((^|\.)(mlp|ffn)\.gate\.weight$)",  // MoE routers (DeepSeek V3/V4, Qwen-MoE, ...)
      R"(^(model\.)?head\.weight$)",        // DeepSeek-V4's output head
      R"((^|\.)(router|block_sparse_moe\.gate)\.)",
  };
  return patterns;
}

ConvertReport convert_model(const fs::path& source, const fs::path& destination,
                            const ConvertOptions& options, const ConvertPoll& poll) {
  const Convention convention = options.convention.value_or(default_convention(options.target));
  ConvertTarget target = options.target;
  if (convention == Convention::kDeepSeekV4) target.power_2_scale = true;  // E8M0 scales
  Planner planner{options, target_dtype(target), {}, {}, {}};
  const std::optional<Recipe> recipe = target_recipe(target);
  if (recipe && !convention_holds(convention, options.target.format)) {
    fail<ValueError>("convention: the ", to_string(convention), " convention cannot hold ",
                     options.target.format, " weights");
  }
  if (!recipe && !options.format_for.empty()) {
    fail<ValueError>("format_for: mixed formats need a quantized target, got --to ",
                     options.target.format, " (use ignore to keep weights high precision)");
  }
  for (const auto& [pattern, format] : options.format_for) {
    ConvertTarget chosen = target;
    chosen.format = format;
    const std::optional<Recipe> chosen_recipe = target_recipe(chosen);
    if (!chosen_recipe) {
      fail<ValueError>("format_for: '", pattern, "=", format,
                       "': expected a quantized format (use ignore to keep weights high "
                       "precision)");
    }
    if (!convention_holds(convention, format)) {
      fail<ValueError>("format_for: '", pattern, "=", format, "': the ", to_string(convention),
                       " convention cannot hold ", format, " weights");
    }
    try {
      planner.choices.push_back(
          {chosen, *chosen_recipe, pattern,
           std::regex(pattern, std::regex::ECMAScript | std::regex::optimize)});
    } catch (const std::regex_error& error) {
      fail<ValueError>("format_for: '", pattern,
                       "' is not a valid regular expression: ", error.what());
    }
  }
  if (recipe) planner.choices.push_back({target, *recipe, "", std::regex()});
  if (options.max_shard_bytes == 0) {
    fail<ValueError>("max_shard_bytes: expected a positive size, got 0");
  }
  std::vector<std::string> patterns = options.ignore;
  if (options.default_ignore) {
    patterns.insert(patterns.begin(), default_ignore_patterns().begin(),
                    default_ignore_patterns().end());
  }
  for (const std::string& pattern : patterns) {
    try {
      planner.ignore.emplace_back(pattern, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& error) {
      fail<ValueError>("ignore: '", pattern, "' is not a valid regular expression: ", error.what());
    }
    planner.ignore_text.push_back(pattern);
  }

  JobRunner runner(planner, options.device);  // refuses a device this build cannot use
  const ModelFiles files = list_model(source);
  check_destination(files, destination, options);
  const Checkpoint checkpoint = load_model(files, {.validate = options.validate});
  for (const auto& [name, entry] : checkpoint.tensors) {
    planner.source_quantized =
        planner.source_quantized || std::holds_alternative<ScaledTensor>(entry);
  }

  // Plan every tensor, in the source's order (shard, then name), before writing anything.
  std::vector<Job> jobs;
  for (const auto& [name, entry] : checkpoint.tensors) {
    Job job;
    job.name = name;
    job.entry = &entry;
    job.source = &checkpoint.sources.at(name);
    job.bytes_in = stored_bytes(entry);
    job.estimate_out = job.bytes_in;
    planner.plan(job);
    jobs.push_back(std::move(job));
  }
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const Job& a, const Job& b) { return a.source->file < b.source->file; });
  {
    std::map<std::string, std::vector<Job*>> fused;  // NVFP4 weights a serving stack fuses
    for (Job& job : jobs) {
      const std::string group = fused_group_of(job.name);
      if (!group.empty() &&
          (job.action == Action::kQuantize || job.action == Action::kRequantize) &&
          spec_of(job.choice->recipe).has_global_scale) {
        fused[group + "|" + job.choice->target.format].push_back(&job);
      }
    }
    for (auto& [group, members] : fused) {
      if (members.size() < 2) continue;
      float shared = 0.0f;
      for (const Job* member : members) {
        shared = numerics::nan_max(shared, amax_of(*member->entry));
      }
      for (Job* member : members) {
        member->shared_amax = shared;
        member->detail += ", global scale shared with its fused projections";
      }
    }
  }
  std::set<std::string> converted_modules;
  for (const Job& job : jobs) {
    if (job.action != Action::kKeep) converted_modules.insert(module_of(job.name));
  }
  for (Job& job : jobs) {
    if (!is_activation_scale(job.name)) continue;
    const std::string module = job.name.substr(0, job.name.rfind('.'));
    if (converted_modules.contains(module)) {
      job.action = Action::kDrop;
      job.detail = "activation scale of the source's quantization";
      job.estimate_out = 0;
    }
  }

  // Shards of at most max_shard_bytes (a tensor larger than that gets one of its own).
  std::size_t shard_count = 0;
  std::uint64_t filled = 0;
  for (Job& job : jobs) {
    if (job.action == Action::kDrop) continue;
    if (shard_count == 0 || (filled > 0 && filled + job.estimate_out > options.max_shard_bytes)) {
      ++shard_count;
      filled = 0;
    }
    job.shard = shard_count - 1;
    filled += job.estimate_out;
  }
  std::vector<std::string> shard_names;
  for (std::size_t i = 0; i < shard_count; ++i)
    shard_names.push_back(shard_file_name(i, shard_count));

  ConvertReport report;
  report.convention = convention;
  ConvertProgress progress;
  progress.tensors_total = jobs.size();
  for (const Job& job : jobs) progress.bytes_total += job.bytes_in;
  const auto report_progress = [&](const std::string& current) {
    progress.current = current;
    if (poll) poll(progress);
  };

  fs::create_directories(destination);
  // A directory with an index is a finished conversion: an earlier one's index goes before any
  // shard of this one is written, so that a failure never leaves new shards under an old index.
  fs::remove(destination / kIndexFileName);
  SaveOptions save_options;
  save_options.convention = convention;
  save_options.encode_global_scales = checkpoint.encode_global_scales;
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<std::string> kept_modules;

  // Each tensor is written into its shard as soon as it is converted, in the background while
  // the next one is converted, and a shard is committed while the next one starts: the
  // conversion holds a few tensors in memory, never a whole shard.
  std::unique_ptr<CheckpointWriter> writer;
  std::future<void> writing;
  const auto finish_writing = [&] {
    if (writing.valid()) writing.get();
  };
  try {
    std::size_t next = 0;
    for (std::size_t shard = 0; shard < shard_count; ++shard) {
      const fs::path path = destination / shard_names[shard];
      std::set<std::string> names;
      std::size_t end = next;
      std::uint64_t header_room = 4096;
      while (end < jobs.size() && (jobs[end].action == Action::kDrop || jobs[end].shard == shard)) {
        if (jobs[end].action != Action::kDrop) {
          names.insert(jobs[end].name);
          header_room += header_room_of(jobs[end].name, convention);
        }
        ++end;
      }
      const bool resumed = options.resume && shard_is_complete(path, names);
      if (!resumed) writer = std::make_unique<CheckpointWriter>(path, save_options, header_room);
      for (; next < end; ++next) {
        Job& job = jobs[next];
        ConvertedTensor done;
        done.name = job.name;
        done.action = action_name(job.action);
        done.detail = job.detail;
        done.bytes_in = job.bytes_in;
        if (job.action != Action::kDrop) {
          done.shard = shard_names[shard];
          if (job.linear_kept_high) kept_modules.push_back(module_of(job.name));
          if (!resumed) {
            report_progress(job.name);
            // The shard's next tensor to write, which a GPU starts while this one finishes.
            const Job* following = nullptr;
            for (std::size_t j = next + 1; j < end && following == nullptr; ++j) {
              if (jobs[j].action != Action::kDrop) following = &jobs[j];
            }
            CheckpointEntry output = runner.run(job, following);
            done.bytes_out = stored_bytes(output);
            finish_writing();
            writing = std::async(std::launch::async,
                                 [to = writer.get(), &name = job.name, output = std::move(output)] {
                                   to->add(name, output);
                                 });
          }
        }
        progress.bytes_done += job.bytes_in;
        ++progress.tensors_done;
        report.bytes_read += job.bytes_in;
        report.tensors.push_back(std::move(done));
      }
      if (resumed) {
        report.resumed_shards.push_back(shard_names[shard]);
        continue;
      }
      report_progress(shard_names[shard]);
      finish_writing();
      report.shards.push_back(shard_names[shard]);
      writing = std::async(std::launch::async, [done = std::move(writer)] { done->finish(); });
    }
    finish_writing();
  } catch (...) {
    if (writing.valid()) writing.wait();  // before the writer it may be using is destroyed
    runner.drain();                       // before the jobs and the checkpoint it reads
    throw;
  }

  // The other files, config.json, then the index: a directory with an index is complete.
  for (const fs::path& file : files.other_files) {
    const std::string name = file.filename().string();
    if (name == kModelOptConfigFileName) continue;  // describes the source's quantization
    report_progress(name);
    copy_file_atomically(file, destination / name);
    report.copied_files.push_back(name);
  }
  std::map<std::string, std::vector<std::string>> modules_by_format;
  for (const Job& job : jobs) {
    if (job.choice != nullptr) {
      modules_by_format[job.choice->target.format].push_back(module_of(job.name));
    }
  }
  if (files.config) {
    Json config = parse_json_file(*files.config);
    if (!config.is_object()) fail<ValueError>("'", files.config->string(), "': expected an object");
    // DeepSeek-V4's flag for FP4 experts, true no more once they are converted.
    const bool fp4_experts_kept = std::ranges::any_of(jobs, [](const Job& job) {
      return job.action == Action::kKeep && job.source->convention == "deepseek-v4" &&
             std::get<ScaledTensor>(*job.entry).spec().element == ElementFormat::kE2M1;
    });
    if (!fp4_experts_kept) config.erase("expert_dtype");
    if (planner.dtype) {
      config.erase("quantization_config");
      config["torch_dtype"] = dtype_config_name(*planner.dtype);
    } else {
      config["quantization_config"] =
          quantization_config(target, convention, kept_modules, modules_by_format);
    }
    write_file_atomically(destination / kConfigFileName, config.dump(2) + "\n");
    report.copied_files.emplace_back(kConfigFileName);
  }
  if (!planner.dtype && convention == Convention::kModelOpt) {
    Json quantization = quantization_config(target, convention, kept_modules, modules_by_format);
    quantization.erase("quant_method");
    const Json modelopt = {{"producer", {{"name", "breccia"}, {"version", "0.0.1"}}},
                           {"quantization", quantization}};
    write_file_atomically(destination / kModelOptConfigFileName, modelopt.dump(2) + "\n");
    report.copied_files.emplace_back(kModelOptConfigFileName);
  }
  for (const std::string& name : report.shards) {
    report.bytes_written += fs::file_size(destination / name);
  }
  // The index maps the names stored in each shard (a convention's companions included).
  std::uint64_t total_size = 0;
  for (const std::string& name : shard_names) {
    total_size += fs::file_size(destination / name);
    if (shard_count == 1) continue;
    for (const auto& [stored, tensor] : load(destination / name).tensors) weight_map[stored] = name;
  }
  if (shard_count > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total_size}}},
                                  {"weight_map", weight_map}};
    write_file_atomically(destination / kIndexFileName, index.dump(2) + "\n");
  }
  if (options.overwrite) {  // what an earlier conversion left that this one did not write
    for (const auto& item : fs::directory_iterator(destination)) {
      const std::string name = item.path().filename().string();
      const bool ours =
          std::find(shard_names.begin(), shard_names.end(), name) != shard_names.end();
      if ((ends_with(name, ".safetensors") && !ours) ||
          (name == kIndexFileName && shard_count == 1)) {
        fs::remove(item.path());
      }
    }
  }
  report.convention = convention;
  return report;
}

std::vector<TensorInfo> inspect_model(const fs::path& path) {
  const ModelFiles files = list_model(path);
  const Checkpoint checkpoint = load_model(files, {.validate = Validation::kOff});
  // Companions of the conventions (and breccia's own) that mean nothing without their weight;
  // activation and KV-cache scales stand alone.
  static const std::vector<std::string_view> kCompanions = {
      "_scale_inv", "_scale_2",      "_global_scale", "_zero_point", "_packed", "_shape",
      ".scale",     ".global_scale", ".zero_point",   "_blocks",     "_scales", "_scale"};
  static const std::vector<std::string_view> kStandalone = {
      "input_scale", "input_global_scale", "output_scale", "k_scale", "v_scale", "q_scale"};
  std::vector<TensorInfo> infos;
  for (const auto& [name, entry] : checkpoint.tensors) {
    const TensorSource& source = checkpoint.sources.at(name);
    TensorInfo info;
    info.name = name;
    info.convention = source.convention;
    info.file = source.file;
    info.stored = source.stored;
    info.bytes = stored_bytes(entry);
    if (const auto* scaled = std::get_if<ScaledTensor>(&entry)) {
      info.shape = scaled->logical_shape();
      info.format = recipe_repr(scaled->recipe());
      info.layout = layout_repr(scaled->layout());
      info.scale_shape = scaled->scale().shape();
      info.problems = numeric_anomalies(name, *scaled);
    } else {
      const Array& array = std::get<Array>(entry);
      info.shape = array.shape();
      info.format = dtype_name(array.dtype());
      const std::string last = name.substr(name.rfind('.') + 1);
      const bool standalone =
          std::find(kStandalone.begin(), kStandalone.end(), last) != kStandalone.end();
      for (const std::string_view suffix : kCompanions) {
        if (standalone || !ends_with(name, suffix) || name.size() == suffix.size()) continue;
        info.problems.push_back("'" + name + "' looks like the " + std::string(suffix) +
                                " companion of '" + name.substr(0, name.size() - suffix.size()) +
                                "', which is missing or not stored as that convention's weight");
        break;
      }
      if (array.dtype() == DType::kE4M3 || array.dtype() == DType::kE5M2 ||
          array.dtype() == DType::kE2M3 || array.dtype() == DType::kE3M2) {
        info.problems.push_back("'" + name + "' holds " + std::string(dtype_name(array.dtype())) +
                                " data but no scale was found for it");
      }
    }
    infos.push_back(std::move(info));
  }
  return infos;
}

TensorComparison compare(const std::string& name, const CheckpointEntry& value,
                         const CheckpointEntry& reference) {
  const auto* plain_value = std::get_if<Array>(&value);
  const auto* plain_reference = std::get_if<Array>(&reference);
  if (plain_value != nullptr && plain_reference != nullptr &&
      !is_wide_float(plain_value->dtype()) && plain_value->dtype() == plain_reference->dtype() &&
      plain_value->shape() == plain_reference->shape()) {  // integers: element bytes only
    const Array a = plain_value->contiguous();
    const Array b = plain_reference->contiguous();
    const std::size_t size = itemsize(a.dtype());
    TensorComparison out;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
      const auto offset = static_cast<std::size_t>(i) * size;
      out.mismatches += std::memcmp(static_cast<const char*>(a.data()) + offset,
                                    static_cast<const char*>(b.data()) + offset, size) != 0;
    }
    out.sqnr_db = out.mismatches == 0 ? std::numeric_limits<double>::infinity()
                                      : std::numeric_limits<double>::quiet_NaN();
    out.max_abs_error = out.mismatches == 0 ? 0 : std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  const auto decode = [&](const CheckpointEntry& entry, std::string_view which) {
    if (const auto* scaled = std::get_if<ScaledTensor>(&entry)) {
      return dequantize(*scaled, DType::kF64);
    }
    const Array& array = std::get<Array>(entry);
    if (!is_wide_float(array.dtype())) {
      fail<ValueError>(name, ": ", which, " is a ", dtype_name(array.dtype()),
                       " array; only float tensors and ScaledTensors compare by value");
    }
    Array wide = Array::empty(DType::kF64, array.shape());
    kernels::reference::convert(array.contiguous(), wide);
    return wide;
  };
  const Array a = decode(value, "the value");
  const Array b = decode(reference, "the reference");
  if (a.shape() != b.shape()) {
    fail<ValueError>(name, ": shapes differ: ", shape_str(a.shape()), " against ",
                     shape_str(b.shape()));
  }
  TensorComparison out;
  const auto* x = a.data_as<const double>();
  const auto* r = b.data_as<const double>();
  double signal = 0;
  double noise = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (std::isnan(x[i]) && std::isnan(r[i])) continue;
    if (std::bit_cast<std::uint64_t>(x[i]) != std::bit_cast<std::uint64_t>(r[i])) ++out.mismatches;
    const double error = x[i] - r[i];
    if (std::isnan(error)) {
      out.max_abs_error = std::numeric_limits<double>::quiet_NaN();
      noise = std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isnan(out.max_abs_error))
      out.max_abs_error = std::max(out.max_abs_error, std::abs(error));
    signal += r[i] * r[i];
    noise += error * error;
  }
  out.sqnr_db =
      noise == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(signal / noise);
  return out;
}

}  // namespace breccia::io
