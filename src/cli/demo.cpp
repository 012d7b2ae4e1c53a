// breccia-demo [file.safetensors]: quantizes every 2-D float tensor of a safetensors file under
// each recipe (default parameters) and reports size and accuracy per recipe. The file is read
// with its convention (breccia, DeepSeek-V3, compressed-tensors, ModelOpt): a weight stored
// quantized is one tensor, its dequantized values the input, and its scales are not weights.
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/io/checkpoint.hpp"
#include "breccia/ops.hpp"

namespace {

using breccia::Array;
using breccia::DType;

struct NamedTensor {
  std::string name;
  Array array;
};

struct Accuracy {
  double sqnr_db;
  double max_abs_error;
};

// Element values as double, exactly (every input dtype converts to double without rounding).
std::vector<double> values_of(const Array& array) {
  const Array contiguous = array.contiguous();
  const auto count = static_cast<std::size_t>(contiguous.numel());
  std::vector<double> values(count);
  for (std::size_t i = 0; i < count; ++i) {
    switch (contiguous.dtype()) {
      case DType::kF32:
        values[i] = contiguous.data_as<const float>()[i];
        break;
      case DType::kF64:
        values[i] = contiguous.data_as<const double>()[i];
        break;
      case DType::kF16:
        values[i] = breccia::formats::F16::decode(contiguous.data_as<const std::uint16_t>()[i]);
        break;
      case DType::kBF16:
        values[i] = breccia::formats::BF16::decode(contiguous.data_as<const std::uint16_t>()[i]);
        break;
      default:
        breccia::fail<breccia::TypeError>("tensor: expected a float array, got ",
                                          breccia::dtype_name(contiguous.dtype()));
    }
  }
  return values;
}

// SQNR = 10 log10(sum x^2 / sum (x - x_hat)^2), in double so fp32 round-off does not leak in.
Accuracy accuracy(const std::vector<double>& original, const std::vector<double>& restored) {
  double signal = 0.0;
  double noise = 0.0;
  double max_abs_error = 0.0;
  for (std::size_t i = 0; i < original.size(); ++i) {
    const double error = original[i] - restored[i];
    signal += original[i] * original[i];
    noise += error * error;
    max_abs_error = std::max(max_abs_error, std::abs(error));
  }
  const double sqnr =
      noise == 0.0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(signal / noise);
  return {sqnr, max_abs_error};
}

std::int64_t stored_bytes(const breccia::ScaledTensor& scaled) {
  std::int64_t bytes = scaled.data().nbytes() + scaled.scale().nbytes();
  if (scaled.global_scale()) bytes += scaled.global_scale()->nbytes();
  if (scaled.zero_point()) bytes += scaled.zero_point()->nbytes();
  return bytes;
}

std::vector<breccia::Recipe> default_recipes() {
  return {breccia::DelayedScaling{},     breccia::Float8CurrentScaling{},
          breccia::Float8BlockScaling{}, breccia::MXFP8BlockScaling{},
          breccia::MXFP6BlockScaling{},  breccia::MXFP4BlockScaling{},
          breccia::NVFP4BlockScaling{},  breccia::INT4Scaling{}};
}

std::string shape_text(const Array& array) {
  return breccia::shape_str(array.shape());
}

void report_recipe(const breccia::Recipe& recipe, const std::vector<NamedTensor>& tensors,
                   const std::vector<std::vector<double>>& originals) {
  std::printf("\n%s\n", breccia::recipe_repr(recipe).c_str());
  std::printf("  %-44s %-12s %10s %10s %7s %9s %11s\n", "tensor", "shape", "input B", "quant B",
              "ratio", "SQNR dB", "max |err|");
  std::int64_t total_input = 0;
  std::int64_t total_quantized = 0;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const NamedTensor& tensor = tensors[t];
    // Stateless cast: DelayedScaling behaves as one fresh step (numerics.md).
    std::optional<breccia::ScaledTensor> scaled;
    std::string skip_reason;
    try {
      scaled = breccia::cast(tensor.array, recipe);
    } catch (const breccia::ValueError& error) {  // a shape the recipe cannot block
      skip_reason = error.what();
    } catch (const breccia::UnsupportedError& error) {
      skip_reason = error.what();
    }
    if (!scaled) {
      std::printf("  %-44s %-12s skipped: %s\n", tensor.name.c_str(),
                  shape_text(tensor.array).c_str(), skip_reason.c_str());
      continue;
    }
    const std::vector<double> restored = values_of(breccia::dequantize(*scaled, DType::kF32));
    const Accuracy result = accuracy(originals[t], restored);
    const std::int64_t input_bytes = tensor.array.nbytes();
    const std::int64_t quantized_bytes = stored_bytes(*scaled);
    total_input += input_bytes;
    total_quantized += quantized_bytes;
    std::printf("  %-44s %-12s %10lld %10lld %6.2fx %9.2f %11.4g\n", tensor.name.c_str(),
                shape_text(tensor.array).c_str(), static_cast<long long>(input_bytes),
                static_cast<long long>(quantized_bytes),
                static_cast<double>(input_bytes) / static_cast<double>(quantized_bytes),
                result.sqnr_db, result.max_abs_error);
  }
  if (total_quantized > 0) {
    std::printf("  %-44s %-12s %10lld %10lld %6.2fx\n", "total (tensors not skipped)", "",
                static_cast<long long>(total_input), static_cast<long long>(total_quantized),
                static_cast<double>(total_input) / static_cast<double>(total_quantized));
  }
}

int run(const std::string& path) {
  const breccia::io::Checkpoint file = breccia::io::load_checkpoint(path);
  std::vector<NamedTensor> tensors;
  std::vector<std::vector<double>> originals;
  for (const auto& [name, entry] : file.tensors) {
    Array values;
    if (const auto* scaled = std::get_if<breccia::ScaledTensor>(&entry)) {
      if (scaled->logical_shape().size() != 2) continue;
      values = breccia::dequantize(*scaled);
      std::printf("%s: stored as %s; its dequantized values are the input\n", name.c_str(),
                  breccia::recipe_repr(scaled->recipe()).c_str());
    } else {
      values = std::get<Array>(entry);
      if (values.ndim() != 2 || !breccia::is_wide_float(values.dtype())) continue;
    }
    tensors.push_back({name, values});
    originals.push_back(values_of(values));
  }
  if (tensors.empty()) {
    std::fprintf(stderr,
                 "breccia-demo: %s: expected at least one 2-D float tensor (F32, F16, BF16 or "
                 "F64), got none among %zu tensors\n",
                 path.c_str(), file.tensors.size());
    return 1;
  }
  std::printf("%s: %zu 2-D float tensors\n", path.c_str(), tensors.size());
  for (const breccia::Recipe& recipe : default_recipes()) report_recipe(recipe, tensors, originals);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 ||
      (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    std::fprintf(stderr, "usage: breccia-demo [file.safetensors]\n(default: %s)\n",
                 BRECCIA_DEFAULT_WEIGHTS);
    return argc > 2 ? 2 : 0;
  }
  const std::string path = argc == 2 ? argv[1] : BRECCIA_DEFAULT_WEIGHTS;
  try {
    return run(path);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "breccia-demo: %s\n", error.what());
    return 1;
  }
}
