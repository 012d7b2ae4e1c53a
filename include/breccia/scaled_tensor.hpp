// ScaledTensor: low-precision data, its decode scales and the recipe and layout that say how
// to read them. Immutable; every invariant is checked once, at construction.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "breccia/array.hpp"
#include "breccia/layouts.hpp"
#include "breccia/recipe_spec.hpp"
#include "breccia/recipes.hpp"

namespace breccia {

class ScaledTensor {
 public:
  // Throws TypeError / ValueError / DeviceError naming the offending argument.
  // - data: >= 1-D; float8_e4m3fn/float8_e5m2 (or uint8) for FP8 recipes, float6_e2m3fn /
  //   float6_e3m2fn (or uint8) for MXFP6, uint8 (packed pairs along the last axis) for MXFP4,
  //   NVFP4 and INT4.
  // - scale: the decode multiplier, shaped as `layout` says; fp32 for FP8 per-tensor and block
  //   recipes, E8M0 (float8_e8m0fnu or uint8) for the MX recipes, E4M3 (float8_e4m3fn or
  //   uint8) for NVFP4, the recipe's scale_dtype for INT4.
  // - global_scale: NVFP4 only and required there: fp32 with one element.
  // - zero_point: unsigned INT4 only and required there: uint8 shaped like scale.
  ScaledTensor(Array data, Array scale, Recipe recipe, Layout layout,
               std::optional<Array> global_scale = std::nullopt,
               std::optional<Array> zero_point = std::nullopt);

  const Array& data() const { return data_; }
  const Array& scale() const { return scale_; }
  const Recipe& recipe() const { return recipe_; }
  const RecipeSpec& spec() const { return spec_; }  // what the recipe implies
  const Layout& layout() const { return layout_; }
  const std::optional<Array>& global_scale() const { return global_scale_; }
  const std::optional<Array>& zero_point() const { return zero_point_; }

  const Shape& shape() const { return data_.shape(); }  // bytes for packed 4-bit data
  Shape logical_shape() const;  // elements: the last dim doubled for packed 4-bit data
  int ndim() const { return data_.ndim(); }
  DType data_dtype() const { return data_.dtype(); }
  DType scale_dtype() const { return scale_.dtype(); }
  Device device() const { return data_.device(); }
  ScaleGrid grid() const;

  // breccia.ScaledTensor(shape=(4, 8), data_dtype=float8_e4m3fn, scale_shape=(), recipe=...,
  // layout=PerTensor())
  std::string repr() const;

 private:
  Array data_;
  Array scale_;
  Recipe recipe_;
  RecipeSpec spec_;
  Layout layout_;
  std::optional<Array> global_scale_;
  std::optional<Array> zero_point_;
};

// A matmul operand: quantized or plain (fp32/fp16/bf16/fp64).
using Operand = std::variant<Array, ScaledTensor>;

}  // namespace breccia
