#include "breccia/recipes.hpp"

#include <algorithm>
#include <cctype>
#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "breccia/error.hpp"
#include "breccia/numerics.hpp"
#include "breccia/recipe_spec.hpp"
#include "core/strict_json.hpp"

namespace breccia {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr std::array<std::string_view, 2> kFp8FormatNames = {"E4M3", "E5M2"};
constexpr std::array<std::string_view, 2> kFp6FormatNames = {"E2M3", "E3M2"};
constexpr std::array<std::string_view, 2> kMXScaleRoundingNames = {"floor", "rceil"};
constexpr std::array<std::string_view, 3> kInt4ScaleDTypeNames = {"fp16", "bf16", "fp32"};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

// Names are matched in any case: "e4m3" is E4M3, "RCEIL" is rceil.
template <class Enum, std::size_t N>
std::optional<Enum> enum_from_name(const std::array<std::string_view, N>& names,
                                   std::string_view text) {
  const auto found = std::find_if(names.begin(), names.end(), [&](std::string_view name) {
    return equal_ignoring_case(name, text);
  });
  if (found == names.end()) return std::nullopt;
  return static_cast<Enum>(found - names.begin());
}

// "'floor' or 'rceil'", "'fp16', 'bf16' or 'fp32'"
template <std::size_t N>
std::string quoted_choices(const std::array<std::string_view, N>& names) {
  std::string choices;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) choices += i + 1 == N ? " or " : ", ";
    choices.append("'").append(names[i]).append("'");
  }
  return choices;
}

