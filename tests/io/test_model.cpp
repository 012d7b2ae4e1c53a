// The model-directory engine from C++ (io/model.hpp), as a C++ caller uses it without the
// command line: a sharded bf16 directory converted, each quantized weight equal to cast() of
// its source, the rest copied bit for bit, the index naming what each shard holds; conversion
// back to bf16; inspect; and a hostile index refused before anything is written.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

#include "breccia/error.hpp"
#include "breccia/io/model.hpp"
#include "breccia/kernels/reference.hpp"
#include "breccia/ops.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

namespace fs = std::filesystem;

Array random_bf16(Shape shape, std::uint32_t seed) {
  Array values = Array::empty(DType::kF32, shape);
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (std::int64_t i = 0; i < values.numel(); ++i) values.data_as<float>()[i] = normal(random);
  Array out = Array::empty(DType::kBF16, shape);
  kernels::reference::convert(values, out);
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

bool same_bytes(const Array& a, const Array& b) {
  const Array x = a.contiguous(), y = b.contiguous();
  return x.nbytes() == y.nbytes() &&
         std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.nbytes())) == 0;
}

class ModelDirectory : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = root_ / "src";
    fs::create_directory(source_);
    first_ = {{"model.embed_tokens.weight", random_bf16({64, 256}, 1)},
              {"model.layers.0.self_attn.q_proj.weight", random_bf16({256, 256}, 2)}};
    second_ = {{"model.layers.0.mlp.down_proj.weight", random_bf16({256, 512}, 3)},
               {"model.norm.weight", random_bf16({256}, 4)}};
    io::save_checkpoint(source_ / "model-00001-of-00002.safetensors", entries(first_));
    io::save_checkpoint(source_ / "model-00002-of-00002.safetensors", entries(second_));
    std::string map;
    for (const auto* shard : {&first_, &second_}) {
      const std::string file = shard == &first_ ? "model-00001-of-00002.safetensors"
                                                : "model-00002-of-00002.safetensors";
      for (const auto& [name, array] : *shard) {
        map += (map.empty() ? "" : ", ") + ("\"" + name + "\": \"" + file + "\"");
      }
    }
    write_text(source_ / "model.safetensors.index.json",
               "{\"metadata\": {}, \"weight_map\": {" + map + "}}");
    write_text(source_ / "config.json", "{\"model_type\": \"llama\"}");
    write_text(source_ / "tokenizer.json", "{}");
  }

  static std::map<std::string, io::CheckpointEntry> entries(
      const std::map<std::string, Array>& arrays) {
    std::map<std::string, io::CheckpointEntry> out;
    for (const auto& [name, array] : arrays) out.emplace(name, array);
    return out;
  }

  ::breccia::test_support::TemporaryDirectory temporary_{"breccia-model"};
  const fs::path& root_ = temporary_.path();
  fs::path source_;
  std::map<std::string, Array> first_, second_;
};

TEST_F(ModelDirectory, ConvertsWeightsToWhatCastGivesAndBack) {
  io::ConvertOptions options;
  options.target.format = "nvfp4";
  const io::ConvertReport report = io::convert_model(source_, root_ / "nvfp4", options);
  EXPECT_EQ(report.convention, io::Convention::kCompressedTensors);
  EXPECT_TRUE(fs::exists(root_ / "nvfp4" / "config.json"));
  EXPECT_TRUE(fs::exists(root_ / "nvfp4" / "tokenizer.json"));

  const io::Checkpoint converted = io::load_model(io::list_model(root_ / "nvfp4"));
  for (const std::string name :
       {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"}) {
    SCOPED_TRACE(name);
    const Array& source = first_.contains(name) ? first_.at(name) : second_.at(name);
    const ScaledTensor want = cast(source, NVFP4BlockScaling{});
    const auto& got = std::get<ScaledTensor>(converted.tensors.at(name));
    EXPECT_TRUE(same_bytes(got.data(), want.data()));
    EXPECT_TRUE(same_bytes(got.scale(), want.scale()));
    EXPECT_TRUE(same_bytes(dequantize(got, DType::kF32), dequantize(want, DType::kF32)));
    EXPECT_EQ(converted.sources.at(name).convention, "compressed-tensors");
  }
  // Embeddings and norms stay as they were, bit for bit.
  for (const std::string name : {"model.embed_tokens.weight", "model.norm.weight"}) {
    const Array& source = first_.contains(name) ? first_.at(name) : second_.at(name);
    EXPECT_TRUE(same_bytes(std::get<Array>(converted.tensors.at(name)), source)) << name;
  }

  io::ConvertOptions back;
  back.target.format = "bf16";
  io::convert_model(root_ / "nvfp4", root_ / "bf16", back);
  const io::Checkpoint restored = io::load_model(io::list_model(root_ / "bf16"));
  const auto& q =
      std::get<ScaledTensor>(converted.tensors.at("model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(
      same_bytes(std::get<Array>(restored.tensors.at("model.layers.0.mlp.down_proj.weight")),
                 dequantize(q, DType::kBF16)));

  const std::vector<io::TensorInfo> infos = io::inspect_model(root_ / "nvfp4");
  EXPECT_EQ(infos.size(), 4u);
  for (const io::TensorInfo& info : infos) EXPECT_TRUE(info.problems.empty()) << info.name;
}

TEST_F(ModelDirectory, AnIndexNamingAnAbsentTensorIsRefusedBeforeWriting) {
  write_text(source_ / "model.safetensors.index.json",
             "{\"weight_map\": {\"model.embed_tokens.weight\": "
             "\"model-00001-of-00002.safetensors\", \"ghost.weight\": "
             "\"model-00001-of-00002.safetensors\"}}");
  io::ConvertOptions options;
  options.target.format = "fp8-block";
  EXPECT_THROW(io::convert_model(source_, root_ / "out", options), ValueError);
  EXPECT_FALSE(fs::exists(root_ / "out") && !fs::is_empty(root_ / "out"));
}

TEST_F(ModelDirectory, ADestinationInsideTheSourceIsRefused) {
  io::ConvertOptions options;
  options.target.format = "fp8";
  EXPECT_THROW(io::convert_model(source_, source_ / "inside", options), ValueError);
  EXPECT_FALSE(fs::exists(source_ / "inside"));
}

}  // namespace
}  // namespace breccia
