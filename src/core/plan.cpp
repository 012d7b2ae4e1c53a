#include "breccia/plan.hpp"

#include <string>

#include "breccia/error.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia {
namespace {

Shape packed_shape(Shape shape, bool packed) {
  if (packed && !shape.empty()) shape.back() /= 2;
  return shape;
}

// Block (rows x cols) of one scale under a block layout, for data with `cols` columns.
struct Block {
  std::int64_t rows;
  std::int64_t cols;
};
Block block_of(const Layout& layout, std::int64_t cols) {
  if (const auto* k = std::get_if<PerBlockK>(&layout)) return {1, k->block_size};
  if (const auto* mn = std::get_if<PerBlockMN>(&layout)) return {mn->block_m, mn->block_n};
  return {1, cols};  // PerChannel: the whole row
}

}  // namespace

QuantPlan plan_cast(std::span<const std::int64_t> x_shape, const Recipe& recipe, int axis) {
  const RecipeSpec spec = spec_of(recipe);
  const int ndim = static_cast<int>(x_shape.size());
  const std::string name(spec.name);
  if (ndim < 1) fail<ValueError>("x: ", name, " needs at least a 1-D input, got a 0-D scalar");
  checked_numel(x_shape, "x.shape");

  if (axis == ndim - 1) axis = -1;
  if (axis == ndim - 2 && ndim >= 2) axis = -2;
  if (axis != -1 && axis != -2) {
    fail<ValueError>(
        "axis: expected -1 (blocks along the last dimension) or -2 (along the "
        "second-to-last), got ",
        axis, " for x of shape ", shape_str(x_shape));
  }

  QuantPlan plan;
  plan.recipe = recipe;
  plan.spec = spec;
  plan.axis = axis;
  plan.logical_shape.assign(x_shape.begin(), x_shape.end());
  plan.layout = spec.rowwise_layout;

  if (!spec.per_tensor) {
    if (axis == -2 && !spec.columnwise_layout) {
      fail<ValueError>("axis: ", recipe_repr(recipe),
                       " quantizes per output row and needs axis=-1, got axis=-2");
    }
    if (ndim < 2) {
      fail<ValueError>("x: ", name, " is block-scaled and needs x.ndim >= 2, got shape ",
                       shape_str(x_shape));
    }
    const std::int64_t rows = x_shape[ndim - 2];
    const std::int64_t cols = x_shape[ndim - 1];
    if (spec.packed && cols % 2 != 0) {
      fail<ValueError>("x: ", name,
                       " packs two 4-bit codes per byte along the last dimension, "
                       "which must be even, got shape ",
                       shape_str(x_shape));
    }
    if (axis == -2) plan.layout = *spec.columnwise_layout;
    const Block block = block_of(plan.layout, cols);
    const std::int64_t blocked_extent = axis == -1 ? cols : rows;
    const std::int64_t block_size = axis == -1 ? block.cols : block.rows;
    if (blocked_extent % block_size != 0) {
      fail<ValueError>("x: ", name, " needs dimension ", axis, " (size ", blocked_extent,
                       ") to be a multiple of the block size ", block_size, ", got shape ",
                       shape_str(x_shape));
    }
    plan.amax_block_rows = spec.amax_tile > 0 ? spec.amax_tile : block.rows;
    plan.amax_block_cols = spec.amax_tile > 0 ? spec.amax_tile : block.cols;
  }

  plan.grid = scale_grid(plan.layout, plan.logical_shape);
  plan.data_shape = packed_shape(plan.logical_shape, spec.packed);
  plan.data_dtype = spec.data_dtype;
  plan.scale_dtype = spec.scale_dtype;
  plan.has_global_scale = spec.has_global_scale;
  plan.has_zero_point = spec.has_zero_point;
  return plan;
}

QuantPlan plan_of(const ScaledTensor& scaled) {
  QuantPlan plan;
  plan.recipe = scaled.recipe();
  plan.spec = scaled.spec();
  plan.layout = scaled.layout();
  plan.logical_shape = scaled.logical_shape();
  plan.grid = scaled.grid();
  plan.axis = plan.grid.block_rows > 1 && plan.grid.block_cols == 1 ? -2 : -1;
  plan.amax_block_rows = plan.grid.block_rows;
  plan.amax_block_cols = plan.grid.block_cols;
  plan.data_shape = scaled.shape();
  plan.data_dtype = scaled.data_dtype();
  plan.scale_dtype = scaled.scale_dtype();
  plan.has_global_scale = plan.spec.has_global_scale;
  plan.has_zero_point = plan.spec.has_zero_point;
  return plan;
}

}  // namespace breccia