// Python's repr of a str, so recipe_repr reads like the Python dataclass.
std::string python_quoted(std::string_view text) {
  std::string quoted = "'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

// --- One table of fields per recipe, in declaration order. repr, JSON and hashing all walk
// --- it, so a field added to a recipe is added here once.

template <class R, class Value>
struct Field {
  std::string_view name;  // as in the Python API and the JSON form
  Value R::* member;
};

template <class R, class Value>
constexpr Field<R, Value> field(std::string_view name, Value R::* member) {
  return {name, member};
}

template <class R>
constexpr auto fields_of();

template <>
constexpr auto fields_of<DelayedScaling>() {
  return std::tuple{field("fp8_format", &DelayedScaling::fp8_format),
                    field("amax_history_len", &DelayedScaling::amax_history_len),
                    field("margin", &DelayedScaling::margin)};
}

template <>
constexpr auto fields_of<Float8CurrentScaling>() {
  return std::tuple{field("fp8_format", &Float8CurrentScaling::fp8_format),
                    field("power_2_scale", &Float8CurrentScaling::power_2_scale)};
}

template <>
constexpr auto fields_of<Float8BlockScaling>() {
  return std::tuple{field("fp8_format", &Float8BlockScaling::fp8_format),
                    field("block_k", &Float8BlockScaling::block_k),
                    field("block_m", &Float8BlockScaling::block_m),
                    field("power_2_scale", &Float8BlockScaling::power_2_scale)};
}

template <>
constexpr auto fields_of<MXFP8BlockScaling>() {
  return std::tuple{field("fp8_format", &MXFP8BlockScaling::fp8_format),
                    field("block_size", &MXFP8BlockScaling::block_size),
                    field("scale_rounding", &MXFP8BlockScaling::scale_rounding)};
}

template <>
constexpr auto fields_of<MXFP6BlockScaling>() {
  return std::tuple{field("fp6_format", &MXFP6BlockScaling::fp6_format),
                    field("block_size", &MXFP6BlockScaling::block_size),
                    field("scale_rounding", &MXFP6BlockScaling::scale_rounding)};
}

template <>
constexpr auto fields_of<MXFP4BlockScaling>() {
  return std::tuple{field("block_size", &MXFP4BlockScaling::block_size),
                    field("scale_rounding", &MXFP4BlockScaling::scale_rounding)};
}

template <>
constexpr auto fields_of<NVFP4BlockScaling>() {
  return std::tuple{field("fp4_format", &NVFP4BlockScaling::fp4_format),
                    field("block_size", &NVFP4BlockScaling::block_size),
                    field("scale_format", &NVFP4BlockScaling::scale_format),
                    field("two_d", &NVFP4BlockScaling::two_d)};
}

template <>
constexpr auto fields_of<INT4Scaling>() {
  return std::tuple{field("group_size", &INT4Scaling::group_size),
                    field("signed", &INT4Scaling::is_signed),
                    field("scale_dtype", &INT4Scaling::scale_dtype)};
}

template <class R, class Visit>
void for_each_field(Visit&& visit) {
  std::apply([&](const auto&... fields) { (visit(fields), ...); }, fields_of<R>());
}

// --- Per value type: Python repr, JSON write and JSON read.

std::string repr_value(Fp8Format value) {
  return python_quoted(to_string(value));
}
std::string repr_value(Fp6Format value) {
  return python_quoted(to_string(value));
}
std::string repr_value(MXScaleRounding value) {
  return python_quoted(to_string(value));
}
std::string repr_value(Int4ScaleDType value) {
  return python_quoted(to_string(value));
}
std::string repr_value(std::int64_t value) {
  return std::to_string(value);
}
std::string repr_value(bool value) {
  return value ? "True" : "False";
}
std::string repr_value(const std::string& value) {
  return python_quoted(value);
}

OrderedJson json_value(Fp8Format value) {
  return std::string(to_string(value));
}
OrderedJson json_value(Fp6Format value) {
  return std::string(to_string(value));
}
OrderedJson json_value(MXScaleRounding value) {
  return std::string(to_string(value));
}
OrderedJson json_value(Int4ScaleDType value) {
  return std::string(to_string(value));
}
OrderedJson json_value(std::int64_t value) {
  return value;
}
OrderedJson json_value(bool value) {
  return value;
}
OrderedJson json_value(const std::string& value) {
  return value;
}

std::string json_type_of(const OrderedJson& value) {
  return value.type_name();
}

const std::string& require_json_string(const OrderedJson& value, std::string_view field) {
  if (!value.is_string()) {
    fail<ValueError>("field '", field, "' must be a JSON string, got ", json_type_of(value), " ",
                     value.dump());
  }
  return value.get_ref<const std::string&>();
}

void read_json_value(const OrderedJson& value, std::string_view field, Fp8Format& out) {
  out = fp8_format_from_string(require_json_string(value, field), field);
}
void read_json_value(const OrderedJson& value, std::string_view field, Fp6Format& out) {
  out = fp6_format_from_string(require_json_string(value, field));
}
void read_json_value(const OrderedJson& value, std::string_view field, MXScaleRounding& out) {
  out = mx_scale_rounding_from_string(require_json_string(value, field));
}
void read_json_value(const OrderedJson& value, std::string_view field, Int4ScaleDType& out) {
  out = int4_scale_dtype_from_string(require_json_string(value, field));
}
// The only string fields are NVFP4's fixed format names, kept in canonical upper case.
void read_json_value(const OrderedJson& value, std::string_view field, std::string& out) {
  out = require_json_string(value, field);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
}
void read_json_value(const OrderedJson& value, std::string_view field, bool& out) {
  if (!value.is_boolean()) {
    fail<ValueError>("field '", field, "' must be a JSON boolean, got ", json_type_of(value), " ",
                     value.dump());
  }
  out = value.get<bool>();
}
void read_json_value(const OrderedJson& value, std::string_view field, std::int64_t& out) {
  // 32.0 is rejected too: an integer field written as a float was not written by breccia.
  const bool fits = value.is_number_integer() &&
                    (!value.is_number_unsigned() ||
                     value.get<std::uint64_t>() <=
                         static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  if (!fits) {
    fail<ValueError>("field '", field, "' must be a JSON integer in the int64 range, got ",
                     json_type_of(value), " ", value.dump());
  }
  out = value.get<std::int64_t>();
}

template <class T>
void hash_combine(std::size_t& seed, const T& value) {
  std::size_t hashed;
  if constexpr (std::is_enum_v<T>) {
    hashed = std::hash<std::underlying_type_t<T>>{}(static_cast<std::underlying_type_t<T>>(value));
  } else {
    hashed = std::hash<T>{}(value);
  }
  seed ^= hashed + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2);
}

// Every recipe at its defaults, to look one up by name.
const std::array<Recipe, std::variant_size_v<Recipe>>& default_recipes() {
  static const std::array<Recipe, std::variant_size_v<Recipe>> defaults = {
      DelayedScaling{},    Float8CurrentScaling{}, Float8BlockScaling{}, MXFP8BlockScaling{},
      MXFP6BlockScaling{}, MXFP4BlockScaling{},    NVFP4BlockScaling{},  INT4Scaling{}};
  return defaults;
}

std::string recipe_names() {
  std::string names;
  for (const Recipe& recipe : default_recipes()) {
    names += (names.empty() ? "" : ", ") + std::string(recipe_name(recipe));
  }
  return names;
}

template <class R>
void read_fields(const OrderedJson& object, R& recipe) {
  for (const auto& item : object.items()) {
    // Named, not structured, bindings: lambdas may capture them with clang before 16 too.
    const std::string& key = item.key();
    const OrderedJson& value = item.value();
    if (key == "recipe") continue;
    bool known = false;
    for_each_field<R>([&](const auto& field) {
      if (field.name != key) return;
      known = true;
      read_json_value(value, field.name, recipe.*field.member);
    });
    if (!known) {
      std::string expected;
      for_each_field<R>([&](const auto& field) {
        expected += (expected.empty() ? "" : ", ") + std::string(field.name);
      });
      fail<ValueError>("unknown field '", key, "' for ", R::kName, " (its fields: ", expected, ")");
    }
  }
}

// Block and group sizes beyond this are not blocks any more, and their products with a
// tensor's dims could overflow; history lengths beyond it are a typo, not a plan.
constexpr std::int64_t kMaxBlockSize = std::int64_t{1} << 20;
constexpr std::int64_t kMaxAmaxHistory = std::int64_t{1} << 20;
// fmax * 2^-margin: past 32 even E5M2, whose finite values span 32 binades, flushes every
// element to zero, and past ~127 the encode scale itself underflows to 0 (decoding to inf).
constexpr std::int64_t kMaxMargin = 32;

void require_in_range(std::string_view recipe, std::string_view field, std::int64_t value,
                      std::int64_t low, std::int64_t high) {
  if (value < low || value > high) {
    fail<ValueError>(recipe, ".", field, " must be in [", low, ", ", high, "], got ", value);
  }
}

void validate_recipe(const DelayedScaling& recipe) {
  require_in_range(DelayedScaling::kName, "amax_history_len", recipe.amax_history_len, 1,
                   kMaxAmaxHistory);
  require_in_range(DelayedScaling::kName, "margin", recipe.margin, 0, kMaxMargin);
}

void validate_recipe(const Float8CurrentScaling&) {}

void validate_recipe(const Float8BlockScaling& recipe) {
  require_in_range(Float8BlockScaling::kName, "block_k", recipe.block_k, 1, kMaxBlockSize);
  require_in_range(Float8BlockScaling::kName, "block_m", recipe.block_m, 1, kMaxBlockSize);
}

// The OCP MX recipes share one block size.
template <class MX>
void validate_mx_block(const MX& recipe) {
  if (recipe.block_size != 32) {
    fail<ValueError>(MX::kName, ".block_size must be 32 (fixed by the OCP MX spec), got ",
                     recipe.block_size);
  }
}

void validate_recipe(const MXFP8BlockScaling& recipe) {
  validate_mx_block(recipe);
}
void validate_recipe(const MXFP6BlockScaling& recipe) {
  validate_mx_block(recipe);
}
void validate_recipe(const MXFP4BlockScaling& recipe) {
  validate_mx_block(recipe);
}

void validate_recipe(const NVFP4BlockScaling& recipe) {
  if (recipe.fp4_format != "E2M1") {
    fail<ValueError>(NVFP4BlockScaling::kName, ".fp4_format must be 'E2M1' (fixed by the ",
                     "hardware), got ", python_quoted(recipe.fp4_format));
  }
  if (recipe.block_size != 16) {
    fail<ValueError>(NVFP4BlockScaling::kName, ".block_size must be 16 (fixed by the hardware), ",
                     "got ", recipe.block_size);
  }
  if (recipe.scale_format != "E4M3") {
    fail<ValueError>(NVFP4BlockScaling::kName, ".scale_format must be 'E4M3' (fixed by the ",
                     "hardware), got ", python_quoted(recipe.scale_format));
  }
}

void validate_recipe(const INT4Scaling& recipe) {
  if (recipe.group_size != -1 && (recipe.group_size < 1 || recipe.group_size > kMaxBlockSize)) {
    fail<ValueError>(INT4Scaling::kName, ".group_size must be in [1, ", kMaxBlockSize,
                     "], or -1 for one group per row, got ", recipe.group_size);
  }
}

// The history a fresh state starts from; validates first so a bad length never allocates.
std::vector<float> zero_history(const DelayedScaling& recipe) {
  validate(recipe);
  return std::vector<float>(static_cast<std::size_t>(recipe.amax_history_len), 0.0f);
}

}  // namespace

