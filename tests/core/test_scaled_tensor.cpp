#include "breccia/scaled_tensor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "breccia/error.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using ::breccia::test_support::contains;
using ::breccia::test_support::error_message;

Array zeros(DType dtype, Shape shape) {
  return Array::zeros(dtype, std::move(shape));
}

// The same memory, labelled as living on a GPU (never dereferenced by the constructor).
Array on_cuda(const Array& array) {
  return Array::borrow(array.base(), array.dtype(), array.shape(), {}, Device::cuda(0),
                       array.owner());
}

// ---------------------------------------------------------------- valid tensors

TEST(ScaledTensor, PerTensorFp8) {
  const ScaledTensor st(zeros(DType::kE4M3, {4, 8}), zeros(DType::kF32, {}), Float8CurrentScaling{},
                        PerTensor{});
  EXPECT_EQ(st.shape(), (Shape{4, 8}));
  EXPECT_EQ(st.logical_shape(), (Shape{4, 8}));
  EXPECT_EQ(st.ndim(), 2);
  EXPECT_EQ(st.data_dtype(), DType::kE4M3);
  EXPECT_EQ(st.scale_dtype(), DType::kF32);
  EXPECT_EQ(st.device(), Device::cpu());
  EXPECT_TRUE(st.grid().per_tensor);
  EXPECT_FALSE(st.global_scale().has_value());
  EXPECT_FALSE(st.zero_point().has_value());
  EXPECT_EQ(st.repr(),
            "breccia.ScaledTensor(shape=(4, 8), data_dtype=float8_e4m3fn, scale_shape=(), "
            "recipe=Float8CurrentScaling(fp8_format='E4M3', power_2_scale=False), "
            "layout=PerTensor())");
}

TEST(ScaledTensor, AcceptsEveryRecipeInItsUsualForm) {
  // Raw uint8 bytes stand in for every 1-byte format.
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kU8, {8}), zeros(DType::kF32, {1}),
                               DelayedScaling{.fp8_format = Fp8Format::kE5M2}, PerTensor{}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kE5M2, {3, 4, 8}), zeros(DType::kF32, {3, 4, 1}),
                               Float8CurrentScaling{.fp8_format = Fp8Format::kE5M2}, PerChannel{}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kE4M3, {4, 256}), zeros(DType::kF32, {4, 2}),
                               Float8BlockScaling{}, PerBlockK{128}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kE4M3, {256, 300}), zeros(DType::kF32, {2, 3}),
                               Float8BlockScaling{.block_k = 128, .block_m = 128},
                               PerBlockMN{128, 128}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kE4M3, {4, 64}), zeros(DType::kE8M0, {4, 2}),
                               MXFP8BlockScaling{}, PerBlockMN{1, 32}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kU8, {64, 4}), zeros(DType::kU8, {2, 4}),
                               MXFP8BlockScaling{}, PerBlockMN{32, 1}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kU8, {4, 16}), zeros(DType::kE4M3, {4, 2}),
                               NVFP4BlockScaling{}, PerBlockMN{1, 16}, zeros(DType::kF32, {})));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kU8, {4, 16}), zeros(DType::kF16, {4, 1}),
                               INT4Scaling{.group_size = 32}, PerBlockK{32}));
  EXPECT_NO_THROW(ScaledTensor(zeros(DType::kU8, {4, 16}), zeros(DType::kBF16, {4}),
                               INT4Scaling{.group_size = -1, .scale_dtype = Int4ScaleDType::kBF16},
                               PerChannel{}));
}

