// The quantization plan: everything about a cast that follows from (shape, recipe, axis) —
// the recipe's spec, the layout for that axis, block geometry, output shapes and dtypes —
// computed and validated once, in one place, and handed unchanged to whichever kernel runs.
#pragma once

#include <cstdint>
#include <span>

#include "breccia/array.hpp"
#include "breccia/layouts.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/recipes.hpp"

namespace breccia {

class ScaledTensor;

struct QuantPlan {
  Recipe recipe;
  RecipeSpec spec;  // what the recipe implies: formats, rule, layouts
  Layout layout;
  int axis = -1;        // -1 rowwise blocks, -2 columnwise blocks
  Shape logical_shape;  // elements
  ScaleGrid grid;       // scaling units over (batch, rows, cols)
  // Tile whose amax sets one scale: the scale block itself, except NVFP4 two_d (16 x 16).
  std::int64_t amax_block_rows = 1;
  std::int64_t amax_block_cols = 1;
  Shape data_shape;  // bytes: last dim halved for packed formats
  DType data_dtype = DType::kU8;
  DType scale_dtype = DType::kF32;  // the storage dtype (spec.scale is what it means)
  bool has_global_scale = false;    // NVFP4
  bool has_zero_point = false;      // unsigned INT4
};

// Plan for cast(x, recipe, axis); throws ValueError naming the argument when the shape does
// not fit the recipe (too few dims, a block not dividing the blocked axis, odd packed dim).
QuantPlan plan_cast(std::span<const std::int64_t> x_shape, const Recipe& recipe, int axis = -1);

// The plan that describes an existing ScaledTensor (for dequantize and fast kernels). The
// scale's meaning comes from the recipe, never from the dtype that stores it.
QuantPlan plan_of(const ScaledTensor& scaled);

}  // namespace breccia
