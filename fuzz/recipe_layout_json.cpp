// libFuzzer target: recipe_from_json and layout_from_json on arbitrary text. What parses must
// be valid and survive to_json -> from_json unchanged.
#include <cstdint>
#include <string_view>

#include "breccia/layouts.hpp"
#include "breccia/recipes.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace breccia;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only_breccia_errors([&] {
    const Recipe recipe = recipe_from_json(text);
    validate(recipe);
    if (recipe_from_json(recipe_to_json(recipe)) != recipe) __builtin_trap();
  });
  fuzz::expect_only_breccia_errors([&] {
    const Layout layout = layout_from_json(text);
    validate(layout);
    if (layout_from_json(layout_to_json(layout)) != layout) __builtin_trap();
  });
  return 0;
}