TEST(ScaledTensor, PackedDataHasTwiceTheBytesAsElements) {
  const ScaledTensor nvfp4(zeros(DType::kU8, {2, 4, 16}), zeros(DType::kE4M3, {2, 4, 2}),
                           NVFP4BlockScaling{}, PerBlockMN{1, 16}, zeros(DType::kF32, {1}));
  EXPECT_EQ(nvfp4.shape(), (Shape{2, 4, 16}));
  EXPECT_EQ(nvfp4.logical_shape(), (Shape{2, 4, 32}));
  EXPECT_EQ(nvfp4.grid().cols, 32);
  EXPECT_EQ(nvfp4.grid().scale_shape, (Shape{2, 4, 2}));

  const ScaledTensor int4(
      zeros(DType::kU8, {4, 64}), zeros(DType::kF32, {4, 4}),
      INT4Scaling{.group_size = 32, .is_signed = false, .scale_dtype = Int4ScaleDType::kF32},
      PerBlockK{32}, std::nullopt, zeros(DType::kU8, {4, 4}));
  EXPECT_EQ(int4.logical_shape(), (Shape{4, 128}));
  ASSERT_TRUE(int4.zero_point().has_value());
  EXPECT_EQ(int4.zero_point()->shape(), (Shape{4, 4}));
}

// ---------------------------------------------------------------- recipe x layout table

Shape scale_shape_for(const Layout& layout, const Shape& logical_shape) {
  return scale_grid(layout, logical_shape).scale_shape;
}

// Builds the tensor with arrays of the right dtypes and shapes, so only the layout can fail.
void construct(const Recipe& recipe, const Layout& layout) {
  const Shape logical = {256, 256};
  const Shape scale_shape = scale_shape_for(layout, logical);
  const bool packed = std::holds_alternative<NVFP4BlockScaling>(recipe) ||
                      std::holds_alternative<INT4Scaling>(recipe);
  const Array data = zeros(DType::kU8, {256, packed ? 128 : 256});
  DType scale_dtype = DType::kF32;
  if (std::holds_alternative<MXFP8BlockScaling>(recipe)) scale_dtype = DType::kE8M0;
  if (std::holds_alternative<NVFP4BlockScaling>(recipe)) scale_dtype = DType::kE4M3;
  if (std::holds_alternative<INT4Scaling>(recipe)) scale_dtype = DType::kF16;
  std::optional<Array> global_scale;
  if (std::holds_alternative<NVFP4BlockScaling>(recipe)) global_scale = zeros(DType::kF32, {});
  ScaledTensor(data, zeros(scale_dtype, scale_shape), recipe, layout, global_scale);
}

TEST(ScaledTensor, EachRecipeAcceptsExactlyItsLayouts) {
  const std::vector<Layout> candidates = {
      PerTensor{},        PerChannel{},       PerBlockK{16},      PerBlockK{32},
      PerBlockK{128},     PerBlockMN{1, 16},  PerBlockMN{16, 1},  PerBlockMN{1, 32},
      PerBlockMN{32, 1},  PerBlockMN{1, 128}, PerBlockMN{128, 1}, PerBlockMN{128, 128},
      PerBlockMN{2, 128}, PerBlockMN{128, 2},
  };
  struct Row {
    Recipe recipe;
    std::vector<Layout> accepted;
  };
  const Row table[] = {
      {DelayedScaling{}, {PerTensor{}, PerChannel{}}},
      {Float8CurrentScaling{}, {PerTensor{}, PerChannel{}}},
      {Float8BlockScaling{}, {PerBlockK{128}, PerBlockMN{1, 128}, PerBlockMN{128, 1}}},
      {Float8BlockScaling{.block_m = 128}, {PerBlockMN{128, 128}}},
      {Float8BlockScaling{.block_m = 2}, {PerBlockMN{2, 128}, PerBlockMN{128, 2}}},
      {MXFP8BlockScaling{}, {PerBlockMN{1, 32}, PerBlockMN{32, 1}}},
      {NVFP4BlockScaling{}, {PerBlockMN{1, 16}, PerBlockMN{16, 1}}},
      {INT4Scaling{.group_size = 32}, {PerBlockK{32}, PerBlockMN{1, 32}, PerBlockMN{32, 1}}},
      {INT4Scaling{.group_size = -1}, {PerChannel{}}},
  };
  for (const Row& row : table) {
    for (const Layout& layout : candidates) {
      SCOPED_TRACE(recipe_repr(row.recipe) + " with " + layout_repr(layout));
      const bool expected =
          std::find(row.accepted.begin(), row.accepted.end(), layout) != row.accepted.end();
      if (expected) {
        EXPECT_NO_THROW(construct(row.recipe, layout));
      } else {
        const std::string message =
            error_message<ValueError>([&] { construct(row.recipe, layout); });
        EXPECT_TRUE(contains(message, "layout: "));
        EXPECT_TRUE(contains(message, "got " + layout_repr(layout)));
      }
    }
  }
}

