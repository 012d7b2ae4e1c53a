// The one dispatch from a recipe spec to its rule object: every kernel (reference, CPU, CUDA)
// calls with_rule(spec, f), and f receives the rule as a concrete type, so a kernel compiled
// for it has no branch on the recipe.
#pragma once

#include "breccia/error.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/recipes.hpp"
#include "breccia/rules/fp8.hpp"
#include "breccia/rules/int4.hpp"
#include "breccia/rules/mx.hpp"
#include "breccia/rules/nvfp4.hpp"

namespace breccia::rules {

// Calls f(rule) with the spec's rule, its parameters set from the spec.
template <class F>
void with_rule(const RecipeSpec& spec, F&& f) {
  switch (spec.family) {
    case RuleFamily::kFp8: {
      auto fp8 = [&]<ElementFormat kFormat>() {
        if (spec.delayed) {
          Fp8DelayedRule<kFormat> rule;
          rule.margin = spec.margin;
          return f(rule);
        }
        Fp8CurrentRule<kFormat> rule;
        rule.power_2_scale = spec.power_2_scale;
        f(rule);
      };
      if (spec.element == ElementFormat::kE4M3)
        return fp8.template operator()<ElementFormat::kE4M3>();
      return fp8.template operator()<ElementFormat::kE5M2>();
    }
    case RuleFamily::kMx: {
      auto mx = [&]<ElementFormat kFormat>() { f(MxRule<kFormat>{.rceil = spec.rceil}); };
      switch (spec.element) {
        case ElementFormat::kE4M3:
          return mx.template operator()<ElementFormat::kE4M3>();
        case ElementFormat::kE5M2:
          return mx.template operator()<ElementFormat::kE5M2>();
        case ElementFormat::kE2M3:
          return mx.template operator()<ElementFormat::kE2M3>();
        case ElementFormat::kE3M2:
          return mx.template operator()<ElementFormat::kE3M2>();
        case ElementFormat::kE2M1:
          return mx.template operator()<ElementFormat::kE2M1>();
        default:
          break;
      }
      break;
    }
    case RuleFamily::kNvfp4:
      return f(Nvfp4Rule{});
    case RuleFamily::kInt4:
      if (spec.element == ElementFormat::kInt4Signed) {
        return f(Int4Rule<true>{.scale_format = spec.scale});
      }
      return f(Int4Rule<false>{.scale_format = spec.scale});
  }
  fail<UnsupportedError>(spec.name, ": no scale rule for this element format");
}

// Binds a DelayedScalingState's encode factor (the previous step's) to a rule that takes one;
// nothing for other rules or without a state.
template <class Rule>
void bind_state(Rule& rule, const DelayedScalingState* state) {
  if constexpr (Rule::kTakesState) {
    if (state != nullptr) {
      rule.has_state = true;
      rule.state_encode = state->encode_scale();
    }
  }
}

}  // namespace breccia::rules
