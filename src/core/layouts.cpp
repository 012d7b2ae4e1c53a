#include "breccia/layouts.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "breccia/error.hpp"
#include "core/strict_json.hpp"

namespace breccia {
namespace {

// Larger blocks are not blocks any more, and their products with dims could overflow.
constexpr std::int64_t kMaxLayoutBlock = std::int64_t{1} << 20;

using OrderedJson = nlohmann::ordered_json;

// Every layout field is a block size; one table per layout, in declaration order, drives repr,
// JSON and hashing.
template <class L>
struct BlockField {
  std::string_view name;
  std::int64_t L::* member;
};

template <class L>
constexpr std::array<BlockField<L>, 0> kFields{};
template <>
constexpr std::array<BlockField<PerBlockK>, 1> kFields<PerBlockK>{{
    {"block_size", &PerBlockK::block_size},
}};
template <>
constexpr std::array<BlockField<PerBlockMN>, 2> kFields<PerBlockMN>{{
    {"block_m", &PerBlockMN::block_m},
    {"block_n", &PerBlockMN::block_n},
}};

// Every layout at its defaults, to look one up by name.
const std::array<Layout, std::variant_size_v<Layout>>& default_layouts() {
  static const std::array<Layout, std::variant_size_v<Layout>> defaults = {
      PerTensor{}, PerBlockK{}, PerChannel{}, PerBlockMN{}};
  return defaults;
}

std::string layout_names() {
  std::string names;
  for (const Layout& layout : default_layouts()) {
    names += (names.empty() ? "" : ", ") + std::string(layout_name(layout));
  }
  return names;
}

template <class L>
void read_fields(const OrderedJson& object, L& layout) {
  for (const auto& item : object.items()) {
    // Named, not structured, bindings: lambdas may capture them with clang before 16 too.
    const std::string& key = item.key();
    const OrderedJson& value = item.value();
    if (key == "layout") continue;
    const auto field = std::find_if(kFields<L>.begin(), kFields<L>.end(),
                                    [&](const BlockField<L>& f) { return f.name == key; });
    if (field == kFields<L>.end()) {
      std::string expected;
      for (const auto& f : kFields<L>) {
        expected += (expected.empty() ? "" : ", ") + std::string(f.name);
      }
      fail<ValueError>("unknown field '", key, "' for ", L::kName,
                       " (its fields: ", expected.empty() ? "none" : expected, ")");
    }
    const bool fits = value.is_number_integer() &&
                      (!value.is_number_unsigned() ||
                       value.template get<std::uint64_t>() <=
                           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
    if (!fits) {
      fail<ValueError>("field '", key, "' must be a JSON integer in the int64 range, got ",
                       value.type_name(), " ", value.dump());
    }
    layout.*(field->member) = value.template get<std::int64_t>();
  }
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return a / b + (a % b != 0 ? 1 : 0);
}

// The scale shapes validate_layout accepts, canonical first.
std::vector<Shape> accepted_scale_shapes(const Layout& layout,
                                         std::span<const std::int64_t> logical_shape) {
  if (std::holds_alternative<PerTensor>(layout)) return {Shape{}, Shape{1}};
  const ScaleGrid grid = scale_grid(layout, logical_shape);
  std::vector<Shape> accepted = {grid.scale_shape};
  if (std::holds_alternative<PerChannel>(layout) && logical_shape.size() == 2) {
    accepted.push_back(Shape{grid.rows});
  }
  return accepted;
}

}  // namespace

Layout transposed(const Layout& layout, std::string_view argument) {
  if (const auto* k = std::get_if<PerBlockK>(&layout)) return PerBlockMN{k->block_size, 1};
  if (const auto* mn = std::get_if<PerBlockMN>(&layout)) {
    return PerBlockMN{mn->block_n, mn->block_m};
  }
  if (std::holds_alternative<PerChannel>(layout)) {
    fail<UnsupportedError>(argument, ": the transpose of a PerChannel tensor (one scale per ",
                           "column) has no layout; cast the transposed array instead");
  }
  return layout;  // PerTensor
}

void validate(const Layout& layout) {
  std::visit(
      [](const auto& typed) {
        using L = std::decay_t<decltype(typed)>;
        for (const auto& field : kFields<L>) {
          if (typed.*field.member < 1 || typed.*field.member > kMaxLayoutBlock) {
            fail<ValueError>(L::kName, ".", field.name, " must be in [1, ", kMaxLayoutBlock,
                             "], got ", typed.*field.member);
          }
        }
      },
      layout);
}

std::string_view layout_name(const Layout& layout) {
  return std::visit([](const auto& typed) { return std::decay_t<decltype(typed)>::kName; }, layout);
}

std::string layout_repr(const Layout& layout) {
  return std::visit(
      [](const auto& typed) {
        using L = std::decay_t<decltype(typed)>;
        std::string repr = std::string(L::kName) + "(";
        for (std::size_t i = 0; i < kFields<L>.size(); ++i) {
          repr += (i > 0 ? ", " : "") + std::string(kFields<L>[i].name) + "=" +
                  std::to_string(typed.*kFields<L>[i].member);
        }
        return repr + ")";
      },
      layout);
}

std::string layout_to_json(const Layout& layout) {
  return std::visit(
      [](const auto& typed) {
        using L = std::decay_t<decltype(typed)>;
        OrderedJson object;
        object["layout"] = std::string(L::kName);
        for (const auto& field : kFields<L>) object[std::string(field.name)] = typed.*field.member;
        return object.dump();
      },
      layout);
}

Layout layout_from_json(std::string_view json, std::string_view caller) {
  Layout parsed;
  try {
    // Strict: a key given twice would otherwise silently mean its last value.
    const OrderedJson object = detail::parse_strict_json<OrderedJson>(json, "JSON text");
    if (!object.is_object()) {
      fail<ValueError>("expected a JSON object, got ", object.type_name(), " ", json);
    }
    const auto name_entry = object.find("layout");
    if (name_entry == object.end()) {
      fail<ValueError>("missing the key \"layout\" naming one of ", layout_names());
    }
    if (!name_entry->is_string()) {
      fail<ValueError>("field 'layout' must be a JSON string, got ", name_entry->type_name(), " ",
                       name_entry->dump());
    }
    const std::string& name = name_entry->get_ref<const std::string&>();
    const auto& defaults = default_layouts();
    const auto match = std::find_if(defaults.begin(), defaults.end(),
                                    [&](const Layout& l) { return layout_name(l) == name; });
    if (match == defaults.end()) {
      fail<ValueError>("unknown layout '", name, "'; expected one of ", layout_names());
    }
    Layout layout = *match;
    std::visit([&](auto& typed) { read_fields(object, typed); }, layout);
    parsed = layout;
  } catch (const ValueError& error) {
    fail<ValueError>(caller, ": ", error.what());
  }
  validate(parsed);  // a forbidden value reports the field itself, as a constructor would
  return parsed;
}

std::size_t layout_hash(const Layout& layout) {
  std::size_t seed = layout.index();
  std::visit(
      [&](const auto& typed) {
        using L = std::decay_t<decltype(typed)>;
        for (const auto& field : kFields<L>) {
          seed ^= std::hash<std::int64_t>{}(typed.*field.member) + 0x9e3779b97f4a7c15ull +
                  (seed << 6) + (seed >> 2);
        }
      },
      layout);
  return seed;
}

ScaleGrid scale_grid(const Layout& layout, std::span<const std::int64_t> logical_shape) {
  validate(layout);
  if (logical_shape.empty()) {
    fail<ValueError>(layout_repr(layout), ": data must be at least 1-D to carry scales, got ",
                     "shape ()");
  }
  checked_numel(logical_shape, "data shape");  // rejects negative dims and overflow
  const std::size_t ndim = logical_shape.size();
  ScaleGrid grid;
  grid.cols = logical_shape[ndim - 1];
  grid.rows = ndim >= 2 ? logical_shape[ndim - 2] : 1;
  const auto batch_dims = logical_shape.first(ndim >= 2 ? ndim - 2 : 0);
  grid.batch = checked_numel(batch_dims, "batch dims of the data");

  if (std::holds_alternative<PerTensor>(layout)) {
    grid.per_tensor = true;
    grid.block_rows = std::max<std::int64_t>(grid.rows, 1);
    grid.block_cols = std::max<std::int64_t>(grid.cols, 1);
    return grid;  // scale_rows = scale_cols = 1, scale_shape ()
  }
  grid.scale_rows = grid.rows;
  if (const auto* block_k = std::get_if<PerBlockK>(&layout)) {
    grid.block_cols = block_k->block_size;
    grid.scale_cols = ceil_div(grid.cols, grid.block_cols);
  } else if (const auto* block_mn = std::get_if<PerBlockMN>(&layout)) {
    grid.block_rows = block_mn->block_m;
    grid.block_cols = block_mn->block_n;
    grid.scale_rows = ceil_div(grid.rows, grid.block_rows);
    grid.scale_cols = ceil_div(grid.cols, grid.block_cols);
  } else {  // PerChannel: one block spans the row (and an empty row still has its scale)
    grid.block_cols = std::max<std::int64_t>(grid.cols, 1);
    grid.scale_cols = 1;
  }
  // The scale has the data's rank: leading dims carried, a 1-D tensor's single row dropped.
  grid.scale_shape.assign(batch_dims.begin(), batch_dims.end());
  if (ndim >= 2) grid.scale_shape.push_back(grid.scale_rows);
  grid.scale_shape.push_back(grid.scale_cols);
  return grid;
}

void validate_layout(const Layout& layout, std::span<const std::int64_t> logical_shape,
                     const Array& scale) {
  const std::vector<Shape> accepted = accepted_scale_shapes(layout, logical_shape);
  if (std::find(accepted.begin(), accepted.end(), scale.shape()) != accepted.end()) return;
  std::string expected;
  for (std::size_t i = 0; i < accepted.size(); ++i) {
    expected += (i > 0 ? " or " : "") + shape_str(accepted[i]);
  }
  fail<ValueError>(layout_repr(layout), ": scale shape must be ", expected, " for data of shape ",
                   shape_str(logical_shape), ", got ", shape_str(scale.shape()));
}

}  // namespace breccia
