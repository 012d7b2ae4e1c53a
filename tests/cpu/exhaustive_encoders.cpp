// Every fp32 bit pattern (2^32 of them) through each SIMD element encoder of the CPU kernels,
// against the scalar rule (rules/tile.hpp). A separate command, not part of ctest (minutes of
// work): `build/breccia-cpu-exhaustive [format ...]`, formats E4M3 E5M2 E2M3 E3M2 E2M1 (all
// by default). Prints the mismatches per format and exits non-zero on any.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "breccia/kernels/cpu.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/rules/tile.hpp"

namespace {

using breccia::ElementFormat;

template <ElementFormat kFormat>
std::uint64_t mismatches() {
  constexpr std::uint64_t kRun = std::uint64_t{1} << 24;
  std::vector<float> values(kRun);
  std::vector<std::uint8_t> codes(kRun);
  std::uint64_t wrong = 0;
  for (std::uint64_t first = 0; first < (std::uint64_t{1} << 32); first += kRun) {
    for (std::uint64_t i = 0; i < kRun; ++i) {
      values[i] = std::bit_cast<float>(static_cast<std::uint32_t>(first + i));
    }
    breccia::kernels::cpu::encode_elements(kFormat, values, codes);
    for (std::uint64_t i = 0; i < kRun; ++i) {
      const std::uint8_t want = breccia::rules::encode_element<kFormat>(values[i]);
      if (codes[i] != want && wrong++ < 5) {
        std::printf("  0x%08llx -> 0x%02x, want 0x%02x\n",
                    static_cast<unsigned long long>(first + i), codes[i], want);
      }
    }
  }
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> wanted(argv + 1, argv + argc);
  if (wanted.empty()) wanted = {"E4M3", "E5M2", "E2M3", "E3M2", "E2M1"};
  std::printf("SIMD target: %s\n", breccia::kernels::cpu::simd_target().c_str());
  std::uint64_t total = 0;
  for (const std::string& name : wanted) {
    std::uint64_t wrong = 0;
    if (name == "E4M3") {
      wrong = mismatches<ElementFormat::kE4M3>();
    } else if (name == "E5M2") {
      wrong = mismatches<ElementFormat::kE5M2>();
    } else if (name == "E2M3") {
      wrong = mismatches<ElementFormat::kE2M3>();
    } else if (name == "E3M2") {
      wrong = mismatches<ElementFormat::kE3M2>();
    } else if (name == "E2M1") {
      wrong = mismatches<ElementFormat::kE2M1>();
    } else {
      std::fprintf(stderr, "unknown format '%s': expected E4M3, E5M2, E2M3, E3M2 or E2M1\n",
                   name.c_str());
      return 2;
    }
    std::printf("%s: %llu of 2^32 inputs differ from the scalar rule\n", name.c_str(),
                static_cast<unsigned long long>(wrong));
    total += wrong;
  }
  return total == 0 ? 0 : 1;
}