std::string_view to_string(Fp8Format format) {
  return kFp8FormatNames[static_cast<std::size_t>(format)];
}
std::string_view to_string(Fp6Format format) {
  return kFp6FormatNames[static_cast<std::size_t>(format)];
}
std::string_view to_string(MXScaleRounding rounding) {
  return kMXScaleRoundingNames[static_cast<std::size_t>(rounding)];
}
std::string_view to_string(Int4ScaleDType dtype) {
  return kInt4ScaleDTypeNames[static_cast<std::size_t>(dtype)];
}

Fp8Format fp8_format_from_string(std::string_view text, std::string_view argument) {
  if (const auto format = enum_from_name<Fp8Format>(kFp8FormatNames, text)) return *format;
  if (text == "HYBRID") {
    fail<ValueError>(argument, " must be ", quoted_choices(kFp8FormatNames),
                     ", got 'HYBRID': TransformerEngine's HYBRID means E4M3 forward and E5M2 ",
                     "backward, but a breccia tensor holds one format, so name that one");
  }
  fail<ValueError>(argument, " must be ", quoted_choices(kFp8FormatNames), ", got ",
                   python_quoted(text));
}

Fp6Format fp6_format_from_string(std::string_view text) {
  if (const auto format = enum_from_name<Fp6Format>(kFp6FormatNames, text)) return *format;
  fail<ValueError>("fp6_format must be ", quoted_choices(kFp6FormatNames), ", got ",
                   python_quoted(text));
}