// ---------------------------------------------------------------- invariants, one at a time

TEST(ScaledTensorInvariants, DataMustBeAtLeast1D) {
  const std::string message = error_message<ValueError>([] {
    ScaledTensor(zeros(DType::kE4M3, {}), zeros(DType::kF32, {}), Float8CurrentScaling{},
                 PerTensor{});
  });
  EXPECT_TRUE(contains(message, "data must be at least 1-D"));
  EXPECT_TRUE(contains(message, "()"));
}

TEST(ScaledTensorInvariants, RecipeAndLayoutMustBeValid) {
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         ScaledTensor(zeros(DType::kE4M3, {4, 64}), zeros(DType::kE8M0, {4, 4}),
                                      MXFP8BlockScaling{.block_size = 16}, PerBlockMN{1, 16});
                       }),
                       "MXFP8BlockScaling.block_size must be 32"));
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         ScaledTensor(zeros(DType::kE4M3, {4, 64}), zeros(DType::kF32, {4, 1}),
                                      Float8BlockScaling{}, PerBlockK{0});
                       }),
                       "PerBlockK.block_size must be in [1, 1048576], got 0"));
}

TEST(ScaledTensorInvariants, LayoutMustFitTheRecipe) {
  const std::string message = error_message<ValueError>([] {
    ScaledTensor(zeros(DType::kE4M3, {4, 256}), zeros(DType::kF32, {4, 2}), Float8CurrentScaling{},
                 PerBlockK{128});
  });
  EXPECT_EQ(message,
            "layout: Float8CurrentScaling(fp8_format='E4M3', power_2_scale=False) is laid out as "
            "PerTensor() or PerChannel(), got PerBlockK(block_size=128)");
}

TEST(ScaledTensorInvariants, DataDtypeMustMatchTheRecipe) {
  struct Case {
    Recipe recipe;
    DType data_dtype;
    const char* expected;
  };
  const Case cases[] = {
      {Float8CurrentScaling{}, DType::kE5M2, "float8_e4m3fn or uint8"},
      {Float8CurrentScaling{.fp8_format = Fp8Format::kE5M2}, DType::kE4M3, "float8_e5m2 or uint8"},
      {Float8CurrentScaling{}, DType::kF32, "float8_e4m3fn or uint8"},
      {Float8CurrentScaling{}, DType::kI8, "float8_e4m3fn or uint8"},
  };
  for (const Case& c : cases) {
    const std::string message = error_message<TypeError>([&] {
      ScaledTensor(zeros(c.data_dtype, {4, 8}), zeros(DType::kF32, {}), c.recipe, PerTensor{});
    });
    EXPECT_TRUE(contains(message, "data: "));
    EXPECT_TRUE(contains(message, c.expected));
    EXPECT_TRUE(contains(message, "got " + std::string(dtype_name(c.data_dtype))));
  }
  // Packed 4-bit data is bytes, never a float8 dtype.
  EXPECT_TRUE(contains(error_message<TypeError>([] {
                         ScaledTensor(zeros(DType::kE4M3, {4, 16}), zeros(DType::kF16, {4, 1}),
                                      INT4Scaling{.group_size = 32}, PerBlockK{32});
                       }),
                       "data: INT4Scaling(group_size=32, signed=True, scale_dtype='fp16') needs "
                       "dtype uint8, got float8_e4m3fn"));
}

