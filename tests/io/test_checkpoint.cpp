#include "breccia/io/checkpoint.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <tuple>

#include "breccia/error.hpp"
#include "breccia/formats/formats.hpp"
#include "breccia/ops.hpp"
#include "test_support.hpp"

namespace breccia::io {
namespace {

namespace fs = std::filesystem;

std::string array_bytes(const Array& array) {
  const Array contiguous = array.contiguous();
  return {static_cast<const char*>(contiguous.data()),
          static_cast<std::size_t>(contiguous.nbytes())};
}

Array random_floats(Shape shape, std::mt19937& random) {
  Array array = Array::empty(DType::kF32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (std::int64_t i = 0; i < array.numel(); ++i) array.data_as<float>()[i] = normal(random);
  return array;
}

// Scales as quantizers make them: positive (negative ones are a numeric anomaly).
Array positive_floats(Shape shape, std::mt19937& random) {
  Array out = random_floats(std::move(shape), random);
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    out.data_as<float>()[i] = std::fabs(out.data_as<float>()[i]) + 0.01f;
  }
  return out;
}

Array random_bytes(DType dtype, Shape shape, std::mt19937& random) {
  Array array = Array::empty(dtype, std::move(shape));
  auto* bytes = static_cast<unsigned char*>(array.data());
  for (std::int64_t i = 0; i < array.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(random());
  return array;
}

// Finite, non-negative E4M3 codes (the block scales of real checkpoints).
Array random_e4m3_scales(Shape shape, std::mt19937& random) {
  Array array = Array::empty(DType::kE4M3, std::move(shape));
  for (std::int64_t i = 0; i < array.numel(); ++i) {
    array.data_as<std::uint8_t>()[i] = static_cast<std::uint8_t>(random() % 0x7F);
  }
  return array;
}

Array f32_values(Shape shape, std::initializer_list<float> values) {
  Array array = Array::empty(DType::kF32, std::move(shape));
  std::copy(values.begin(), values.end(), array.data_as<float>());
  return array;
}

float e2m1(std::uint8_t nibble) {
  return formats::E2M1::decode(nibble & 0xF);
}

std::int64_t ulp_distance(float a, float b) {
  const auto ordered = [](float x) {
    const auto bits = std::bit_cast<std::int32_t>(x);
    return bits < 0 ? std::int64_t{INT32_MIN} - bits : std::int64_t{bits};
  };
  return std::llabs(ordered(a) - ordered(b));
}

// `exact_scale_shape` false: the scale may be stored as () or (1,) (or (M,) as (M, 1)), as a
// convention spells it.
void expect_same(const ScaledTensor& a, const ScaledTensor& b, bool exact_scale_shape = true) {
  EXPECT_EQ(a.recipe(), b.recipe()) << recipe_repr(a.recipe()) << " vs " << recipe_repr(b.recipe());
  EXPECT_EQ(a.layout(), b.layout());
  EXPECT_EQ(a.logical_shape(), b.logical_shape());
  EXPECT_EQ(array_bytes(a.data()), array_bytes(b.data()));
  if (exact_scale_shape) EXPECT_EQ(a.scale().shape(), b.scale().shape());
  EXPECT_EQ(array_bytes(a.scale()), array_bytes(b.scale()));
  ASSERT_EQ(a.global_scale().has_value(), b.global_scale().has_value());
  if (a.global_scale()) EXPECT_EQ(array_bytes(*a.global_scale()), array_bytes(*b.global_scale()));
  ASSERT_EQ(a.zero_point().has_value(), b.zero_point().has_value());
  if (a.zero_point()) EXPECT_EQ(array_bytes(*a.zero_point()), array_bytes(*b.zero_point()));
}

Array scalar_of(float value) {
  Array out = Array::empty(DType::kF32, {});
  out.data_as<float>()[0] = value;
  return out;
}

const ScaledTensor& scaled(const Checkpoint& checkpoint, const std::string& name) {
  const auto found = checkpoint.tensors.find(name);
  if (found == checkpoint.tensors.end()) throw std::runtime_error("no tensor " + name);
  return std::get<ScaledTensor>(found->second);
}

class CheckpointTest : public ::testing::Test {
 protected:
  fs::path path(const std::string& name) const { return directory_ / name; }
  static std::string read(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // Writes `tensors` as another program would (the raw format, with PyTorch's metadata).
  fs::path write_raw(const std::string& name, const std::map<std::string, StoredTensor>& tensors) {
    save(path(name), tensors, {{"format", "pt"}});
    return path(name);
  }
  // Loading the raw file, then saving it back in `convention`, gives the same bytes.
  void expect_byte_identical_rewrite(const fs::path& original, Convention convention) {
    const Checkpoint loaded = load_checkpoint(original);
    save_checkpoint(path("rewritten.safetensors"), loaded.tensors,
                    {.convention = convention,
                     .extra_metadata = loaded.metadata,
                     .encode_global_scales = loaded.encode_global_scales});
    EXPECT_EQ(read(path("rewritten.safetensors")), read(original));
  }
  template <class Error = ValueError>
  std::string load_error(const fs::path& file) {
    try {
      load_checkpoint(file);
    } catch (const Error& error) {
      return error.what();
    } catch (const std::exception& error) {
      ADD_FAILURE() << "expected another exception type, got: " << error.what();
      return {};
    }
    ADD_FAILURE() << "expected " << file << " to be rejected";
    return {};
  }

  ::breccia::test_support::TemporaryDirectory temporary_{"breccia-checkpoint"};
  const fs::path& directory_ = temporary_.path();
};

using ::breccia::test_support::contains;

// ---------------------------------------------------------------------------------------------
// breccia's own layout

struct RecipeCase {
  Recipe recipe;
  int axis;
};

TEST_F(CheckpointTest, EveryRecipeRoundTripsByteForByte) {
  const RecipeCase cases[] = {
      {DelayedScaling{}, -1},
      {Float8CurrentScaling{.fp8_format = Fp8Format::kE5M2}, -1},
      {Float8BlockScaling{}, -1},
      {Float8BlockScaling{.block_k = 128, .block_m = 128, .power_2_scale = false}, -1},
      {Float8BlockScaling{}, -2},
      {MXFP8BlockScaling{}, -1},
      {MXFP8BlockScaling{.fp8_format = Fp8Format::kE5M2}, -2},
      {NVFP4BlockScaling{}, -1},
      {NVFP4BlockScaling{}, -2},
      {INT4Scaling{}, -1},
      {INT4Scaling{.group_size = 32, .is_signed = false, .scale_dtype = Int4ScaleDType::kBF16}, -1},
      {INT4Scaling{.group_size = -1, .scale_dtype = Int4ScaleDType::kF32}, -1},
  };
  std::mt19937 random(1);
  std::map<std::string, CheckpointEntry> tensors;
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const Array x = random_floats({2, 256, 256}, random);
    tensors.emplace("layer" + std::to_string(i) + ".weight",
                    cast(x, cases[i].recipe, CastOptions{.axis = cases[i].axis}));
  }
  tensors.emplace("norm.bias", random_floats({256}, random));
  save_checkpoint(path("model.safetensors"), tensors, {.extra_metadata = {{"origin", "test"}}});

  const Checkpoint loaded = load_checkpoint(path("model.safetensors"));
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (const auto& [name, entry] : tensors) {
    SCOPED_TRACE(name);
    if (const auto* array = std::get_if<Array>(&entry)) {
      const Array& back = std::get<Array>(loaded.tensors.at(name));
      EXPECT_EQ(back.dtype(), array->dtype());
      EXPECT_EQ(array_bytes(back), array_bytes(*array));
    } else {
      const ScaledTensor& back = scaled(loaded, name);
      expect_same(back, std::get<ScaledTensor>(entry));
      // Zero-copy: data and scale borrow the same mapping.
      EXPECT_EQ(back.data().owner(), back.scale().owner());
    }
  }
  EXPECT_EQ(loaded.metadata, (Metadata{{"format", "pt"}, {"origin", "test"}}));

  save_checkpoint(path("again.safetensors"), loaded.tensors, {.extra_metadata = loaded.metadata});
  EXPECT_EQ(read(path("again.safetensors")), read(path("model.safetensors")));
}

// CheckpointWriter (one entry at a time, as the converter writes) stores what save_checkpoint
// stores: the same stored tensors and metadata, in another order in the file.
TEST_F(CheckpointTest, WriterStoresWhatSaveCheckpointStores) {
  std::mt19937 random(5);
  const std::pair<Convention, std::vector<Recipe>> cases[] = {
      {Convention::kBreccia, {Float8BlockScaling{}, NVFP4BlockScaling{}, INT4Scaling{}}},
      {Convention::kCompressedTensors,
       {NVFP4BlockScaling{}, INT4Scaling{.group_size = 32, .is_signed = false}}},
      {Convention::kDeepSeekV3, {Float8BlockScaling{.block_m = 128, .power_2_scale = false}}},
  };
  for (const auto& [convention, recipes] : cases) {
    SCOPED_TRACE(std::string(to_string(convention)));
    std::map<std::string, CheckpointEntry> tensors;
    for (std::size_t i = 0; i < recipes.size(); ++i) {
      tensors.emplace("layers." + std::to_string(i) + ".weight",
                      cast(random_floats({256, 384}, random), recipes[i]));
    }
    tensors.emplace("norm.weight", random_floats({7}, random));  // odd size: waits for finish()
    const SaveOptions options{.convention = convention, .extra_metadata = {{"origin", "test"}}};
    save_checkpoint(path("saved.safetensors"), tensors, options);
    CheckpointWriter writer(path("streamed.safetensors"), options, 64);  // room outgrown
    for (const auto& [name, entry] : tensors) writer.add(name, entry);
    writer.finish();

    const SafetensorsFile saved = load(path("saved.safetensors"));
    const SafetensorsFile streamed = load(path("streamed.safetensors"));
    EXPECT_EQ(streamed.metadata, saved.metadata);
    ASSERT_EQ(streamed.tensors.size(), saved.tensors.size());
    for (const auto& [name, tensor] : saved.tensors) {
      SCOPED_TRACE(name);
      const StoredTensor& other = streamed.tensors.at(name);
      EXPECT_EQ(other.dtype, tensor.dtype);
      EXPECT_EQ(other.array.shape(), tensor.array.shape());
      EXPECT_EQ(array_bytes(other.array), array_bytes(tensor.array));
    }
    // Read back as a checkpoint and saved again, it is save_checkpoint's file byte for byte.
    const Checkpoint loaded = load_checkpoint(path("streamed.safetensors"));
    save_checkpoint(path("again.safetensors"), loaded.tensors,
                    {.convention = convention,
                     .extra_metadata = loaded.metadata,
                     .encode_global_scales = loaded.encode_global_scales});
    EXPECT_EQ(read(path("again.safetensors")), read(path("saved.safetensors")));
  }
}

TEST_F(CheckpointTest, StoresEachPartUnderTheEcosystemsDTypes) {
  std::mt19937 random(2);
  const Array x = random_floats({4, 64}, random);
  save_checkpoint(path("m.safetensors"),
                  {{"fp8", cast(x, Float8CurrentScaling{})},
                   {"mx", cast(x, MXFP8BlockScaling{})},
                   {"nv", cast(x, NVFP4BlockScaling{})},
                   {"i4", cast(x, INT4Scaling{.group_size = 32, .is_signed = false})}});
  const SafetensorsFile file = load(path("m.safetensors"));
  const auto dtype = [&](const std::string& name) { return file.tensors.at(name).dtype; };
  EXPECT_EQ(dtype("fp8"), SafetensorsDType::kF8E4M3);
  EXPECT_EQ(dtype("fp8.scale"), SafetensorsDType::kF32);
  EXPECT_EQ(dtype("mx"), SafetensorsDType::kF8E4M3);
  EXPECT_EQ(dtype("mx.scale"), SafetensorsDType::kF8E8M0);
  EXPECT_EQ(dtype("nv"), SafetensorsDType::kF4);
  EXPECT_EQ(dtype("nv.scale"), SafetensorsDType::kF8E4M3);
  EXPECT_EQ(dtype("nv.global_scale"), SafetensorsDType::kF32);
  EXPECT_EQ(dtype("i4"), SafetensorsDType::kU8);
  EXPECT_EQ(dtype("i4.scale"), SafetensorsDType::kF16);
  EXPECT_EQ(dtype("i4.zero_point"), SafetensorsDType::kU8);
  EXPECT_TRUE(file.metadata.contains("breccia"));
}

TEST_F(CheckpointTest, SaveRejectsReservedMetadataAndCollidingNames) {
  std::mt19937 random(3);
  const ScaledTensor w = cast(random_floats({4, 32}, random), Float8CurrentScaling{});
  EXPECT_THROW(
      save_checkpoint(path("a.safetensors"), {{"w", w}}, {.extra_metadata = {{"breccia", "{}"}}}),
      ValueError);
  EXPECT_THROW(save_checkpoint(path("b.safetensors"), {{"w", w}, {"w.scale", w.scale()}}),
               ValueError);
  EXPECT_FALSE(fs::exists(path("a.safetensors")));
  EXPECT_FALSE(fs::exists(path("b.safetensors")));
}

// Lying metadata: a file whose breccia record does not describe its tensors.
class LyingMetadataTest : public CheckpointTest {
 protected:
  fs::path with_record(const std::string& record,
                       std::map<std::string, StoredTensor> tensors = {}) {
    std::mt19937 random(4);
    if (tensors.empty()) {
      const ScaledTensor w = cast(random_floats({4, 64}, random), Float8CurrentScaling{});
      tensors = {{"w", {w.data(), SafetensorsDType::kF8E4M3}},
                 {"w.scale", {w.scale(), SafetensorsDType::kF32}}};
    }
    save(path("lying.safetensors"), tensors, {{"breccia", record}});
    return path("lying.safetensors");
  }
  static constexpr const char* kFp8 =
      R"({"recipe": {"recipe": "Float8CurrentScaling"}, "layout": {"layout": "PerTensor"}})";
};

TEST_F(LyingMetadataTest, NamingAMissingTensor) {
  const std::string message = load_error(with_record(std::string(R"({"v": )") + kFp8 + "}"));
  EXPECT_TRUE(contains(message, "'v'")) << message;
}

TEST_F(LyingMetadataTest, NamingATensorWithoutItsScale) {
  std::mt19937 random(5);
  const std::string message = load_error(with_record(
      std::string(R"({"w": )") + kFp8 + "}",
      {{"w", {random_bytes(DType::kE4M3, {4, 64}, random), SafetensorsDType::kF8E4M3}}}));
  EXPECT_TRUE(contains(message, "'w.scale'")) << message;
}

TEST_F(LyingMetadataTest, WithAScaleShapeThatDoesNotFitTheRecipe) {
  const std::string message = load_error(with_record(
      R"({"w": {"recipe": {"recipe": "MXFP8BlockScaling"},
                "layout": {"layout": "PerBlockMN", "block_m": 1, "block_n": 32}}})"));
  EXPECT_TRUE(contains(message, "MXFP8BlockScaling")) << message;
  EXPECT_TRUE(contains(message, "scale")) << message;
}

TEST_F(LyingMetadataTest, WithALayoutTheRecipeDoesNotAllow) {
  const std::string message = load_error(with_record(
      R"({"w": {"recipe": {"recipe": "Float8CurrentScaling"},
                "layout": {"layout": "PerBlockK", "block_size": 32}}})"));
  EXPECT_TRUE(contains(message, "layout")) << message;
}

TEST_F(LyingMetadataTest, WithDataStoredInAnotherFormatsDType) {
  std::mt19937 random(6);
  const std::string message = load_error(
      with_record(std::string(R"({"w": )") + kFp8 + "}",
                  {{"w", {random_bytes(DType::kE5M2, {4, 64}, random), SafetensorsDType::kF8E5M2}},
                   {"w.scale", {f32_values({}, {1.0f}), SafetensorsDType::kF32}}}));
  EXPECT_TRUE(contains(message, "F8_E5M2")) << message;
}

TEST_F(LyingMetadataTest, WithAGlobalScaleOnANonNvfp4Tensor) {
  std::mt19937 random(7);
  const ScaledTensor w = cast(random_floats({4, 64}, random), Float8CurrentScaling{});
  const std::string message = load_error(
      with_record(std::string(R"({"w": )") + kFp8 + "}",
                  {{"w", {w.data(), SafetensorsDType::kF8E4M3}},
                   {"w.scale", {w.scale(), SafetensorsDType::kF32}},
                   {"w.global_scale", {f32_values({}, {1.0f}), SafetensorsDType::kF32}}}));
  EXPECT_TRUE(contains(message, "global_scale")) << message;
}

TEST_F(LyingMetadataTest, ThatIsNotJsonOrNotARecord) {
  EXPECT_TRUE(contains(load_error(with_record("{not json")), "JSON"));
  EXPECT_TRUE(contains(load_error(with_record("[1, 2]")), "object"));
  EXPECT_TRUE(contains(load_error(with_record(R"({"w": {"recipe": {}}})")), "\"layout\""));
  EXPECT_TRUE(contains(load_error(with_record(
                           R"({"w": {"recipe": {"recipe": "NoSuchRecipe"},
                                     "layout": {"layout": "PerTensor"}}})")),
                       "NoSuchRecipe"));
}

