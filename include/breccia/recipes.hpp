// The scaling recipes: plain value types with equality, hashing and a JSON form. What each
// one implies for the kernels (element and scale formats, block geometry, rule) is derived in
// one place, recipe_spec.hpp; the rules themselves are in rules/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace breccia {

enum class Fp8Format : std::uint8_t { kE4M3, kE5M2 };
enum class Fp6Format : std::uint8_t { kE2M3, kE3M2 };
enum class MXScaleRounding : std::uint8_t { kFloor, kRceil };
enum class Int4ScaleDType : std::uint8_t { kF16, kBF16, kF32 };

std::string_view to_string(Fp8Format format);          // "E4M3"
std::string_view to_string(Fp6Format format);          // "E2M3"
std::string_view to_string(MXScaleRounding rounding);  // "floor"
std::string_view to_string(Int4ScaleDType dtype);      // "fp16"
Fp8Format fp8_format_from_string(std::string_view text, std::string_view argument = "fp8_format");
Fp6Format fp6_format_from_string(std::string_view text);
MXScaleRounding mx_scale_rounding_from_string(std::string_view text);
Int4ScaleDType int4_scale_dtype_from_string(std::string_view text);

// Per-tensor FP8 whose scale comes from the amax history (TransformerEngine).
struct DelayedScaling {
  static constexpr std::string_view kName = "DelayedScaling";
  Fp8Format fp8_format = Fp8Format::kE4M3;
  std::int64_t amax_history_len = 16;
  std::int64_t margin = 0;
  friend bool operator==(const DelayedScaling&, const DelayedScaling&) = default;
};

// Per-tensor FP8 from this tensor's amax (TransformerEngine).
struct Float8CurrentScaling {
  static constexpr std::string_view kName = "Float8CurrentScaling";
  Fp8Format fp8_format = Fp8Format::kE4M3;
  bool power_2_scale = false;
  friend bool operator==(const Float8CurrentScaling&, const Float8CurrentScaling&) = default;
};

// FP8 with one fp32 scale per block_m x block_k tile (1x128 activations, 128x128 weights).
struct Float8BlockScaling {
  static constexpr std::string_view kName = "Float8BlockScaling";
  Fp8Format fp8_format = Fp8Format::kE4M3;
  std::int64_t block_k = 128;
  std::int64_t block_m = 1;
  bool power_2_scale = true;
  friend bool operator==(const Float8BlockScaling&, const Float8BlockScaling&) = default;
};

// OCP MX: 32 FP8 elements share one E8M0 power-of-two scale.
struct MXFP8BlockScaling {
  static constexpr std::string_view kName = "MXFP8BlockScaling";
  Fp8Format fp8_format = Fp8Format::kE4M3;
  std::int64_t block_size = 32;  // fixed by the OCP spec
  MXScaleRounding scale_rounding = MXScaleRounding::kFloor;
  friend bool operator==(const MXFP8BlockScaling&, const MXFP8BlockScaling&) = default;
};

// OCP MX FP6: 32 elements (E2M3 or E3M2, one per byte) share one E8M0 power-of-two scale.
struct MXFP6BlockScaling {
  static constexpr std::string_view kName = "MXFP6BlockScaling";
  Fp6Format fp6_format = Fp6Format::kE2M3;
  std::int64_t block_size = 32;  // fixed by the OCP spec
  MXScaleRounding scale_rounding = MXScaleRounding::kFloor;
  friend bool operator==(const MXFP6BlockScaling&, const MXFP6BlockScaling&) = default;
};

// OCP MX FP4: 32 E2M1 elements (packed two per byte) share one E8M0 power-of-two scale.
struct MXFP4BlockScaling {
  static constexpr std::string_view kName = "MXFP4BlockScaling";
  std::int64_t block_size = 32;  // fixed by the OCP spec
  MXScaleRounding scale_rounding = MXScaleRounding::kFloor;
  friend bool operator==(const MXFP4BlockScaling&, const MXFP4BlockScaling&) = default;
};

// NVIDIA NVFP4: E2M1 elements, one E4M3 scale per 16, one fp32 scale per tensor.
struct NVFP4BlockScaling {
  static constexpr std::string_view kName = "NVFP4BlockScaling";
  std::string fp4_format = "E2M1";    // fixed by the hardware
  std::int64_t block_size = 16;       // fixed by the hardware
  std::string scale_format = "E4M3";  // fixed by the hardware
  bool two_d = false;                 // block amax over 16x16 tiles (weights)
  friend bool operator==(const NVFP4BlockScaling&, const NVFP4BlockScaling&) = default;
};

// 4-bit integers with one scale (and for unsigned, one zero point) per group of the last axis.
// group_size -1 means one group per row (per-channel).
struct INT4Scaling {
  static constexpr std::string_view kName = "INT4Scaling";
  std::int64_t group_size = 128;
  bool is_signed = true;
  Int4ScaleDType scale_dtype = Int4ScaleDType::kF16;
  friend bool operator==(const INT4Scaling&, const INT4Scaling&) = default;
};

using Recipe =
    std::variant<DelayedScaling, Float8CurrentScaling, Float8BlockScaling, MXFP8BlockScaling,
                 MXFP6BlockScaling, MXFP4BlockScaling, NVFP4BlockScaling, INT4Scaling>;

// Throws ValueError naming the field when a recipe holds a value its spec does not allow.
void validate(const Recipe& recipe);

std::string_view recipe_name(const Recipe& recipe);
// "MXFP8BlockScaling(fp8_format='E4M3', block_size=32, scale_rounding='floor')"
std::string recipe_repr(const Recipe& recipe);
// {"recipe": "MXFP8BlockScaling", "fp8_format": "E4M3", "block_size": 32, ...}: stable keys.
std::string recipe_to_json(const Recipe& recipe);
// Inverse of recipe_to_json; missing fields take their defaults; unknown recipe or field,
// wrong type or invalid value: ValueError, its message headed by `caller` (the function the
// user called: a binding's recipe constructor passes its own name). Format names (fp8_format,
// ...) are read in any case and stored in their canonical spelling ("e4m3" -> "E4M3").
Recipe recipe_from_json(std::string_view json, std::string_view caller = "recipe_from_json");
std::size_t recipe_hash(const Recipe& recipe);
// The DelayedScaling a recipe holds; ValueError naming `argument` for any other recipe.
const DelayedScaling& as_delayed_scaling(const Recipe& recipe, std::string_view argument);

// Mutable amax history of a DelayedScaling recipe (TransformerEngine's "max" algorithm).
// cast() quantizes with the current encode scale, then calls update() with the tensor's amax.
class DelayedScalingState {
 public:
  explicit DelayedScalingState(const DelayedScaling& recipe);
  DelayedScalingState(const DelayedScaling& recipe, float encode_scale, std::vector<float> history);

  const DelayedScaling& recipe() const { return recipe_; }
  float encode_scale() const { return encode_scale_; }
  float decode_scale() const { return 1.0f / encode_scale_; }
  const std::vector<float>& amax_history() const { return history_; }

  // Records amax for this step and moves the encode scale as numerics.md §3 says.
  void update(float amax);

 private:
  DelayedScaling recipe_;
  float encode_scale_ = 1.0f;
  std::vector<float> history_;
};

}  // namespace breccia

template <>
struct std::hash<breccia::Recipe> {
  std::size_t operator()(const breccia::Recipe& recipe) const {
    return breccia::recipe_hash(recipe);
  }
};
