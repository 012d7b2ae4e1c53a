#include "breccia/scaled_tensor.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/plan.hpp"

namespace breccia {
namespace {

// "float8_e4m3fn or uint8"
std::string dtype_choices(const std::vector<DType>& dtypes) {
  std::string choices;
  for (std::size_t i = 0; i < dtypes.size(); ++i) {
    choices += (i > 0 ? " or " : "") + std::string(dtype_name(dtypes[i]));
  }
  return choices;
}

void require_dtype(std::string_view argument, const Array& array, const std::vector<DType>& allowed,
                   const Recipe& recipe) {
  if (std::find(allowed.begin(), allowed.end(), array.dtype()) != allowed.end()) return;
  fail<TypeError>(argument, ": ", recipe_repr(recipe), " needs dtype ", dtype_choices(allowed),
                  ", got ", dtype_name(array.dtype()));
}

void require_same_device(std::string_view argument, const Array& array, const Array& data) {
  if (array.device() == data.device()) return;
  fail<DeviceError>(argument, " is on ", array.device(), " but data is on ", data.device(),
                    "; every array of a ScaledTensor must be on one device");
}

}  // namespace

ScaledTensor::ScaledTensor(Array data, Array scale, Recipe recipe, Layout layout,
                           std::optional<Array> global_scale, std::optional<Array> zero_point)
    : data_(std::move(data)),
      scale_(std::move(scale)),
      recipe_(std::move(recipe)),
      spec_(spec_of(recipe_)),
      layout_(std::move(layout)),
      global_scale_(std::move(global_scale)),
      zero_point_(std::move(zero_point)) {
  if (data_.ndim() < 1) {
    fail<ValueError>("data must be at least 1-D (a scale is laid out over its last axis), got ",
                     "shape ", shape_str(data_.shape()));
  }
  validate(layout_);

  const std::vector<Layout>& layouts = spec_.layouts;
  if (std::find(layouts.begin(), layouts.end(), layout_) == layouts.end()) {
    std::string expected;
    for (std::size_t i = 0; i < layouts.size(); ++i) {
      expected += (i > 0 ? " or " : "") + layout_repr(layouts[i]);
    }
    fail<ValueError>("layout: ", recipe_repr(recipe_), " is laid out as ", expected, ", got ",
                     layout_repr(layout_));
  }

  require_dtype("data", data_, spec_.data_dtypes, recipe_);
  require_dtype("scale", scale_, spec_.scale_dtypes, recipe_);
  require_same_device("scale", scale_, data_);
  validate_layout(layout_, logical_shape(), scale_);

  if (global_scale_.has_value() != spec_.has_global_scale) {
    fail<ValueError>("global_scale: ", recipe_repr(recipe_),
                     spec_.has_global_scale
                         ? " needs a per-tensor fp32 global_scale, got none"
                         : " has no global_scale (it is NVFP4's alone), got one");
  }
  if (global_scale_) {
    require_dtype("global_scale", *global_scale_, {DType::kF32}, recipe_);
    require_same_device("global_scale", *global_scale_, data_);
    if (global_scale_->numel() != 1) {
      fail<ValueError>("global_scale: must hold exactly one element, got shape ",
                       shape_str(global_scale_->shape()));
    }
  }

  if (zero_point_.has_value() != spec_.has_zero_point) {
    fail<ValueError>("zero_point: ", recipe_repr(recipe_),
                     spec_.has_zero_point
                         ? " is asymmetric and needs a uint8 zero_point, got none"
                         : " has no zero point (only unsigned INT4 does), got one");
  }
  if (zero_point_) {
    require_dtype("zero_point", *zero_point_, {DType::kU8}, recipe_);
    require_same_device("zero_point", *zero_point_, data_);
    if (zero_point_->shape() != scale_.shape()) {
      fail<ValueError>("zero_point: must have the scale's shape ", shape_str(scale_.shape()),
                       ", got ", shape_str(zero_point_->shape()));
    }
  }
}

Shape ScaledTensor::logical_shape() const {
  Shape shape = data_.shape();
  if (spec_.packed) shape.back() *= 2;
  return shape;
}

ScaleGrid ScaledTensor::grid() const {
  return scale_grid(layout_, logical_shape());
}

std::string ScaledTensor::repr() const {
  // Packed 4-bit data's shape counts bytes; the logical shape says how many elements it holds.
  const std::string logical =
      spec_.packed ? ", logical_shape=" + shape_str(logical_shape()) : std::string();
  return "breccia.ScaledTensor(shape=" + shape_str(shape()) + logical +
         ", data_dtype=" + std::string(dtype_name(data_dtype())) +
         ", scale_shape=" + shape_str(scale_.shape()) + ", recipe=" + recipe_repr(recipe_) +
         ", layout=" + layout_repr(layout_) + ")";
}

}  // namespace breccia