// ---------------------------------------------------------------------------------------------
// Conventions

TEST_F(CheckpointTest, ReadsDeepSeekV3Fp8AndDequantizesPerTile) {
  std::mt19937 random(8);
  const std::int64_t out = 200, in = 300;  // neither a multiple of 128: partial edge tiles
  Array data = random_bytes(DType::kE4M3, {out, in}, random);
  for (std::int64_t i = 0; i < data.numel(); ++i)
    data.data_as<std::uint8_t>()[i] &= 0xF7;  // no NaN
  Array scale_inv = positive_floats({2, 3}, random);
  const fs::path file = write_raw(
      "ds.safetensors",
      {{"model.layers.0.mlp.down_proj.weight", {data, SafetensorsDType::kF8E4M3}},
       {"model.layers.0.mlp.down_proj.weight_scale_inv", {scale_inv, SafetensorsDType::kF32}},
       {"model.norm.weight", {random_floats({8}, random), SafetensorsDType::kF32}}});
  const Checkpoint loaded = load_checkpoint(file);
  ASSERT_EQ(loaded.tensors.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<Array>(loaded.tensors.at("model.norm.weight")));
  const ScaledTensor& w = scaled(loaded, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(w.recipe(),
            Recipe(Float8BlockScaling{.block_k = 128, .block_m = 128, .power_2_scale = false}));
  EXPECT_EQ(w.layout(), Layout(PerBlockMN{128, 128}));
  const Array values = dequantize(w);
  for (std::int64_t r = 0; r < out; ++r) {
    for (std::int64_t c = 0; c < in; ++c) {
      const float expected = formats::E4M3::decode(data.data_as<std::uint8_t>()[r * in + c]) *
                             scale_inv.data_as<float>()[(r / 128) * 3 + c / 128];
      ASSERT_EQ(values.data_as<float>()[r * in + c], expected) << r << "," << c;
    }
  }
  expect_byte_identical_rewrite(file, Convention::kDeepSeekV3);
}

// An fp32 G whose reciprocal's reciprocal is not G, so that only keeping G keeps the bytes.
float encode_factor_that_does_not_survive_two_reciprocals() {
  for (float g = 1.5f;; g = std::nextafter(g, 2.0f)) {
    if (1.0f / (1.0f / g) != g) return g * 1024.0f;
  }
}

TEST_F(CheckpointTest, ReadsCompressedTensorsNvfp4WithItsEncodeGlobalScale) {
  std::mt19937 random(9);
  const Array packed = random_bytes(DType::kU8, {6, 32}, random);
  const Array block_scales = random_e4m3_scales({6, 4}, random);
  const float encode = encode_factor_that_does_not_survive_two_reciprocals();
  const fs::path file =
      write_raw("ct.safetensors",
                {{"proj.weight_packed", {packed, SafetensorsDType::kU8}},
                 {"proj.weight_scale", {block_scales, SafetensorsDType::kF8E4M3}},
                 {"proj.weight_global_scale", {f32_values({1}, {encode}), SafetensorsDType::kF32}},
                 {"proj.input_global_scale", {f32_values({1}, {3.0f}), SafetensorsDType::kF32}}});
  const Checkpoint loaded = load_checkpoint(file);
  const ScaledTensor& w = scaled(loaded, "proj.weight");
  EXPECT_EQ(w.recipe(), Recipe(NVFP4BlockScaling{}));
  EXPECT_EQ(w.layout(), Layout(PerBlockMN{1, 16}));
  EXPECT_EQ(w.data().owner(), w.scale().owner());  // both borrow the mapping
  EXPECT_EQ(w.global_scale()->data_as<float>()[0], 1.0f / encode);
  EXPECT_TRUE(std::holds_alternative<Array>(loaded.tensors.at("proj.input_global_scale")));

  // compressed-tensors' own formula: e2m1(q) * (e4m3(scale) / G), low nibble = even column.
  const Array values = dequantize(w);
  std::int64_t worst = 0;
  for (std::int64_t r = 0; r < 6; ++r) {
    for (std::int64_t k = 0; k < 64; ++k) {
      const std::uint8_t byte = packed.data_as<std::uint8_t>()[r * 32 + k / 2];
      const float q = e2m1(k % 2 == 0 ? byte : byte >> 4);
      const float s = formats::E4M3::decode(block_scales.data_as<std::uint8_t>()[r * 4 + k / 16]);
      worst = std::max(worst, ulp_distance(values.data_as<float>()[r * 64 + k], q * (s / encode)));
    }
  }
  EXPECT_LE(worst, 2);  // breccia multiplies by 1/G; the convention divides by G

  expect_byte_identical_rewrite(file, Convention::kCompressedTensors);
  // Without the remembered G the writer falls back to 1/global_scale, one rounding away.
  save_checkpoint(path("no-hint.safetensors"), loaded.tensors,
                  {.convention = Convention::kCompressedTensors});
  const float rewritten = load(path("no-hint.safetensors"))
                              .tensors.at("proj.weight_global_scale")
                              .array.data_as<float>()[0];
  EXPECT_EQ(rewritten, 1.0f / (1.0f / encode));
}

// compressed-tensors pack-quantized words: eight stored nibbles per int32, low end first.
Array pack_nibbles_into_words(const std::vector<std::uint8_t>& nibbles, std::int64_t rows,
                              std::int64_t cols) {
  const std::int64_t words = (cols + 7) / 8;
  Array out = Array::zeros(DType::kI32, {rows, words});
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      auto& word = out.data_as<std::uint32_t>()[r * words + c / 8];
      word |= std::uint32_t{nibbles[r * cols + c]} << (4 * (c % 8));
    }
  }
  return out;
}