TEST(ScaledTensorInvariants, ScaleDtypeMustMatchTheRecipe) {
  struct Case {
    Recipe recipe;
    Layout layout;
    Shape data_shape;
    Shape scale_shape;
    DType data_dtype;
    DType scale_dtype;
    const char* expected;
  };
  const Case cases[] = {
      {Float8CurrentScaling{}, PerTensor{}, {4, 8}, {}, DType::kE4M3, DType::kF16, "float32"},
      {DelayedScaling{}, PerTensor{}, {4, 8}, {}, DType::kE4M3, DType::kF64, "float32"},
      {Float8BlockScaling{},
       PerBlockK{128},
       {4, 128},
       {4, 1},
       DType::kE4M3,
       DType::kE8M0,
       "float32"},
      {MXFP8BlockScaling{},
       PerBlockMN{1, 32},
       {4, 32},
       {4, 1},
       DType::kE4M3,
       DType::kF32,
       "float8_e8m0fnu or uint8"},
      {NVFP4BlockScaling{},
       PerBlockMN{1, 16},
       {4, 8},
       {4, 1},
       DType::kU8,
       DType::kE8M0,
       "float8_e4m3fn or uint8"},
      {INT4Scaling{.group_size = 32},
       PerBlockK{32},
       {4, 16},
       {4, 1},
       DType::kU8,
       DType::kBF16,
       "float16"},
      {INT4Scaling{.group_size = 32, .scale_dtype = Int4ScaleDType::kF32},
       PerBlockK{32},
       {4, 16},
       {4, 1},
       DType::kU8,
       DType::kF16,
       "float32"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(recipe_repr(c.recipe));
    std::optional<Array> global_scale;
    if (std::holds_alternative<NVFP4BlockScaling>(c.recipe)) global_scale = zeros(DType::kF32, {});
    const std::string message = error_message<TypeError>([&] {
      ScaledTensor(zeros(c.data_dtype, c.data_shape), zeros(c.scale_dtype, c.scale_shape), c.recipe,
                   c.layout, global_scale);
    });
    EXPECT_TRUE(contains(message, "scale: "));
    EXPECT_TRUE(contains(message, std::string("needs dtype ") + c.expected));
    EXPECT_TRUE(contains(message, "got " + std::string(dtype_name(c.scale_dtype))));
  }
}

TEST(ScaledTensorInvariants, ScaleShapeIsCheckedOverTheLogicalShape) {
  // 16 bytes of NVFP4 are 32 elements, two blocks per row: (4, 2). Read over the byte shape
  // the scale would wrongly be (4, 1).
  const std::string message = error_message<ValueError>([] {
    ScaledTensor(zeros(DType::kU8, {4, 16}), zeros(DType::kE4M3, {4, 1}), NVFP4BlockScaling{},
                 PerBlockMN{1, 16}, zeros(DType::kF32, {}));
  });
  EXPECT_EQ(message,
            "PerBlockMN(block_m=1, block_n=16): scale shape must be (4, 2) for data of shape "
            "(4, 32), got (4, 1)");
}

TEST(ScaledTensorInvariants, GlobalScaleIsNvfp4sAndOneFp32) {
  const auto nvfp4 = [](std::optional<Array> global_scale) {
    ScaledTensor(zeros(DType::kU8, {4, 8}), zeros(DType::kE4M3, {4, 1}), NVFP4BlockScaling{},
                 PerBlockMN{1, 16}, std::move(global_scale));
  };
  EXPECT_TRUE(contains(error_message<ValueError>([&] { nvfp4(std::nullopt); }),
                       "global_scale: NVFP4BlockScaling("));
  EXPECT_TRUE(contains(error_message<ValueError>([&] { nvfp4(std::nullopt); }), "got none"));
  EXPECT_TRUE(
      contains(error_message<TypeError>([&] { nvfp4(zeros(DType::kF16, {})); }), "global_scale: "));
  EXPECT_TRUE(contains(error_message<ValueError>([&] { nvfp4(zeros(DType::kF32, {2})); }),
                       "global_scale: must hold exactly one element, got shape (2,)"));
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         ScaledTensor(zeros(DType::kE4M3, {4, 8}), zeros(DType::kF32, {}),
                                      Float8CurrentScaling{}, PerTensor{}, zeros(DType::kF32, {}));
                       }),
                       "has no global_scale (it is NVFP4's alone), got one"));
}

