#include "breccia/recipes.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "breccia/error.hpp"
#include "breccia/layouts.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

// Passes when `text` contains `part`, printing both otherwise.
using ::breccia::test_support::contains;
using ::breccia::test_support::error_message;

// One recipe of every kind with every field away from its default.
std::vector<Recipe> non_default_recipes() {
  return {
      DelayedScaling{.fp8_format = Fp8Format::kE5M2, .amax_history_len = 1024, .margin = 2},
      Float8CurrentScaling{.fp8_format = Fp8Format::kE5M2, .power_2_scale = true},
      Float8BlockScaling{
          .fp8_format = Fp8Format::kE5M2, .block_k = 64, .block_m = 128, .power_2_scale = false},
      MXFP8BlockScaling{.fp8_format = Fp8Format::kE5M2,
                        .block_size = 32,
                        .scale_rounding = MXScaleRounding::kRceil},
      NVFP4BlockScaling{.two_d = true},  // its other fields are fixed by the hardware
      INT4Scaling{.group_size = -1, .is_signed = false, .scale_dtype = Int4ScaleDType::kBF16},
  };
}

std::vector<Recipe> default_recipes() {
  return {DelayedScaling{},    Float8CurrentScaling{}, Float8BlockScaling{},
          MXFP8BlockScaling{}, NVFP4BlockScaling{},    INT4Scaling{}};
}

// ---------------------------------------------------------------- enum spellings

TEST(RecipeEnums, SpellingsRoundTrip) {
  EXPECT_EQ(to_string(Fp8Format::kE4M3), "E4M3");
  EXPECT_EQ(to_string(Fp8Format::kE5M2), "E5M2");
  EXPECT_EQ(to_string(MXScaleRounding::kFloor), "floor");
  EXPECT_EQ(to_string(MXScaleRounding::kRceil), "rceil");
  EXPECT_EQ(to_string(Int4ScaleDType::kF16), "fp16");
  EXPECT_EQ(to_string(Int4ScaleDType::kBF16), "bf16");
  EXPECT_EQ(to_string(Int4ScaleDType::kF32), "fp32");
  for (Fp8Format f : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    EXPECT_EQ(fp8_format_from_string(to_string(f)), f);
  }
  for (MXScaleRounding r : {MXScaleRounding::kFloor, MXScaleRounding::kRceil}) {
    EXPECT_EQ(mx_scale_rounding_from_string(to_string(r)), r);
  }
  for (Int4ScaleDType d : {Int4ScaleDType::kF16, Int4ScaleDType::kBF16, Int4ScaleDType::kF32}) {
    EXPECT_EQ(int4_scale_dtype_from_string(to_string(d)), d);
  }
}

TEST(RecipeEnums, HybridIsRejectedWithAnExplanation) {
  const std::string message =
      error_message<ValueError>([] { fp8_format_from_string("HYBRID", "recipe.fp8_format"); });
  EXPECT_TRUE(contains(message, "recipe.fp8_format"));
  EXPECT_TRUE(contains(message, "'E4M3' or 'E5M2'"));
  EXPECT_TRUE(contains(message, "HYBRID"));
}

TEST(RecipeEnums, NamesAreReadInAnyCase) {
  EXPECT_EQ(fp8_format_from_string("e4m3"), Fp8Format::kE4M3);
  EXPECT_EQ(fp8_format_from_string("E5m2"), Fp8Format::kE5M2);
  EXPECT_EQ(mx_scale_rounding_from_string("RCEIL"), MXScaleRounding::kRceil);
  EXPECT_EQ(int4_scale_dtype_from_string("BF16"), Int4ScaleDType::kBF16);
  // Stored and written back in the canonical spelling.
  const Recipe recipe =
      recipe_from_json(R"({"recipe": "NVFP4BlockScaling", "fp4_format": "e2m1"})");
  EXPECT_EQ(recipe_to_json(recipe), recipe_to_json(NVFP4BlockScaling{}));
}