Array shape_tensor(std::int64_t rows, std::int64_t cols) {
  Array out = Array::empty(DType::kI64, {2});
  out.data_as<std::int64_t>()[0] = rows;
  out.data_as<std::int64_t>()[1] = cols;
  return out;
}

TEST_F(CheckpointTest, ReadsCompressedTensorsInt4SymmetricAndAsymmetric) {
  std::mt19937 random(10);
  for (const std::int64_t cols : {64, 12}) {  // 12: the last word of each row is half padding
    for (const bool asymmetric : {false, true}) {
      SCOPED_TRACE(std::to_string(cols) + (asymmetric ? " asymmetric" : " symmetric"));
      const std::int64_t rows = 9, group = cols == 64 ? 32 : 12, groups = cols / group;
      std::vector<std::uint8_t> nibbles(rows * cols);
      for (auto& nibble : nibbles) nibble = random() % 16;
      std::vector<std::uint8_t> zero_nibbles(rows * groups);
      for (auto& nibble : zero_nibbles) nibble = random() % 16;
      Array scale = Array::empty(DType::kF16, {rows, groups});
      for (std::int64_t i = 0; i < scale.numel(); ++i) {
        scale.data_as<std::uint16_t>()[i] =
            formats::F16::encode(0.01f * static_cast<float>(1 + random() % 200));
      }
      std::map<std::string, StoredTensor> raw = {
          {"w.weight_packed",
           {pack_nibbles_into_words(nibbles, rows, cols), SafetensorsDType::kI32}},
          {"w.weight_scale", {scale, SafetensorsDType::kF16}},
          {"w.weight_shape", {shape_tensor(rows, cols), SafetensorsDType::kI64}}};
      if (asymmetric) {
        // Zero points are packed along rows: word (i, g) holds rows 8i..8i+7 of group g.
        Array words = Array::zeros(DType::kI32, {(rows + 7) / 8, groups});
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t g = 0; g < groups; ++g) {
            words.data_as<std::uint32_t>()[(r / 8) * groups + g] |=
                std::uint32_t{zero_nibbles[r * groups + g]} << (4 * (r % 8));
          }
        }
        raw.emplace("w.weight_zero_point", StoredTensor{words, SafetensorsDType::kI32});
      }
      const fs::path file = write_raw("int4.safetensors", raw);
      const Checkpoint loaded = load_checkpoint(file);
      const ScaledTensor& w = scaled(loaded, "w.weight");
      EXPECT_EQ(w.recipe(), Recipe(INT4Scaling{.group_size = group == cols ? -1 : group,
                                               .is_signed = !asymmetric,
                                               .scale_dtype = Int4ScaleDType::kF16}));
      // The convention's formula: (stored - 8) * scale, or (stored - stored_zero) * scale.
      const Array values = dequantize(w);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          const int stored = nibbles[r * cols + c];
          const int zero = asymmetric ? zero_nibbles[r * groups + c / group] : 8;
          const float s =
              formats::F16::decode(scale.data_as<std::uint16_t>()[r * groups + c / group]);
          ASSERT_EQ(values.data_as<float>()[r * cols + c], static_cast<float>(stored - zero) * s);
        }
      }
      expect_byte_identical_rewrite(file, Convention::kCompressedTensors);
    }
  }
}