TEST(ScaledTensorInvariants, ZeroPointIsUnsignedInt4sAndShapedLikeTheScale) {
  const INT4Scaling asymmetric{.group_size = 32, .is_signed = false};
  const auto int4 = [](const INT4Scaling& recipe, std::optional<Array> zero_point) {
    ScaledTensor(zeros(DType::kU8, {4, 32}), zeros(DType::kF16, {4, 2}), recipe, PerBlockK{32},
                 std::nullopt, std::move(zero_point));
  };
  EXPECT_NO_THROW(int4(asymmetric, zeros(DType::kU8, {4, 2})));
  EXPECT_TRUE(
      contains(error_message<ValueError>([&] { int4(asymmetric, std::nullopt); }), "zero_point: "));
  EXPECT_TRUE(contains(error_message<ValueError>([&] { int4(asymmetric, std::nullopt); }),
                       "needs a uint8 zero_point, got none"));
  EXPECT_TRUE(contains(error_message<TypeError>([&] {
                         int4(asymmetric, zeros(DType::kI8, {4, 2}));
                       }),
                       "needs dtype uint8, got int8"));
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         int4(asymmetric, zeros(DType::kU8, {4, 1}));
                       }),
                       "zero_point: must have the scale's shape (4, 2), got (4, 1)"));
  EXPECT_TRUE(contains(error_message<ValueError>([&] {
                         int4(INT4Scaling{.group_size = 32}, zeros(DType::kU8, {4, 2}));
                       }),
                       "has no zero point (only unsigned INT4 does), got one"));
}

TEST(ScaledTensorInvariants, EveryArrayIsOnTheDataDevice) {
  const Array data = zeros(DType::kU8, {4, 32});
  const Array scale = zeros(DType::kF16, {4, 2});
  const Array zero_point = zeros(DType::kU8, {4, 2});
  const INT4Scaling asymmetric{.group_size = 32, .is_signed = false};
  EXPECT_TRUE(contains(error_message<DeviceError>([&] {
                         ScaledTensor(data, on_cuda(scale), asymmetric, PerBlockK{32}, std::nullopt,
                                      zero_point);
                       }),
                       "scale is on cuda:0 but data is on cpu"));
  EXPECT_TRUE(contains(error_message<DeviceError>([&] {
                         ScaledTensor(on_cuda(data), scale, asymmetric, PerBlockK{32}, std::nullopt,
                                      zero_point);
                       }),
                       "scale is on cpu but data is on cuda:0"));
  EXPECT_TRUE(contains(error_message<DeviceError>([&] {
                         ScaledTensor(data, scale, asymmetric, PerBlockK{32}, std::nullopt,
                                      on_cuda(zero_point));
                       }),
                       "zero_point is on cuda:0"));
  EXPECT_TRUE(contains(error_message<DeviceError>([] {
                         ScaledTensor(zeros(DType::kU8, {4, 8}), zeros(DType::kE4M3, {4, 1}),
                                      NVFP4BlockScaling{}, PerBlockMN{1, 16},
                                      on_cuda(zeros(DType::kF32, {})));
                       }),
                       "global_scale is on cuda:0"));
  // All on one GPU is fine.
  EXPECT_NO_THROW(ScaledTensor(on_cuda(data), on_cuda(scale), asymmetric, PerBlockK{32},
                               std::nullopt, on_cuda(zero_point)));
}

}  // namespace
}  // namespace breccia