TEST(RecipeEnums, OtherSpellingsAreRejected) {
  // Case aside, only these spellings: "E4M3FN" (PyTorch's dtype name) is not a format name.
  for (const char* text : {"E4M3FN", "fp8", ""}) {
    const std::string message = error_message<ValueError>([&] { fp8_format_from_string(text); });
    EXPECT_TRUE(contains(message, "fp8_format"));
    EXPECT_TRUE(contains(message, "'" + std::string(text) + "'"));
  }
  EXPECT_TRUE(contains(error_message<ValueError>([] { mx_scale_rounding_from_string("ceil"); }),
                       "scale_rounding must be 'floor' or 'rceil', got 'ceil'"));
  EXPECT_TRUE(contains(error_message<ValueError>([] { int4_scale_dtype_from_string("float16"); }),
                       "scale_dtype must be 'fp16', 'bf16' or 'fp32', got 'float16'"));
}

// ---------------------------------------------------------------- names and repr

TEST(Recipes, NamesAreTheClassNames) {
  const std::vector<std::string> expected = {"DelayedScaling",     "Float8CurrentScaling",
                                             "Float8BlockScaling", "MXFP8BlockScaling",
                                             "NVFP4BlockScaling",  "INT4Scaling"};
  const std::vector<Recipe> recipes = default_recipes();
  for (std::size_t i = 0; i < recipes.size(); ++i) EXPECT_EQ(recipe_name(recipes[i]), expected[i]);
}

TEST(Recipes, ReprReadsLikeThePythonDataclass) {
  EXPECT_EQ(recipe_repr(DelayedScaling{}),
            "DelayedScaling(fp8_format='E4M3', amax_history_len=16, margin=0)");
  EXPECT_EQ(recipe_repr(Float8CurrentScaling{}),
            "Float8CurrentScaling(fp8_format='E4M3', power_2_scale=False)");
  EXPECT_EQ(recipe_repr(Float8BlockScaling{}),
            "Float8BlockScaling(fp8_format='E4M3', block_k=128, block_m=1, power_2_scale=True)");
  EXPECT_EQ(recipe_repr(MXFP8BlockScaling{}),
            "MXFP8BlockScaling(fp8_format='E4M3', block_size=32, scale_rounding='floor')");
  EXPECT_EQ(recipe_repr(NVFP4BlockScaling{}),
            "NVFP4BlockScaling(fp4_format='E2M1', block_size=16, scale_format='E4M3', "
            "two_d=False)");
  EXPECT_EQ(recipe_repr(INT4Scaling{}),
            "INT4Scaling(group_size=128, signed=True, scale_dtype='fp16')");
  EXPECT_EQ(recipe_repr(INT4Scaling{.group_size = -1, .is_signed = false}),
            "INT4Scaling(group_size=-1, signed=False, scale_dtype='fp16')");
}

// ---------------------------------------------------------------- JSON

TEST(RecipeJson, MatchesTheDocumentedForm) {
  EXPECT_EQ(recipe_to_json(MXFP8BlockScaling{}),
            R"({"recipe":"MXFP8BlockScaling","fp8_format":"E4M3","block_size":32,)"
            R"("scale_rounding":"floor"})");
  EXPECT_EQ(recipe_to_json(INT4Scaling{.is_signed = false, .scale_dtype = Int4ScaleDType::kF32}),
            R"({"recipe":"INT4Scaling","group_size":128,"signed":false,"scale_dtype":"fp32"})");
}

TEST(RecipeJson, KeysFollowTheDeclarationWithRecipeFirst) {
  const std::vector<std::vector<std::string>> expected_keys = {
      {"recipe", "fp8_format", "amax_history_len", "margin"},
      {"recipe", "fp8_format", "power_2_scale"},
      {"recipe", "fp8_format", "block_k", "block_m", "power_2_scale"},
      {"recipe", "fp8_format", "block_size", "scale_rounding"},
      {"recipe", "fp4_format", "block_size", "scale_format", "two_d"},
      {"recipe", "group_size", "signed", "scale_dtype"},
  };
  const std::vector<Recipe> recipes = default_recipes();
  for (std::size_t i = 0; i < recipes.size(); ++i) {
    const auto object = nlohmann::ordered_json::parse(recipe_to_json(recipes[i]));
    std::vector<std::string> keys;
    for (const auto& item : object.items()) keys.push_back(item.key());
    EXPECT_EQ(keys, expected_keys[i]);
    EXPECT_EQ(object["recipe"], std::string(recipe_name(recipes[i])));
  }
}