TEST_F(CheckpointTest, ReadsFp8WeightScalePerTensorPerChannelAndPerBlock) {
  std::mt19937 random(11);
  Array data = random_bytes(DType::kE4M3, {130, 256}, random);
  for (std::int64_t i = 0; i < data.numel(); ++i) data.data_as<std::uint8_t>()[i] &= 0xF7;
  const std::pair<Shape, Layout> cases[] = {
      {{1}, PerTensor{}}, {{130, 1}, PerChannel{}}, {{2, 2}, PerBlockMN{128, 128}}};
  for (const auto& [scale_shape, layout] : cases) {
    SCOPED_TRACE(layout_repr(layout));
    const Array scale = positive_floats(scale_shape, random);
    const fs::path file =
        write_raw("fp8.safetensors", {{"w.weight", {data, SafetensorsDType::kF8E4M3}},
                                      {"w.weight_scale", {scale, SafetensorsDType::kF32}}});
    const Checkpoint loaded = load_checkpoint(file);
    const ScaledTensor& w = scaled(loaded, "w.weight");
    EXPECT_EQ(w.layout(), layout);
    const Array values = dequantize(w);
    for (std::int64_t r = 0; r < 130; ++r) {
      for (std::int64_t c = 0; c < 256; ++c) {
        const std::int64_t s = scale.numel() == 1    ? 0
                               : scale_shape[1] == 1 ? r
                                                     : (r / 128) * 2 + c / 128;
        ASSERT_EQ(values.data_as<float>()[r * 256 + c],
                  formats::E4M3::decode(data.data_as<std::uint8_t>()[r * 256 + c]) *
                      scale.data_as<float>()[s]);
      }
    }
    expect_byte_identical_rewrite(file, Convention::kCompressedTensors);
  }
}

