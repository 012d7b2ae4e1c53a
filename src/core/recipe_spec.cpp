// spec_of: the one place that reads a recipe's type and fields and says what they imply.
#include "breccia/recipe_spec.hpp"

#include <type_traits>
#include <variant>

namespace breccia {
namespace {

// Element format and storage of an element, from the format's traits.
void set_element(RecipeSpec& spec, ElementFormat element) {
  spec.element = element;
  spec.element_bits = element_bits(element);
  spec.packed = is_packed(element);
  switch (element) {
    case ElementFormat::kE4M3:
      spec.element_max = kElementMax<ElementFormat::kE4M3>;
      spec.data_dtype = DType::kE4M3;
      break;
    case ElementFormat::kE5M2:
      spec.element_max = kElementMax<ElementFormat::kE5M2>;
      spec.data_dtype = DType::kE5M2;
      break;
    case ElementFormat::kE2M3:
      spec.element_max = kElementMax<ElementFormat::kE2M3>;
      spec.data_dtype = DType::kE2M3;
      break;
    case ElementFormat::kE3M2:
      spec.element_max = kElementMax<ElementFormat::kE3M2>;
      spec.data_dtype = DType::kE3M2;
      break;
    case ElementFormat::kE2M1:
      spec.element_max = kElementMax<ElementFormat::kE2M1>;
      spec.data_dtype = DType::kU8;  // packed pairs
      break;
    case ElementFormat::kInt4Signed:
      spec.element_max = 7.0f;
      spec.data_dtype = DType::kU8;
      break;
    case ElementFormat::kInt4Unsigned:
      spec.element_max = 15.0f;
      spec.data_dtype = DType::kU8;
      break;
  }
  spec.data_dtypes = {spec.data_dtype};
  if (spec.data_dtype != DType::kU8) spec.data_dtypes.push_back(DType::kU8);
}

void set_scale(RecipeSpec& spec, ScaleFormat scale) {
  spec.scale = scale;
  switch (scale) {
    case ScaleFormat::kE8M0:
      spec.scale_dtypes = {DType::kE8M0, DType::kU8};
      break;
    case ScaleFormat::kE4M3:
      spec.scale_dtypes = {DType::kE4M3, DType::kU8};
      break;
    case ScaleFormat::kF16:
      spec.scale_dtypes = {DType::kF16};
      break;
    case ScaleFormat::kBF16:
      spec.scale_dtypes = {DType::kBF16};
      break;
    case ScaleFormat::kF32:
      spec.scale_dtypes = {DType::kF32};
      break;
  }
  spec.scale_dtype = spec.scale_dtypes.front();
}

ElementFormat element_of(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? ElementFormat::kE4M3 : ElementFormat::kE5M2;
}
ElementFormat element_of(Fp6Format format) {
  return format == Fp6Format::kE2M3 ? ElementFormat::kE2M3 : ElementFormat::kE3M2;
}

// One scale per tensor (FP8 per-tensor recipes; PerChannel is torchao's row-wise FP8 form).
void per_tensor(RecipeSpec& spec) {
  spec.per_tensor = true;
  spec.rowwise_layout = PerTensor{};
  spec.columnwise_layout = PerTensor{};
  spec.layouts = {PerTensor{}, PerChannel{}};
}

// One scale per `block` elements along the blocked axis.
void blocks_along_axis(RecipeSpec& spec, std::int64_t block) {
  spec.rowwise_layout = PerBlockMN{1, block};
  spec.columnwise_layout = PerBlockMN{block, 1};
  spec.layouts = {spec.rowwise_layout, *spec.columnwise_layout};
}

void mx(RecipeSpec& spec, ElementFormat element, std::int64_t block, MXScaleRounding rounding) {
  spec.family = RuleFamily::kMx;
  set_element(spec, element);
  set_scale(spec, ScaleFormat::kE8M0);
  spec.rceil = rounding == MXScaleRounding::kRceil;
  blocks_along_axis(spec, block);
}

void fill(RecipeSpec& spec, const DelayedScaling& r) {
  set_element(spec, element_of(r.fp8_format));
  set_scale(spec, ScaleFormat::kF32);
  spec.delayed = true;
  spec.margin = static_cast<int>(r.margin < 256 ? r.margin : 256);  // 2^-256 fmax is 0 already
  per_tensor(spec);
}

void fill(RecipeSpec& spec, const Float8CurrentScaling& r) {
  set_element(spec, element_of(r.fp8_format));
  set_scale(spec, ScaleFormat::kF32);
  spec.power_2_scale = r.power_2_scale;
  per_tensor(spec);
}

void fill(RecipeSpec& spec, const Float8BlockScaling& r) {
  set_element(spec, element_of(r.fp8_format));
  set_scale(spec, ScaleFormat::kF32);
  spec.power_2_scale = r.power_2_scale;
  spec.rowwise_layout =
      r.block_m == 1 ? Layout{PerBlockK{r.block_k}} : Layout{PerBlockMN{r.block_m, r.block_k}};
  spec.columnwise_layout = PerBlockMN{r.block_k, r.block_m};
  if (r.block_m == 1) spec.layouts.push_back(PerBlockK{r.block_k});
  spec.layouts.push_back(PerBlockMN{r.block_m, r.block_k});
  if (r.block_m != r.block_k) spec.layouts.push_back(PerBlockMN{r.block_k, r.block_m});
}

void fill(RecipeSpec& spec, const MXFP8BlockScaling& r) {
  mx(spec, element_of(r.fp8_format), r.block_size, r.scale_rounding);
}
void fill(RecipeSpec& spec, const MXFP6BlockScaling& r) {
  mx(spec, element_of(r.fp6_format), r.block_size, r.scale_rounding);
}
void fill(RecipeSpec& spec, const MXFP4BlockScaling& r) {
  mx(spec, ElementFormat::kE2M1, r.block_size, r.scale_rounding);
}

void fill(RecipeSpec& spec, const NVFP4BlockScaling& r) {
  spec.family = RuleFamily::kNvfp4;
  set_element(spec, ElementFormat::kE2M1);
  set_scale(spec, ScaleFormat::kE4M3);
  spec.has_global_scale = true;
  if (r.two_d) spec.amax_tile = r.block_size;
  blocks_along_axis(spec, r.block_size);
}

void fill(RecipeSpec& spec, const INT4Scaling& r) {
  spec.family = RuleFamily::kInt4;
  set_element(spec, r.is_signed ? ElementFormat::kInt4Signed : ElementFormat::kInt4Unsigned);
  constexpr ScaleFormat kByScaleDType[] = {ScaleFormat::kF16, ScaleFormat::kBF16,
                                           ScaleFormat::kF32};
  set_scale(spec, kByScaleDType[static_cast<std::size_t>(r.scale_dtype)]);
  spec.has_zero_point = !r.is_signed;
  if (r.group_size == -1) {  // one group per output row
    spec.rowwise_layout = PerChannel{};
    spec.columnwise_layout.reset();
    spec.layouts = {PerChannel{}};
    return;
  }
  spec.rowwise_layout = PerBlockK{r.group_size};
  spec.columnwise_layout = PerBlockMN{r.group_size, 1};
  spec.layouts = {PerBlockK{r.group_size}, PerBlockMN{1, r.group_size},
                  PerBlockMN{r.group_size, 1}};
}

}  // namespace

RecipeSpec spec_of(const Recipe& recipe) {
  validate(recipe);
  RecipeSpec spec;
  std::visit(
      [&](const auto& typed) {
        spec.name = std::decay_t<decltype(typed)>::kName;
        fill(spec, typed);
      },
      recipe);
  return spec;
}

std::string_view to_string(ElementFormat format) {
  switch (format) {
    case ElementFormat::kE4M3:
      return "E4M3";
    case ElementFormat::kE5M2:
      return "E5M2";
    case ElementFormat::kE2M3:
      return "E2M3";
    case ElementFormat::kE3M2:
      return "E3M2";
    case ElementFormat::kE2M1:
      return "E2M1";
    case ElementFormat::kInt4Signed:
      return "INT4";
    case ElementFormat::kInt4Unsigned:
      break;
  }
  return "UINT4";
}

std::string_view to_string(ScaleFormat format) {
  switch (format) {
    case ScaleFormat::kE8M0:
      return "E8M0";
    case ScaleFormat::kE4M3:
      return "E4M3";
    case ScaleFormat::kF16:
      return "fp16";
    case ScaleFormat::kBF16:
      return "bf16";
    case ScaleFormat::kF32:
      break;
  }
  return "fp32";
}

std::string_view to_string(RuleFamily family) {
  switch (family) {
    case RuleFamily::kFp8:
      return "fp8";
    case RuleFamily::kMx:
      return "mx";
    case RuleFamily::kNvfp4:
      return "nvfp4";
    case RuleFamily::kInt4:
      break;
  }
  return "int4";
}

}  // namespace breccia
