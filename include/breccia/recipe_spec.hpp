// The recipe spec: everything a recipe implies for the rest of breccia, derived from the
// recipe in one function (spec_of). The plan, ScaledTensor validation, the kernels (through
// rules/rules.hpp), dequantize, matmul dispatch and checkpoint IO read the spec; outside
// spec_of and the recipes' JSON/Python front, no code asks which recipe it holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "breccia/dtype.hpp"
#include "breccia/formats/element_format.hpp"
#include "breccia/formats/scale_format.hpp"
#include "breccia/layouts.hpp"
#include "breccia/recipes.hpp"

namespace breccia {

// Which scale rule (rules/) turns a unit's statistics into its scale.
enum class RuleFamily : std::uint8_t {
  kFp8,    // fmax / amax (current, block and delayed FP8; TransformerEngine)
  kMx,     // an E8M0 power of two per 32 elements (OCP MX)
  kNvfp4,  // E4M3 block scales under an fp32 tensor scale (NVFP4)
  kInt4,   // scale and optional zero point per group (GPTQ / AWQ)
};

struct RecipeSpec {
  std::string_view name;  // the recipe's class name
  RuleFamily family = RuleFamily::kFp8;
  ElementFormat element = ElementFormat::kE4M3;
  ScaleFormat scale = ScaleFormat::kF32;  // the logical format of the scale entries

  // Rule parameters (each family reads its own).
  bool power_2_scale = false;  // kFp8: round encode scales down to powers of two
  bool delayed = false;        // kFp8: DelayedScaling's margin rule and state
  int margin = 0;              // kFp8 delayed: fmax * 2^-margin
  bool rceil = false;          // kMx: round scales up (TransformerEngine) instead of floor (OCP)

  // Geometry. One scale for the whole tensor, or one per block along the blocked axis:
  // rowwise (axis=-1) and columnwise (axis=-2, absent when the recipe has no such form).
  bool per_tensor = false;
  Layout rowwise_layout = PerTensor{};
  std::optional<Layout> columnwise_layout = PerTensor{};
  // A unit's amax covers amax_tile x amax_tile elements instead of the scale's block (NVFP4
  // two_d's 16 x 16 tiles), or 0: the block itself.
  std::int64_t amax_tile = 0;
  std::vector<Layout> layouts;  // every layout a ScaledTensor of this recipe may have

  bool has_global_scale = false;  // NVFP4's per-tensor fp32 decode factor
  bool has_zero_point = false;    // asymmetric INT4's uint8 per group

  // Derived from the formats' traits.
  float element_max = 0.0f;  // largest finite element (INT4: 7 or 15)
  int element_bits = 8;      // bits of one code
  bool packed = false;       // two 4-bit codes per byte along the last axis

  // Storage: the dtype cast writes, and every dtype a ScaledTensor may hold (uint8 always
  // works as raw bytes for one-byte codes).
  DType data_dtype = DType::kU8;
  std::vector<DType> data_dtypes;
  DType scale_dtype = DType::kF32;
  std::vector<DType> scale_dtypes;

  // One-byte block scales, which GEMMs read padded and swizzled (scale_layout.hpp).
  bool byte_block_scales() const { return !per_tensor && scale_bytes(scale) == 1; }
};

// The spec of a recipe (validated first: ValueError naming the field).
RecipeSpec spec_of(const Recipe& recipe);

std::string_view to_string(ElementFormat format);  // "E4M3", "E2M3", "E2M1", "INT4", "UINT4"
std::string_view to_string(ScaleFormat format);    // "E8M0", "E4M3", "fp32", "fp16", "bf16"
std::string_view to_string(RuleFamily family);     // "fp8", "mx", "nvfp4", "int4"

}  // namespace breccia