TEST_F(CheckpointTest, ReadsModelOptNvfp4WithItsDecodeScale2) {
  std::mt19937 random(12);
  const Array packed = random_bytes(DType::kU8, {4, 16}, random);
  const Array block_scales = random_e4m3_scales({4, 2}, random);
  const float scale_2 = 0.000371f;
  const fs::path file =
      write_raw("modelopt.safetensors",
                {{"fc.weight", {packed, SafetensorsDType::kU8}},
                 {"fc.weight_scale", {block_scales, SafetensorsDType::kF8E4M3}},
                 {"fc.weight_scale_2", {f32_values({}, {scale_2}), SafetensorsDType::kF32}},
                 {"fc.input_scale", {f32_values({}, {0.5f}), SafetensorsDType::kF32}}});
  const Checkpoint loaded = load_checkpoint(file);
  const ScaledTensor& w = scaled(loaded, "fc.weight");
  EXPECT_EQ(w.recipe(), Recipe(NVFP4BlockScaling{}));
  EXPECT_EQ(w.global_scale()->data_as<float>()[0], scale_2);
  EXPECT_TRUE(std::holds_alternative<Array>(loaded.tensors.at("fc.input_scale")));
  // ModelOpt's formula e2m1(q) * (e4m3(scale) * scale_2) is breccia's order: bit for bit.
  const Array values = dequantize(w);
  for (std::int64_t r = 0; r < 4; ++r) {
    for (std::int64_t k = 0; k < 32; ++k) {
      const std::uint8_t byte = packed.data_as<std::uint8_t>()[r * 16 + k / 2];
      const float q = e2m1(k % 2 == 0 ? byte : byte >> 4);
      const float s = formats::E4M3::decode(block_scales.data_as<std::uint8_t>()[r * 2 + k / 16]);
      ASSERT_EQ(ulp_distance(values.data_as<float>()[r * 32 + k], q * (s * scale_2)), 0);
    }
  }
  expect_byte_identical_rewrite(file, Convention::kModelOpt);
}