TEST(RecipeJson, RoundTripsEveryRecipe) {
  for (const std::vector<Recipe>& recipes : {default_recipes(), non_default_recipes()}) {
    for (const Recipe& recipe : recipes) {
      const std::string json = recipe_to_json(recipe);
      const Recipe back = recipe_from_json(json);
      EXPECT_EQ(back, recipe) << json;
      EXPECT_EQ(recipe_to_json(back), json);
    }
  }
}

TEST(RecipeJson, NonDefaultValuesAppearInTheJson) {
  const auto object = nlohmann::json::parse(recipe_to_json(
      DelayedScaling{.fp8_format = Fp8Format::kE5M2, .amax_history_len = 1024, .margin = 2}));
  EXPECT_EQ(object["fp8_format"], "E5M2");
  EXPECT_EQ(object["amax_history_len"], 1024);
  EXPECT_EQ(object["margin"], 2);
}

TEST(RecipeJson, MissingFieldsTakeTheirDefaults) {
  for (const Recipe& recipe : default_recipes()) {
    const std::string json = R"({"recipe":")" + std::string(recipe_name(recipe)) + R"("})";
    EXPECT_EQ(recipe_from_json(json), recipe) << json;
  }
  EXPECT_EQ(recipe_from_json(R"({"block_k":64,"recipe":"Float8BlockScaling"})"),
            Recipe(Float8BlockScaling{.block_k = 64}));
}

TEST(RecipeJson, RejectsMalformedInput) {
  struct Case {
    const char* json;
    const char* says;  // a part of the message that names the problem
  };
  const Case cases[] = {
      {R"({"recipe":)", "JSON text: expected JSON, got a parse error"},
      {R"(["DelayedScaling"])", "expected a JSON object, got array"},
      {R"({"fp8_format":"E4M3"})", "missing the key \"recipe\""},
      {R"({"recipe":7})", "field 'recipe' must be a JSON string, got number"},
      {R"({"recipe":"Float8Scaling"})", "unknown recipe 'Float8Scaling'"},
      {R"({"recipe":"DelayedScaling","amax_history":4})",
       "unknown field 'amax_history' for DelayedScaling"},
      {R"({"recipe":"INT4Scaling","is_signed":false})", "unknown field 'is_signed'"},
      {R"({"recipe":"DelayedScaling","margin":"1"})", "field 'margin' must be a JSON integer"},
      {R"({"recipe":"MXFP8BlockScaling","block_size":32.0})",
       "field 'block_size' must be a JSON integer"},
      {R"({"recipe":"DelayedScaling","amax_history_len":9223372036854775808})",
       "field 'amax_history_len' must be a JSON integer in the int64 range"},
      {R"({"recipe":"Float8CurrentScaling","power_2_scale":1})",
       "field 'power_2_scale' must be a JSON boolean, got number"},
      {R"({"recipe":"Float8CurrentScaling","fp8_format":true})",
       "field 'fp8_format' must be a JSON string, got boolean"},
      {R"({"recipe":"Float8CurrentScaling","fp8_format":"HYBRID"})", "HYBRID"},
      {R"({"recipe":"MXFP8BlockScaling","scale_rounding":"up"})", "got 'up'"},
      {R"({"recipe":"INT4Scaling","scale_dtype":"int8"})", "got 'int8'"},
  };
  for (const Case& c : cases) {
    const std::string message = error_message<ValueError>([&] { recipe_from_json(c.json); });
    EXPECT_TRUE(contains(message, "recipe_from_json")) << c.json;
    EXPECT_TRUE(contains(message, c.says)) << c.json;
  }
  // Well-formed JSON with a value the recipe forbids reports the field as a constructor does.
  const Case invalid_values[] = {
      {R"({"recipe":"MXFP8BlockScaling","block_size":16})",
       "MXFP8BlockScaling.block_size must be 32"},
      {R"({"recipe":"DelayedScaling","amax_history_len":0})",
       "DelayedScaling.amax_history_len must be in [1, 1048576], got 0"},
  };
  for (const Case& c : invalid_values) {
    const std::string message = error_message<ValueError>([&] { recipe_from_json(c.json); });
    EXPECT_TRUE(message.starts_with(c.says)) << message;
  }
}

// ---------------------------------------------------------------- equality and hashing

