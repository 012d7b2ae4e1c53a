// libFuzzer target: io::load_checkpoint (breccia's metadata and the DeepSeek-V3,
// compressed-tensors and ModelOpt conventions) on arbitrary bytes, validation in "warn" mode so
// that the anomaly scan runs; every ScaledTensor it builds is then dequantized.
#include <cstdint>
#include <string>
#include <variant>

#include "breccia/io/checkpoint.hpp"
#include "breccia/ops.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace breccia;
  const std::string path = fuzz::file_holding(data, size);
  fuzz::expect_only_breccia_errors([&] {
    const io::Checkpoint checkpoint =
        io::load_checkpoint(path, {.validate = io::Validation::kWarn});
    for (const auto& [name, entry] : checkpoint.tensors) {
      if (const auto* tensor = std::get_if<ScaledTensor>(&entry)) {
        const Array values = dequantize(*tensor, DType::kF32);
        if (values.shape() != tensor->logical_shape()) __builtin_trap();
      }
    }
  });
  return 0;
}