TEST_F(CheckpointTest, CastTensorsWriteToEachConventionAndReadBackIdentical) {
  std::mt19937 random(13);
  const Array x = random_floats({256, 256}, random);
  const std::pair<Convention, Recipe> cases[] = {
      {Convention::kDeepSeekV3,
       Float8BlockScaling{.block_k = 128, .block_m = 128, .power_2_scale = false}},
      {Convention::kCompressedTensors, NVFP4BlockScaling{}},
      {Convention::kCompressedTensors, Float8CurrentScaling{}},
      {Convention::kCompressedTensors, INT4Scaling{.group_size = 64, .is_signed = false}},
      {Convention::kCompressedTensors, INT4Scaling{.group_size = 128}},
      {Convention::kModelOpt, NVFP4BlockScaling{}},
      {Convention::kModelOpt, Float8CurrentScaling{}},
  };
  for (const auto& [convention, recipe] : cases) {
    SCOPED_TRACE(std::string(to_string(convention)) + " " + recipe_repr(recipe));
    const ScaledTensor original = cast(x, recipe);
    save_checkpoint(path("c.safetensors"), {{"m.weight", original}}, {.convention = convention});
    EXPECT_FALSE(load(path("c.safetensors")).metadata.contains("breccia"));
    expect_same(scaled(load_checkpoint(path("c.safetensors")), "m.weight"), original, false);
  }
}

