// libFuzzer target: io::load on arbitrary bytes. Every accepted file's arrays are read in full
// (so a view past the mapping would fault under ASan), and must survive a save/load round trip.
#include <cstdint>
#include <cstring>
#include <string>

#include "breccia/io/safetensors.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace breccia;
  const std::string path = fuzz::file_holding(data, size);
  fuzz::expect_only_breccia_errors([&] {
    const io::SafetensorsFile file = io::load(path);
    std::uint64_t checksum = 0;
    for (const auto& [name, tensor] : file.tensors) {
      const Array contiguous = tensor.array.contiguous();
      const auto* bytes = static_cast<const unsigned char*>(contiguous.data());
      for (std::int64_t i = 0; i < contiguous.nbytes(); ++i) checksum += bytes[i];
    }
    // What load accepts, save must accept, and the copy must read back the same.
    static const std::string copy = fuzz::scratch_directory() + "/copy.safetensors";
    io::save(copy, file.tensors, file.metadata);
    const io::SafetensorsFile again = io::load(copy, {.copy = true});
    if (again.tensors.size() != file.tensors.size() || again.metadata != file.metadata) {
      __builtin_trap();
    }
    for (const auto& [name, tensor] : file.tensors) {
      const Array a = tensor.array.contiguous();
      const Array b = again.tensors.at(name).array.contiguous();
      if (a.shape() != b.shape() || a.nbytes() != b.nbytes() ||
          std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.nbytes())) != 0) {
        __builtin_trap();
      }
    }
    (void)checksum;
  });
  return 0;
}