TEST(RecipeHash, EqualRecipesHashEqualAndDistinctOnesStayDistinct) {
  std::vector<Recipe> distinct = default_recipes();
  for (const Recipe& recipe : non_default_recipes()) distinct.push_back(recipe);
  // One field changed at a time.
  distinct.push_back(DelayedScaling{.margin = 1});
  distinct.push_back(DelayedScaling{.amax_history_len = 1});
  distinct.push_back(Float8BlockScaling{.block_m = 128});
  distinct.push_back(Float8BlockScaling{.power_2_scale = false});
  distinct.push_back(INT4Scaling{.group_size = 32});
  distinct.push_back(INT4Scaling{.scale_dtype = Int4ScaleDType::kF32});

  for (std::size_t i = 0; i < distinct.size(); ++i) {
    for (std::size_t j = 0; j < distinct.size(); ++j) {
      EXPECT_EQ(distinct[i] == distinct[j], i == j) << i << " vs " << j;
    }
    const Recipe copy = recipe_from_json(recipe_to_json(distinct[i]));
    EXPECT_EQ(recipe_hash(copy), recipe_hash(distinct[i]));
  }

  // A set built from every recipe twice keeps each once.
  std::unordered_set<Recipe> set(distinct.begin(), distinct.end());
  set.insert(distinct.begin(), distinct.end());
  EXPECT_EQ(set.size(), distinct.size());
}

TEST(RecipeHash, SameFieldsInAnotherRecipeAreNotEqual) {
  // Both hold only an fp8_format and a bool in the JSON sense, but they are different recipes.
  const Recipe current = Float8CurrentScaling{};
  const Recipe delayed = DelayedScaling{};
  EXPECT_NE(current, delayed);
}

// ---------------------------------------------------------------- validate

struct InvalidRecipe {
  Recipe recipe;
  std::vector<std::string> says;  // recipe, field, allowed value, the value got
};

TEST(RecipeValidate, AcceptsDefaultsAndNonDefaults) {
  for (const Recipe& recipe : default_recipes()) EXPECT_NO_THROW(validate(recipe));
  for (const Recipe& recipe : non_default_recipes()) EXPECT_NO_THROW(validate(recipe));
  EXPECT_NO_THROW(validate(INT4Scaling{.group_size = 1}));
  EXPECT_NO_THROW(validate(Float8BlockScaling{.block_k = 1, .block_m = 1}));
}

TEST(RecipeValidate, EveryRuleNamesTheRecipeFieldAllowedValueAndValueGot) {
  const InvalidRecipe cases[] = {
      {DelayedScaling{.amax_history_len = 0},
       {"DelayedScaling", "amax_history_len", "in [1, 1048576]", "got 0"}},
      {DelayedScaling{.margin = -1}, {"DelayedScaling", "margin", "in [0, 32]", "got -1"}},
      {Float8BlockScaling{.block_k = 0},
       {"Float8BlockScaling", "block_k", "in [1, 1048576]", "got 0"}},
      {Float8BlockScaling{.block_m = -4},
       {"Float8BlockScaling", "block_m", "in [1, 1048576]", "got -4"}},
      {MXFP8BlockScaling{.block_size = 16},
       {"MXFP8BlockScaling", "block_size", "must be 32", "got 16"}},
      {NVFP4BlockScaling{.fp4_format = "E3M0"},
       {"NVFP4BlockScaling", "fp4_format", "'E2M1'", "got 'E3M0'"}},
      {NVFP4BlockScaling{.block_size = 32},
       {"NVFP4BlockScaling", "block_size", "must be 16", "got 32"}},
      {NVFP4BlockScaling{.scale_format = "E8M0"},
       {"NVFP4BlockScaling", "scale_format", "'E4M3'", "got 'E8M0'"}},
      {INT4Scaling{.group_size = 0},
       {"INT4Scaling", "group_size", "in [1, 1048576], or -1", "got 0"}},
      {INT4Scaling{.group_size = -2},
       {"INT4Scaling", "group_size", "in [1, 1048576], or -1", "got -2"}},
  };
  for (const InvalidRecipe& c : cases) {
    const std::string message = error_message<ValueError>([&] { validate(c.recipe); });
    for (const std::string& part : c.says) {
      EXPECT_TRUE(contains(message, part)) << recipe_repr(c.recipe);
    }
  }
}

// ---------------------------------------------------------------- DelayedScalingState