TEST_F(CheckpointTest, ConventionsRejectWhatTheyCannotExpress) {
  std::mt19937 random(14);
  const Array x = random_floats({128, 128}, random);
  const std::pair<Convention, Recipe> cases[] = {
      {Convention::kDeepSeekV3, MXFP8BlockScaling{}},
      {Convention::kDeepSeekV3, Float8BlockScaling{}},  // 1x128 activations, not 128x128
      {Convention::kModelOpt, INT4Scaling{.group_size = 32}},
      {Convention::kCompressedTensors, MXFP8BlockScaling{}},
  };
  for (const auto& [convention, recipe] : cases) {
    try {
      save_checkpoint(path("r.safetensors"), {{"w", cast(x, recipe)}}, {.convention = convention});
      ADD_FAILURE() << "expected " << recipe_repr(recipe) << " to be rejected";
    } catch (const ValueError& error) {
      EXPECT_TRUE(contains(error.what(), to_string(convention))) << error.what();
      EXPECT_TRUE(contains(error.what(), recipe_name(recipe))) << error.what();
    }
  }
  EXPECT_FALSE(fs::exists(path("r.safetensors")));
  EXPECT_THROW(convention_from_string("gguf"), ValueError);
}

TEST_F(CheckpointTest, RejectsConventionTensorsThatDoNotFit) {
  std::mt19937 random(15);
  // DeepSeek scale_inv with the wrong tile grid.
  std::string message = load_error(
      write_raw("a.safetensors",
                {{"w", {random_bytes(DType::kE4M3, {256, 256}, random), SafetensorsDType::kF8E4M3}},
                 {"w_scale_inv", {random_floats({3, 2}, random), SafetensorsDType::kF32}}}));
  EXPECT_TRUE(contains(message, "DeepSeek-V3")) << message;
  // compressed-tensors NVFP4 block scales of the wrong shape.
  message = load_error(
      write_raw("b.safetensors",
                {{"w_packed", {random_bytes(DType::kU8, {4, 16}, random), SafetensorsDType::kU8}},
                 {"w_scale", {random_e4m3_scales({4, 3}, random), SafetensorsDType::kF8E4M3}},
                 {"w_global_scale", {f32_values({1}, {2.0f}), SafetensorsDType::kF32}}}));
  EXPECT_TRUE(contains(message, "compressed-tensors")) << message;
  // INT4 whose weight_shape does not fit the words.
  message = load_error(write_raw(
      "c.safetensors", {{"w_packed", {Array::zeros(DType::kI32, {4, 2}), SafetensorsDType::kI32}},
                        {"w_scale", {Array::zeros(DType::kF16, {4, 1}), SafetensorsDType::kF16}},
                        {"w_shape", {shape_tensor(4, 64), SafetensorsDType::kI64}}}));
  EXPECT_TRUE(contains(message, "weight_shape")) << message;
  // Act-order INT4 is a feature breccia does not model.
  load_error<UnsupportedError>(write_raw(
      "d.safetensors", {{"w_packed", {Array::zeros(DType::kI32, {4, 2}), SafetensorsDType::kI32}},
                        {"w_scale", {Array::zeros(DType::kF16, {4, 1}), SafetensorsDType::kF16}},
                        {"w_shape", {shape_tensor(4, 16), SafetensorsDType::kI64}},
                        {"w_g_idx", {Array::zeros(DType::kI32, {16}), SafetensorsDType::kI32}}}));
}

// ---------------------------------------------------------------------------------------------
// Issue 11: numeric anomalies, the validation policy and the holes in the conventions loader

class AnomalyTest : public CheckpointTest {
 protected:
  // Saves `tensor` as breccia's layout and returns what each policy makes of it.
  fs::path saved(const ScaledTensor& tensor) {
    save_checkpoint(path("w.safetensors"), {{"w", tensor}});
    return path("w.safetensors");
  }
  // The message under kError, after checking that kWarn reports the same anomaly and kOff
  // loads silently.
  std::string refused(const ScaledTensor& tensor) {
    const fs::path file = saved(tensor);
    const Checkpoint warned = load_checkpoint(file, {.validate = Validation::kWarn});
    EXPECT_EQ(warned.anomalies.size(), 1u);
    EXPECT_TRUE(load_checkpoint(file, {.validate = Validation::kOff}).anomalies.empty());
    const std::string message = load_error(file);
    EXPECT_TRUE(contains(message, "validate='error'")) << message;
    if (!warned.anomalies.empty())
      EXPECT_TRUE(
          contains(message, warned.anomalies[0].substr(warned.anomalies[0].find(": ") + 2)));
    return message;
  }
};

TEST_F(AnomalyTest, Nvfp4GlobalScaleZeroNanOrNegativeIsReported) {
  std::mt19937 random(11);
  const ScaledTensor good = cast(random_floats({4, 32}, random), NVFP4BlockScaling{});
  EXPECT_TRUE(load_checkpoint(saved(good)).anomalies.empty());
  const auto with_global = [&](float g) {
    return ScaledTensor(good.data(), good.scale(), good.recipe(), good.layout(), scalar_of(g));
  };
  EXPECT_TRUE(contains(refused(with_global(0.0f)), "under a global_scale of 0"));
  EXPECT_TRUE(contains(refused(with_global(NAN)),
                       "global_scale: expected a finite non-negative "
                       "decode factor, got nan"));
  EXPECT_TRUE(contains(refused(with_global(-1.0f)), "got -1"));
  // An all-zero tensor's global_scale is 0, and that is no anomaly.
  const ScaledTensor zeros = cast(Array::zeros(DType::kF32, {4, 32}), NVFP4BlockScaling{});
  EXPECT_TRUE(load_checkpoint(saved(zeros)).anomalies.empty());
}