MXScaleRounding mx_scale_rounding_from_string(std::string_view text) {
  if (const auto rounding = enum_from_name<MXScaleRounding>(kMXScaleRoundingNames, text)) {
    return *rounding;
  }
  fail<ValueError>("scale_rounding must be ", quoted_choices(kMXScaleRoundingNames), ", got ",
                   python_quoted(text));
}

Int4ScaleDType int4_scale_dtype_from_string(std::string_view text) {
  if (const auto dtype = enum_from_name<Int4ScaleDType>(kInt4ScaleDTypeNames, text)) return *dtype;
  fail<ValueError>("scale_dtype must be ", quoted_choices(kInt4ScaleDTypeNames), ", got ",
                   python_quoted(text));
}

void validate(const Recipe& recipe) {
  std::visit([](const auto& typed) { validate_recipe(typed); }, recipe);
}

std::string_view recipe_name(const Recipe& recipe) {
  return std::visit([](const auto& typed) { return std::decay_t<decltype(typed)>::kName; }, recipe);
}

std::string recipe_repr(const Recipe& recipe) {
  return std::visit(
      [](const auto& typed) {
        using R = std::decay_t<decltype(typed)>;
        std::string repr = std::string(R::kName) + "(";
        bool first = true;
        for_each_field<R>([&](const auto& field) {
          repr +=
              (first ? "" : ", ") + std::string(field.name) + "=" + repr_value(typed.*field.member);
          first = false;
        });
        return repr + ")";
      },
      recipe);
}

