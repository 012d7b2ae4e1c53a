#include "breccia/scaled_tensor.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "breccia/error.hpp"
#include "breccia/plan.hpp"

namespace breccia {
namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};

// Which layouts each recipe's scales can be laid out in. The block recipes allow their block
// along the last axis (rowwise, axis=-1) and the transposed block (columnwise, axis=-2).
std::vector<Layout> compatible_layouts(const Recipe& recipe) {
  return std::visit(
      Overloaded{
          [](const DelayedScaling&) -> std::vector<Layout> { return {PerTensor{}, PerChannel{}}; },
          [](const Float8CurrentScaling&) -> std::vector<Layout> {
            return {PerTensor{}, PerChannel{}};  // PerChannel: torchao's row-wise FP8
          },
          [](const Float8BlockScaling& r) -> std::vector<Layout> {
            std::vector<Layout> layouts;
            if (r.block_m == 1) layouts.push_back(PerBlockK{r.block_k});
            layouts.push_back(PerBlockMN{r.block_m, r.block_k});
            if (r.block_m != r.block_k) layouts.push_back(PerBlockMN{r.block_k, r.block_m});
            return layouts;
          },
          [](const MXFP8BlockScaling& r) -> std::vector<Layout> {
            return {PerBlockMN{1, r.block_size}, PerBlockMN{r.block_size, 1}};
          },
          [](const NVFP4BlockScaling& r) -> std::vector<Layout> {
            return {PerBlockMN{1, r.block_size}, PerBlockMN{r.block_size, 1}};
          },
          [](const INT4Scaling& r) -> std::vector<Layout> {
            if (r.group_size == -1) return {PerChannel{}};
            return {PerBlockK{r.group_size}, PerBlockMN{1, r.group_size},
                    PerBlockMN{r.group_size, 1}};
          },
      },
      recipe);
}

// The dtypes `data` may have; uint8 always works as raw bytes.
std::vector<DType> allowed_data_dtypes(ElementFormat format) {
  switch (format) {
    case ElementFormat::kE4M3:
      return {DType::kE4M3, DType::kU8};
    case ElementFormat::kE5M2:
      return {DType::kE5M2, DType::kU8};
    default:
      return {DType::kU8};  // pairs of 4-bit codes
  }
}

std::vector<DType> allowed_scale_dtypes(const Recipe& recipe) {
  return std::visit(
      Overloaded{
          [](const MXFP8BlockScaling&) -> std::vector<DType> { return {DType::kE8M0, DType::kU8}; },
          [](const NVFP4BlockScaling&) -> std::vector<DType> { return {DType::kE4M3, DType::kU8}; },
          [](const INT4Scaling& r) -> std::vector<DType> {
            constexpr DType kByScaleDType[] = {DType::kF16, DType::kBF16, DType::kF32};
            return {kByScaleDType[static_cast<std::size_t>(r.scale_dtype)]};
          },
          [](const auto&) -> std::vector<DType> { return {DType::kF32}; },
      },
      recipe);
}

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
      layout_(std::move(layout)),
      global_scale_(std::move(global_scale)),
      zero_point_(std::move(zero_point)) {
  if (data_.ndim() < 1) {
    fail<ValueError>("data must be at least 1-D (a scale is laid out over its last axis), got ",
                     "shape ", shape_str(data_.shape()));
  }
  validate(recipe_);
  validate(layout_);

  const std::vector<Layout> layouts = compatible_layouts(recipe_);
  if (std::find(layouts.begin(), layouts.end(), layout_) == layouts.end()) {
    std::string expected;
    for (std::size_t i = 0; i < layouts.size(); ++i) {
      expected += (i > 0 ? " or " : "") + layout_repr(layouts[i]);
    }
    fail<ValueError>("layout: ", recipe_repr(recipe_), " is laid out as ", expected, ", got ",
                     layout_repr(layout_));
  }

  require_dtype("data", data_, allowed_data_dtypes(element_format(recipe_)), recipe_);
  require_dtype("scale", scale_, allowed_scale_dtypes(recipe_), recipe_);
  require_same_device("scale", scale_, data_);
  validate_layout(layout_, logical_shape(), scale_);

  const bool is_nvfp4 = std::holds_alternative<NVFP4BlockScaling>(recipe_);
  if (global_scale_.has_value() != is_nvfp4) {
    fail<ValueError>("global_scale: ", recipe_repr(recipe_),
                     is_nvfp4 ? " needs a per-tensor fp32 global_scale, got none"
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

  const bool is_asymmetric = element_format(recipe_) == ElementFormat::kInt4Unsigned;
  if (zero_point_.has_value() != is_asymmetric) {
    fail<ValueError>("zero_point: ", recipe_repr(recipe_),
                     is_asymmetric ? " is asymmetric and needs a uint8 zero_point, got none"
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
  if (is_packed(element_format(recipe_))) shape.back() *= 2;
  return shape;
}

ScaleGrid ScaledTensor::grid() const { return scale_grid(layout_, logical_shape()); }

std::string ScaledTensor::repr() const {
  return "breccia.ScaledTensor(shape=" + shape_str(shape()) +
         ", data_dtype=" + std::string(dtype_name(data_dtype())) +
         ", scale_shape=" + shape_str(scale_.shape()) + ", recipe=" + recipe_repr(recipe_) +
         ", layout=" + layout_repr(layout_) + ")";
}

}  // namespace breccia