TEST_F(AnomalyTest, Fp8ScaleNanNegativeInfOrZeroIsReported) {
  std::mt19937 random(12);
  const ScaledTensor good = cast(random_floats({4, 64}, random), Float8CurrentScaling{});
  for (const float bad : {NAN, -1.0f, INFINITY, 0.0f}) {
    Array scale = Array::empty(DType::kF32, good.scale().shape());
    scale.data_as<float>()[0] = bad;
    const ScaledTensor tensor(good.data(), scale, good.recipe(), good.layout());
    EXPECT_TRUE(contains(refused(tensor), "scale: expected finite positive scales, got 1 of 1"));
  }
}

TEST_F(AnomalyTest, UnsignedInt4ZeroPointsAbove15AreReported) {
  std::mt19937 random(13);
  const INT4Scaling recipe{.group_size = 32, .is_signed = false};
  const ScaledTensor good = cast(random_floats({4, 64}, random), recipe);
  Array points = good.zero_point()->contiguous();
  points.data_as<std::uint8_t>()[3] = 200;
  points.data_as<std::uint8_t>()[5] = 255;
  const ScaledTensor tensor(good.data(), good.scale(), recipe, good.layout(), std::nullopt, points);
  const std::string message = refused(tensor);
  EXPECT_TRUE(contains(message,
                       "zero_point: expected values in [0, 15], got 2 of 8 outside (the "
                       "first, at flat index 3, is 200)"))
      << message;
}

TEST_F(AnomalyTest, MxNanScaleIsReported) {
  std::mt19937 random(14);
  const ScaledTensor good = cast(random_floats({2, 64}, random), MXFP8BlockScaling{});
  Array scale = good.scale().contiguous();
  scale.data_as<std::uint8_t>()[1] = 0xFF;
  const ScaledTensor tensor(good.data(), scale, good.recipe(), good.layout());
  EXPECT_TRUE(contains(refused(tensor), "E8M0 scales other than NaN"));
}

TEST_F(CheckpointTest, ScalesStoredUnderAnotherDTypeAreAStructuralError) {
  // An MXFP8 scale written as U8 bytes used to load, reinterpreted; whatever validate says.
  std::mt19937 random(15);
  const ScaledTensor w = cast(random_floats({2, 64}, random), MXFP8BlockScaling{});
  save_checkpoint(path("w.safetensors"), {{"w", w}});
  SafetensorsFile raw = load(path("w.safetensors"));
  raw.tensors.at("w.scale") = {raw.tensors.at("w.scale").array.viewed_as(DType::kU8),
                               SafetensorsDType::kU8};
  save(path("u8.safetensors"), raw.tensors, raw.metadata);
  for (const Validation policy : {Validation::kError, Validation::kOff}) {
    try {
      load_checkpoint(path("u8.safetensors"), {.validate = policy});
      ADD_FAILURE() << "expected a ValueError";
    } catch (const ValueError& error) {
      EXPECT_TRUE(contains(error.what(), "stores its scale as F8_E8M0, got tensor 'w.scale' as U8"))
          << error.what();
    }
  }
}

TEST_F(CheckpointTest, OneByteScaleAtTheEndOfTheFileIsRefusedWithoutReadingPastIt) {
  // to_f32 read a 16-bit code from a 1-byte scale before checking its dtype. With copy=true
  // the file is a heap buffer of its exact size, so ASan sees any over-read. (A U8 scale is
  // ModelOpt's MXFP8, which must fit its weight's 32-element blocks.)
  std::mt19937 random(16);
  for (const auto& [dtype, file_dtype, expected] :
       {std::tuple{DType::kI8, SafetensorsDType::kI8,
                   "expected an F32, F16 or BF16 scale, got int8"},
        std::tuple{DType::kU8, SafetensorsDType::kU8, "ModelOpt MXFP8 describes 'w'"}}) {
    write_raw("ct.safetensors",
              {{"w", {random_bytes(DType::kE4M3, {1, 1}, random), SafetensorsDType::kF8E4M3}},
               {"w_scale", {random_bytes(dtype, {1}, random), file_dtype}}});
    try {
      load_checkpoint(path("ct.safetensors"), {.copy = true});
      ADD_FAILURE() << "expected a ValueError";
    } catch (const ValueError& error) {
      EXPECT_TRUE(contains(error.what(), expected)) << error.what();
    }
  }
}

TEST_F(CheckpointTest, ValidationPolicyNamesParseAndOthersAreRefused) {
  EXPECT_EQ(validation_from_string("error"), Validation::kError);
  EXPECT_EQ(validation_from_string("warn"), Validation::kWarn);
  EXPECT_EQ(validation_from_string("off"), Validation::kOff);
  EXPECT_THROW(validation_from_string("strict"), ValueError);
}

}  // namespace
}  // namespace breccia::io