TEST(DelayedScalingState, StartsAtScaleOneWithAZeroHistory) {
  const DelayedScalingState state(DelayedScaling{.amax_history_len = 4});
  EXPECT_EQ(state.encode_scale(), 1.0f);
  EXPECT_EQ(state.decode_scale(), 1.0f);
  EXPECT_EQ(state.amax_history(), std::vector<float>(4, 0.0f));
}

// Compares histories entry by entry, NaN matching NaN.
void expect_history(const std::vector<float>& got, const std::vector<float>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "entry " << i;
    } else {
      EXPECT_EQ(got[i], expected[i]) << "entry " << i;
    }
  }
}

TEST(DelayedScalingState, FollowsTheMaxAlgorithmStepByStep) {
  // E4M3, margin 1: target = 448 * 2^-1 = 224. Each step: history[0] = max(history[0], amax);
  // ref = max(history); roll by -1; history[0] = 0; s = 224 / ref when ref is finite and > 0.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  DelayedScalingState state(DelayedScaling{.amax_history_len = 3, .margin = 1});
  struct Step {
    float amax;
    std::vector<float> history;
    float encode_scale;
  };
  const Step steps[] = {
      // [0,0,0] -> [2,0,0], ref 2 -> roll [0,0,2] -> zero [0] -> [0,0,2]; s = 224/2
      {2.0f, {0, 0, 2}, 112.0f},
      // [0,0,2] -> [8,0,2], ref 8 -> roll [0,2,8] -> [0,2,8]; s = 224/8
      {8.0f, {0, 2, 8}, 28.0f},
      // [0,2,8] -> [0,2,8], ref 8 -> roll [2,8,0] -> [0,8,0]; s = 224/8 again
      {0.0f, {0, 8, 0}, 28.0f},
      // [0,8,0] -> [NaN,8,0], ref NaN -> roll [8,0,NaN] -> [0,0,NaN]; s unchanged
      {nan, {0, 0, nan}, 28.0f},
      // [0,0,NaN] -> [4,0,NaN], ref NaN -> roll [0,NaN,4] -> [0,NaN,4]; s unchanged
      {4.0f, {0, nan, 4}, 28.0f},
      // [0,NaN,4] -> [1,NaN,4], ref NaN -> roll [NaN,4,1] -> [0,4,1]; s unchanged
      {1.0f, {0, 4, 1}, 28.0f},
      // [0,4,1] -> [1,4,1], ref 4 -> roll [4,1,1] -> [0,1,1]; s = 224/4
      {1.0f, {0, 1, 1}, 56.0f},
  };
  for (std::size_t i = 0; i < std::size(steps); ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1));
    state.update(steps[i].amax);
    expect_history(state.amax_history(), steps[i].history);
    EXPECT_EQ(state.encode_scale(), steps[i].encode_scale);
    EXPECT_EQ(state.decode_scale(), 1.0f / steps[i].encode_scale);
  }
}

TEST(DelayedScalingState, UsesTheFormatMaximumAndKeepsTheScaleOnAZeroHistory) {
  DelayedScalingState state(DelayedScaling{.fp8_format = Fp8Format::kE5M2, .amax_history_len = 1});
  state.update(0.0f);  // ref 0: scale stays 1
  EXPECT_EQ(state.encode_scale(), 1.0f);
  EXPECT_EQ(state.amax_history(), std::vector<float>{0.0f});
  state.update(8.0f);  // 57344 / 8 = 7168, and a length-1 history is cleared every step
  EXPECT_EQ(state.encode_scale(), 7168.0f);
  EXPECT_EQ(state.amax_history(), std::vector<float>{0.0f});
  state.update(std::numeric_limits<float>::infinity());  // ref inf: unchanged
  EXPECT_EQ(state.encode_scale(), 7168.0f);
}

TEST(DelayedScalingState, AnOverflowingScaleBecomesFltMax) {
  DelayedScalingState state(DelayedScaling{.amax_history_len = 2});
  state.update(1e-40f);  // 448 / 1e-40 overflows fp32
  EXPECT_EQ(state.encode_scale(), FLT_MAX);
}

