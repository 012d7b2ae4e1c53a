#include "breccia/plan.hpp"

#include <string>
#include <type_traits>
#include <variant>

#include "breccia/error.hpp"
#include "breccia/scaled_tensor.hpp"

namespace breccia {
namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};

ElementFormat fp8_element(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? ElementFormat::kE4M3 : ElementFormat::kE5M2;
}

DType data_dtype_of(ElementFormat format) {
  switch (format) {
    case ElementFormat::kE4M3:
      return DType::kE4M3;
    case ElementFormat::kE5M2:
      return DType::kE5M2;
    default:
      return DType::kU8;  // packed pairs of 4-bit codes
  }
}

DType scale_dtype_of(const Recipe& recipe) {
  return std::visit(Overloaded{
                        [](const MXFP8BlockScaling&) { return DType::kE8M0; },
                        [](const NVFP4BlockScaling&) { return DType::kE4M3; },
                        [](const INT4Scaling& r) {
                          switch (r.scale_dtype) {
                            case Int4ScaleDType::kF16:
                              return DType::kF16;
                            case Int4ScaleDType::kBF16:
                              return DType::kBF16;
                            case Int4ScaleDType::kF32:
                              break;
                          }
                          return DType::kF32;
                        },
                        [](const auto&) { return DType::kF32; },
                    },
                    recipe);
}

// Block (rows x cols) of one scale for a block recipe along `axis`, and its layout.
struct BlockChoice {
  std::int64_t rows;
  std::int64_t cols;
  Layout layout;
};

BlockChoice block_of(const Recipe& recipe, int axis, std::int64_t cols) {
  const bool rowwise = axis == -1;
  auto along = [&](std::int64_t block) -> BlockChoice {
    return rowwise ? BlockChoice{1, block, PerBlockMN{1, block}}
                   : BlockChoice{block, 1, PerBlockMN{block, 1}};
  };
  return std::visit(Overloaded{
                        [&](const Float8BlockScaling& r) -> BlockChoice {
                          if (rowwise) {
                            if (r.block_m == 1) return {1, r.block_k, PerBlockK{r.block_k}};
                            return {r.block_m, r.block_k, PerBlockMN{r.block_m, r.block_k}};
                          }
                          return {r.block_k, r.block_m, PerBlockMN{r.block_k, r.block_m}};
                        },
                        [&](const MXFP8BlockScaling& r) { return along(r.block_size); },
                        [&](const NVFP4BlockScaling& r) { return along(r.block_size); },
                        [&](const INT4Scaling& r) -> BlockChoice {
                          if (r.group_size == -1) {
                            if (!rowwise) {
                              fail<ValueError>(
                                  "axis: INT4Scaling(group_size=-1) quantizes per output row and "
                                  "needs axis=-1, got axis=-2");
                            }
                            return {1, cols, PerChannel{}};
                          }
                          if (rowwise) return {1, r.group_size, PerBlockK{r.group_size}};
                          return {r.group_size, 1, PerBlockMN{r.group_size, 1}};
                        },
                        [](const auto&) -> BlockChoice {
                          return {1, 1, PerTensor{}};
                        },
                    },
                    recipe);
}

bool is_per_tensor(const Recipe& recipe) {
  return std::holds_alternative<DelayedScaling>(recipe) ||
         std::holds_alternative<Float8CurrentScaling>(recipe);
}

Shape packed_shape(Shape shape, ElementFormat format) {
  if (is_packed(format) && !shape.empty()) shape.back() /= 2;
  return shape;
}

}  // namespace

ElementFormat element_format(const Recipe& recipe) {
  return std::visit(Overloaded{
                        [](const NVFP4BlockScaling&) { return ElementFormat::kE2M1; },
                        [](const INT4Scaling& r) {
                          return r.is_signed ? ElementFormat::kInt4Signed
                                             : ElementFormat::kInt4Unsigned;
                        },
                        [](const auto& r) { return fp8_element(r.fp8_format); },
                    },
                    recipe);
}

QuantPlan plan_cast(std::span<const std::int64_t> x_shape, const Recipe& recipe, int axis) {
  validate(recipe);
  const int ndim = static_cast<int>(x_shape.size());
  const std::string name(recipe_name(recipe));
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
  plan.format = element_format(recipe);
  plan.axis = axis;
  plan.logical_shape.assign(x_shape.begin(), x_shape.end());

  if (!is_per_tensor(recipe)) {
    if (ndim < 2) {
      fail<ValueError>("x: ", name, " is block-scaled and needs x.ndim >= 2, got shape ",
                       shape_str(x_shape));
    }
    const std::int64_t rows = x_shape[ndim - 2];
    const std::int64_t cols = x_shape[ndim - 1];
    if (is_packed(plan.format) && cols % 2 != 0) {
      fail<ValueError>("x: ", name,
                       " packs two 4-bit codes per byte along the last dimension, "
                       "which must be even, got shape ",
                       shape_str(x_shape));
    }
    const BlockChoice block = block_of(recipe, axis, cols);
    plan.layout = block.layout;
    const std::int64_t blocked_extent = axis == -1 ? cols : rows;
    const std::int64_t block_size = axis == -1 ? block.cols : block.rows;
    if (blocked_extent % block_size != 0) {
      fail<ValueError>("x: ", name, " needs dimension ", axis, " (size ", blocked_extent,
                       ") to be a multiple of the block size ", block_size, ", got shape ",
                       shape_str(x_shape));
    }
    plan.amax_block_rows = block.rows;
    plan.amax_block_cols = block.cols;
    if (const auto* nvfp4 = std::get_if<NVFP4BlockScaling>(&recipe); nvfp4 && nvfp4->two_d) {
      plan.amax_block_rows = nvfp4->block_size;
      plan.amax_block_cols = nvfp4->block_size;
    }
  }

  plan.grid = scale_grid(plan.layout, plan.logical_shape);
  plan.data_shape = packed_shape(plan.logical_shape, plan.format);
  plan.data_dtype = data_dtype_of(plan.format);
  plan.scale_dtype = scale_dtype_of(recipe);
  plan.has_global_scale = std::holds_alternative<NVFP4BlockScaling>(recipe);
  plan.has_zero_point = plan.format == ElementFormat::kInt4Unsigned;
  return plan;
}

QuantPlan plan_of(const ScaledTensor& scaled) {
  QuantPlan plan;
  plan.recipe = scaled.recipe();
  plan.layout = scaled.layout();
  plan.format = element_format(scaled.recipe());
  plan.logical_shape = scaled.logical_shape();
  plan.grid = scaled.grid();
  plan.axis = plan.grid.block_rows > 1 && plan.grid.block_cols == 1 ? -2 : -1;
  plan.amax_block_rows = plan.grid.block_rows;
  plan.amax_block_cols = plan.grid.block_cols;
  plan.data_shape = scaled.shape();
  plan.data_dtype = scaled.data_dtype();
  plan.scale_dtype = scaled.scale_dtype();
  plan.has_global_scale = scaled.global_scale().has_value();
  plan.has_zero_point = scaled.zero_point().has_value();
  return plan;
}

}  // namespace breccia