std::string recipe_to_json(const Recipe& recipe) {
  return std::visit(
      [](const auto& typed) {
        using R = std::decay_t<decltype(typed)>;
        OrderedJson object;
        object["recipe"] = std::string(R::kName);
        for_each_field<R>([&](const auto& field) {
          object[std::string(field.name)] = json_value(typed.*field.member);
        });
        return object.dump();
      },
      recipe);
}

Recipe recipe_from_json(std::string_view json, std::string_view caller) {
  Recipe parsed;
  try {
    // Strict: a key given twice would otherwise silently mean its last value.
    const OrderedJson object = detail::parse_strict_json<OrderedJson>(json, "JSON text");
    if (!object.is_object()) {
      fail<ValueError>("expected a JSON object, got ", json_type_of(object), " ", json);
    }
    const auto name_entry = object.find("recipe");
    if (name_entry == object.end()) {
      fail<ValueError>("missing the key \"recipe\" naming one of ", recipe_names());
    }
    const std::string& name = require_json_string(*name_entry, "recipe");
    const auto& defaults = default_recipes();
    const auto match = std::find_if(defaults.begin(), defaults.end(),
                                    [&](const Recipe& r) { return recipe_name(r) == name; });
    if (match == defaults.end()) {
      fail<ValueError>("unknown recipe ", python_quoted(name), "; expected one of ",
                       recipe_names());
    }
    Recipe recipe = *match;
    std::visit([&](auto& typed) { read_fields(object, typed); }, recipe);
    parsed = recipe;
  } catch (const ValueError& error) {
    fail<ValueError>(caller, ": ", error.what());
  }
  // A well-formed recipe with a disallowed value reports the field itself ("NVFP4BlockScaling.
  // block_size must be 16 ..."), as a constructor would.
  validate(parsed);
  return parsed;
}

std::size_t recipe_hash(const Recipe& recipe) {
  std::size_t seed = recipe.index();
  std::visit(
      [&](const auto& typed) {
        using R = std::decay_t<decltype(typed)>;
        for_each_field<R>([&](const auto& field) { hash_combine(seed, typed.*field.member); });
      },
      recipe);
  return seed;
}

const DelayedScaling& as_delayed_scaling(const Recipe& recipe, std::string_view argument) {
  const auto* delayed = std::get_if<DelayedScaling>(&recipe);
  if (delayed == nullptr) {
    fail<ValueError>(argument, ": a DelayedScalingState needs DelayedScaling, got ",
                     recipe_repr(recipe));
  }
  return *delayed;
}

DelayedScalingState::DelayedScalingState(const DelayedScaling& recipe)
    : DelayedScalingState(recipe, 1.0f, zero_history(recipe)) {}

DelayedScalingState::DelayedScalingState(const DelayedScaling& recipe, float encode_scale,
                                         std::vector<float> history)
    : recipe_(recipe), encode_scale_(encode_scale), history_(std::move(history)) {
  validate(recipe_);
  if (std::cmp_not_equal(history_.size(), recipe_.amax_history_len)) {
    fail<ValueError>("history must hold amax_history_len = ", recipe_.amax_history_len,
                     " entries, got ", history_.size());
  }
  if (!(encode_scale_ > 0.0f) || !numerics::is_finite(encode_scale_)) {
    fail<ValueError>("encode_scale must be a positive finite float, got ", encode_scale_);
  }
}

void DelayedScalingState::update(float amax) {
  history_.front() = numerics::nan_max(history_.front(), amax);
  float reference_amax = history_.front();
  for (const float entry : history_) reference_amax = numerics::nan_max(reference_amax, entry);
  std::rotate(history_.begin(), history_.begin() + 1, history_.end());
  history_.front() = 0.0f;
  const float fmax = spec_of(recipe_).element_max;
  // fmax * 2^-256 is already 0 in fp32, so larger margins change nothing.
  const int margin = static_cast<int>(std::min<std::int64_t>(recipe_.margin, 256));
  encode_scale_ = numerics::delayed_encode_scale(reference_amax, fmax, margin, encode_scale_);
}

}  // namespace breccia
