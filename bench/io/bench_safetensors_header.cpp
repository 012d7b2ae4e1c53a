// io::load of safetensors files whose headers list a million tensors (docs/reliability.md):
// names in the order writers list them, and names out of order with every offset equal.
// Each load parses the header, checks the tiling and builds the map of a million Arrays; freeing
// them afterwards is left out of the time.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "breccia/io/safetensors.hpp"

namespace {

constexpr int kTensors = 1'000'000;

// A file of `kTensors` tiny tensors; `ordered`: sorted names and consecutive data, as writers
// produce; otherwise names in numeric order (not sorted as strings) and empty tensors at 0.
std::filesystem::path write_file(bool ordered) {
  const auto path =
      std::filesystem::temp_directory_path() /
      (ordered ? "breccia-bench-ordered.safetensors" : "breccia-bench-mixed.safetensors");
  std::string header = "{";
  std::string name;
  for (int i = 0; i < kTensors; ++i) {
    if (i > 0) header += ',';
    if (ordered) {
      const std::string number = std::to_string(i);
      name = "layers." + std::string(7 - number.size(), '0') + number + ".w";
      header += "\"" + name + R"(":{"dtype":"BF16","shape":[2,4],"data_offsets":[)" +
                std::to_string(16LL * i) + "," + std::to_string(16LL * i + 16) + "]}";
    } else {
      header += "\"t" + std::to_string(i) + R"(":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})";
    }
  }
  header += "}";
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t length = header.size();
  out.write(reinterpret_cast<const char*>(&length), 8);  // little-endian hosts
  out << header;
  if (ordered) out << std::string(16ULL * kTensors, '\0');
  return path;
}

void BM_LoadMillionTensorHeader(benchmark::State& state) {
  const std::filesystem::path path = write_file(state.range(0) == 1);
  for (auto _ : state) {
    breccia::io::SafetensorsFile file = breccia::io::load(path);
    benchmark::DoNotOptimize(file);
    // Freeing a million Arrays costs about half as much again; it is the caller's, not load's.
    state.PauseTiming();
    file = {};
    state.ResumeTiming();
  }
  std::filesystem::remove(path);
}
BENCHMARK(BM_LoadMillionTensorHeader)
    ->ArgName("writer_ordered")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