TEST(DelayedScalingState, ResumesFromASavedState) {
  const DelayedScaling recipe{.amax_history_len = 4, .margin = 0};
  DelayedScalingState original(recipe);
  for (float amax : {3.0f, 0.5f, 7.0f}) original.update(amax);
  DelayedScalingState resumed(recipe, original.encode_scale(), original.amax_history());
  for (float amax : {1.0f, 0.25f, 2.0f, 0.0f, 9.0f}) {
    original.update(amax);
    resumed.update(amax);
    EXPECT_EQ(resumed.encode_scale(), original.encode_scale());
    EXPECT_EQ(resumed.amax_history(), original.amax_history());
  }
}

TEST(DelayedScalingState, RejectsAHistoryOfTheWrongLengthOrABadRecipe) {
  const std::string message = error_message<ValueError>(
      [] { DelayedScalingState(DelayedScaling{.amax_history_len = 3}, 1.0f, {0.0f, 0.0f}); });
  EXPECT_TRUE(contains(message, "amax_history_len = 3"));
  EXPECT_TRUE(contains(message, "got 2"));
  const std::string bad_recipe =
      error_message<ValueError>([] { DelayedScalingState(DelayedScaling{.amax_history_len = 0}); });
  EXPECT_TRUE(
      contains(bad_recipe, "DelayedScaling.amax_history_len must be in [1, 1048576], got 0"));
  const std::string bad_scale = error_message<ValueError>(
      [] { DelayedScalingState(DelayedScaling{.amax_history_len = 1}, 0.0f, {0.0f}); });
  EXPECT_TRUE(contains(bad_scale, "encode_scale must be a positive finite float, got 0"));
}

// Issue 11: a key given twice used to mean its last value, silently.
TEST(RecipeJson, DuplicatedKeyIsRefused) {
  const std::string message = error_message<ValueError>(
      [] { recipe_from_json(R"({"recipe":"DelayedScaling","margin":0,"margin":3})"); });
  EXPECT_TRUE(contains(message, "recipe_from_json: JSON text: expected unique keys, got 'margin'"))
      << message;
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         layout_from_json(R"({"layout":"PerBlockK","block_size":32,)"
                                          R"("block_size":16})");
                       }),
                       "expected unique keys, got 'block_size'"));
}

TEST(RecipeJson, NumberOverflowIsAValueError) {
  const std::string message = error_message<ValueError>(
      [] { recipe_from_json(R"({"recipe":"DelayedScaling","margin":1e400})"); });
  EXPECT_TRUE(contains(message, "expected numbers within the range of a double, got 1e400"))
      << message;
}

// Issue 11: margin 10^6 quantized everything to NaN; a history of 2^63-1 failed later with
// MemoryError. Every bound is in the message, and the bounds themselves are accepted.
TEST(RecipeRanges, ParametersAreRangeCheckedWithTheRangeInTheMessage) {
  struct Case {
    Recipe recipe;
    std::string says;
  };
  const Case cases[] = {
      {DelayedScaling{.margin = 1'000'000},
       "DelayedScaling.margin must be in [0, 32], got 1000000"},
      {DelayedScaling{.margin = -1}, "DelayedScaling.margin must be in [0, 32], got -1"},
      {DelayedScaling{.amax_history_len = std::numeric_limits<std::int64_t>::max()},
       "DelayedScaling.amax_history_len must be in [1, 1048576], got 9223372036854775807"},
      {Float8BlockScaling{.block_k = std::int64_t{1} << 40},
       "Float8BlockScaling.block_k must be in [1, 1048576], got 1099511627776"},
      {Float8BlockScaling{.block_m = 0}, "Float8BlockScaling.block_m must be in [1, 1048576]"},
      {INT4Scaling{.group_size = std::int64_t{1} << 21},
       "INT4Scaling.group_size must be in [1, 1048576], or -1"},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(contains(error_message<ValueError>([&] { validate(c.recipe); }), c.says)) << c.says;
  }
  EXPECT_NO_THROW(validate(DelayedScaling{.amax_history_len = 1 << 20, .margin = 32}));
  EXPECT_NO_THROW(validate(Float8BlockScaling{.block_k = 1 << 20, .block_m = 1}));
  EXPECT_TRUE(
      contains(error_message<ValueError>([] { validate(Layout{PerBlockK{(1 << 20) + 1}}); }),
               "PerBlockK.block_size must be in [1, 1048576], got 1048577"));
}

}  // namespace
}  // namespace breccia
