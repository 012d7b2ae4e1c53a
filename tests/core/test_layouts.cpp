#include "breccia/layouts.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "breccia/error.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

using ::breccia::test_support::contains;
using ::breccia::test_support::error_message;

struct LayoutHash {
  std::size_t operator()(const Layout& layout) const { return layout_hash(layout); }
};

// ---------------------------------------------------------------- values

TEST(Layouts, NamesAndRepr) {
  EXPECT_EQ(layout_name(PerTensor{}), "PerTensor");
  EXPECT_EQ(layout_name(PerBlockK{}), "PerBlockK");
  EXPECT_EQ(layout_name(PerChannel{}), "PerChannel");
  EXPECT_EQ(layout_name(PerBlockMN{}), "PerBlockMN");
  EXPECT_EQ(layout_repr(PerTensor{}), "PerTensor()");
  EXPECT_EQ(layout_repr(PerBlockK{}), "PerBlockK(block_size=128)");
  EXPECT_EQ(layout_repr(PerChannel{}), "PerChannel()");
  EXPECT_EQ(layout_repr(PerBlockMN{}), "PerBlockMN(block_m=1, block_n=32)");
  EXPECT_EQ(layout_repr(PerBlockMN{128, 64}), "PerBlockMN(block_m=128, block_n=64)");
}

TEST(Layouts, ValidateRejectsBlocksBelowOne) {
  EXPECT_NO_THROW(validate(PerBlockK{1}));
  EXPECT_NO_THROW(validate(PerBlockMN{1, 1}));
  EXPECT_TRUE(contains(error_message<ValueError>([] { validate(PerBlockK{0}); }),
                       "PerBlockK.block_size must be in [1, 1048576], got 0"));
  EXPECT_TRUE(contains(error_message<ValueError>([] { validate(PerBlockMN{0, 32}); }),
                       "PerBlockMN.block_m must be in [1, 1048576], got 0"));
  EXPECT_TRUE(contains(error_message<ValueError>([] { validate(PerBlockMN{1, -32}); }),
                       "PerBlockMN.block_n must be in [1, 1048576], got -32"));
}

TEST(LayoutJson, MatchesTheDocumentedFormAndRoundTrips) {
  EXPECT_EQ(layout_to_json(PerBlockMN{}), R"({"layout":"PerBlockMN","block_m":1,"block_n":32})");
  EXPECT_EQ(layout_to_json(PerTensor{}), R"({"layout":"PerTensor"})");
  EXPECT_EQ(layout_to_json(PerBlockK{64}), R"({"layout":"PerBlockK","block_size":64})");
  const std::vector<Layout> layouts = {PerTensor{},      PerBlockK{},  PerBlockK{16},
                                       PerChannel{},     PerBlockMN{}, PerBlockMN{128, 128},
                                       PerBlockMN{32, 1}};
  for (const Layout& layout : layouts) {
    EXPECT_EQ(layout_from_json(layout_to_json(layout)), layout) << layout_repr(layout);
  }
}

TEST(LayoutJson, MissingFieldsTakeTheirDefaults) {
  EXPECT_EQ(layout_from_json(R"({"layout":"PerBlockK"})"), Layout(PerBlockK{}));
  EXPECT_EQ(layout_from_json(R"({"block_n":16,"layout":"PerBlockMN"})"), Layout(PerBlockMN{1, 16}));
}

TEST(LayoutJson, RejectsMalformedInput) {
  struct Case {
    const char* json;
    const char* says;
  };
  const Case cases[] = {
      {R"({"layout":"PerTensor")", "JSON text: expected JSON, got a parse error"},
      {R"("PerTensor")", "expected a JSON object, got string"},
      {R"({"block_size":4})", "missing the key \"layout\""},
      {R"({"layout":null})", "field 'layout' must be a JSON string, got null"},
      {R"({"layout":"PerRow"})", "unknown layout 'PerRow'"},
      {R"({"layout":"PerTensor","block_size":4})", "unknown field 'block_size' for PerTensor"},
      {R"({"layout":"PerBlockMN","block_k":4})", "unknown field 'block_k' for PerBlockMN"},
      {R"({"layout":"PerBlockK","block_size":"32"})", "field 'block_size' must be a JSON integer"},
      {R"({"layout":"PerBlockK","block_size":32.5})", "field 'block_size' must be a JSON integer"},
  };
  for (const Case& c : cases) {
    const std::string message = error_message<ValueError>([&] { layout_from_json(c.json); });
    EXPECT_TRUE(contains(message, "layout_from_json")) << c.json;
    EXPECT_TRUE(contains(message, c.says)) << c.json;
  }
  // Well-formed JSON with a forbidden value reports the field as a constructor does.
  const std::string message =
      error_message<ValueError>([] { layout_from_json(R"({"layout":"PerBlockMN","block_m":0})"); });
  EXPECT_TRUE(message.starts_with("PerBlockMN.block_m must be in [1, 1048576], got 0")) << message;
}

TEST(LayoutHash, ConsistentWithEquality) {
  const std::vector<Layout> distinct = {PerTensor{},       PerChannel{},        PerBlockK{32},
                                        PerBlockK{128},    PerBlockMN{1, 32},   PerBlockMN{32, 1},
                                        PerBlockMN{1, 16}, PerBlockMN{128, 128}};
  for (std::size_t i = 0; i < distinct.size(); ++i) {
    for (std::size_t j = 0; j < distinct.size(); ++j) {
      EXPECT_EQ(distinct[i] == distinct[j], i == j) << i << " vs " << j;
    }
    EXPECT_EQ(layout_hash(layout_from_json(layout_to_json(distinct[i]))), layout_hash(distinct[i]));
  }
  std::unordered_set<Layout, LayoutHash> set(distinct.begin(), distinct.end());
  set.insert(distinct.begin(), distinct.end());
  EXPECT_EQ(set.size(), distinct.size());
}

// ---------------------------------------------------------------- scale_grid

struct GridCase {
  Layout layout;
  Shape logical_shape;
  std::int64_t block_rows, block_cols, batch, rows, cols;
  Shape scale_shape;
};

TEST(ScaleGrid, GeometryOfEachLayout) {
  const GridCase cases[] = {
      // PerBlockK: 1 x b blocks along the last axis, ceil for a ragged tail.
      {PerBlockK{32}, {4, 96}, 1, 32, 1, 4, 96, {4, 3}},
      {PerBlockK{32}, {4, 100}, 1, 32, 1, 4, 100, {4, 4}},
      {PerBlockK{32}, {2, 3, 64}, 1, 32, 2, 3, 64, {2, 3, 2}},
      {PerBlockK{32}, {100}, 1, 32, 1, 1, 100, {4}},  // 1-D: one row, no row dim in the scale
      // PerChannel: one block per row.
      {PerChannel{}, {5, 7}, 1, 7, 1, 5, 7, {5, 1}},
      {PerChannel{}, {2, 5, 7}, 1, 7, 2, 5, 7, {2, 5, 1}},
      {PerChannel{}, {7}, 1, 7, 1, 1, 7, {1}},
      // PerBlockMN: tiles over the last two axes.
      {PerBlockMN{128, 128}, {300, 256}, 128, 128, 1, 300, 256, {3, 2}},
      {PerBlockMN{32, 1}, {64, 8}, 32, 1, 1, 64, 8, {2, 8}},
      {PerBlockMN{1, 32}, {6, 2, 4, 64}, 1, 32, 12, 4, 64, {6, 2, 4, 2}},
      {PerBlockMN{1, 32}, {64}, 1, 32, 1, 1, 64, {2}},
  };
  for (const GridCase& c : cases) {
    SCOPED_TRACE(layout_repr(c.layout) + " over " + shape_str(c.logical_shape));
    const ScaleGrid grid = scale_grid(c.layout, c.logical_shape);
    EXPECT_FALSE(grid.per_tensor);
    EXPECT_EQ(grid.block_rows, c.block_rows);
    EXPECT_EQ(grid.block_cols, c.block_cols);
    EXPECT_EQ(grid.batch, c.batch);
    EXPECT_EQ(grid.rows, c.rows);
    EXPECT_EQ(grid.cols, c.cols);
    EXPECT_EQ(grid.scale_shape, c.scale_shape);
  }
}

TEST(ScaleGrid, PerTensorIsOneScale) {
  const ScaleGrid grid = scale_grid(PerTensor{}, Shape{2, 3, 4});
  EXPECT_TRUE(grid.per_tensor);
  EXPECT_EQ(grid.scale_shape, Shape{});
  EXPECT_EQ(grid.batch, 2);
  EXPECT_EQ(grid.rows, 3);
  EXPECT_EQ(grid.cols, 4);
  EXPECT_EQ(grid.scale_index(1, 2, 3), 0);
}

TEST(ScaleGrid, RejectsScalarsAndInvalidLayouts) {
  EXPECT_TRUE(contains(error_message<ValueError>([] { scale_grid(PerBlockK{32}, Shape{}); }),
                       "at least 1-D"));
  EXPECT_TRUE(contains(error_message<ValueError>([] {
                         scale_grid(PerBlockK{0}, Shape{4, 8});
                       }),
                       "PerBlockK.block_size"));
}

// Property: over random shapes, every element's scale index lands inside the scale tensor and
// each scale covers exactly the elements of its (clipped) block.
TEST(ScaleGrid, EveryScaleCoversExactlyItsBlock) {
  std::mt19937 random(20240601);
  std::uniform_int_distribution<std::int64_t> extent(1, 40);
  std::uniform_int_distribution<std::int64_t> block(1, 9);
  for (int trial = 0; trial < 200; ++trial) {
    const Shape shape = {extent(random) % 3 + 1, extent(random), extent(random)};
    const std::int64_t bm = block(random);
    const std::int64_t bn = block(random);
    for (const Layout& layout :
         {Layout(PerBlockK{bn}), Layout(PerChannel{}), Layout(PerBlockMN{bm, bn})}) {
      const ScaleGrid grid = scale_grid(layout, shape);
      std::int64_t scale_count = 1;
      for (std::int64_t dim : grid.scale_shape) scale_count *= dim;
      std::vector<std::int64_t> hits(static_cast<std::size_t>(scale_count), 0);
      for (std::int64_t b = 0; b < grid.batch; ++b) {
        for (std::int64_t r = 0; r < grid.rows; ++r) {
          for (std::int64_t c = 0; c < grid.cols; ++c) {
            const std::int64_t index = grid.scale_index(b, r, c);
            ASSERT_GE(index, 0);
            ASSERT_LT(index, scale_count) << layout_repr(layout) << shape_str(shape);
            ++hits[static_cast<std::size_t>(index)];
          }
        }
      }
      for (std::int64_t i = 0; i < scale_count; ++i) {
        const std::int64_t tile_row = (i / grid.scale_cols) % grid.scale_rows;
        const std::int64_t tile_col = i % grid.scale_cols;
        const std::int64_t height =
            std::min(grid.block_rows, grid.rows - tile_row * grid.block_rows);
        const std::int64_t width =
            std::min(grid.block_cols, grid.cols - tile_col * grid.block_cols);
        ASSERT_EQ(hits[static_cast<std::size_t>(i)], height * width)
            << layout_repr(layout) << shape_str(shape) << " scale " << i;
      }
    }
  }
}

// ---------------------------------------------------------------- validate_layout

struct ScaleShapes {
  Layout layout;
  Shape data_shape;
  std::vector<Shape> accepted;
  std::vector<Shape> rejected;
};

TEST(ValidateLayout, AcceptsExactlyTheDocumentedScaleShapes) {
  const ScaleShapes cases[] = {
      {PerTensor{}, {4, 8}, {{}, {1}}, {{1, 1}, {2}, {4}, {0}}},
      {PerTensor{}, {5}, {{}, {1}}, {{5}, {1, 1}}},
      {PerBlockK{32}, {4, 64}, {{4, 2}}, {{4}, {2}, {2, 4}, {8}, {4, 2, 1}, {}}},
      {PerBlockK{32}, {64}, {{2}}, {{1, 2}, {}}},
      {PerChannel{}, {4, 8}, {{4}, {4, 1}}, {{1, 4}, {4, 8}, {8}, {}}},
      {PerChannel{}, {2, 4, 8}, {{2, 4, 1}}, {{4}, {4, 1}, {8, 1}, {2, 4}}},
      {PerChannel{}, {8}, {{1}}, {{8}, {}}},
      {PerBlockMN{1, 32}, {4, 64}, {{4, 2}}, {{2, 4}, {4, 2, 1}, {8}}},
      {PerBlockMN{32, 1}, {64, 4}, {{2, 4}}, {{4, 2}, {64, 4}}},
      {PerBlockMN{128, 128}, {3, 300, 256}, {{3, 3, 2}}, {{3, 2}, {3, 2, 2}, {9, 2}}},
  };
  for (const ScaleShapes& c : cases) {
    SCOPED_TRACE(layout_repr(c.layout) + " over " + shape_str(c.data_shape));
    for (const Shape& shape : c.accepted) {
      EXPECT_NO_THROW(validate_layout(c.layout, c.data_shape, Array::zeros(DType::kF32, shape)))
          << shape_str(shape);
    }
    for (const Shape& shape : c.rejected) {
      const std::string message = error_message<ValueError>(
          [&] { validate_layout(c.layout, c.data_shape, Array::zeros(DType::kF32, shape)); });
      EXPECT_TRUE(contains(message, layout_repr(c.layout)));
      EXPECT_TRUE(contains(message, "for data of shape " + shape_str(c.data_shape)));
      EXPECT_TRUE(contains(message, "got " + shape_str(shape)));
    }
  }
}

TEST(ValidateLayout, MessageNamesTheExpectedAndActualShapes) {
  EXPECT_EQ(error_message<ValueError>([] {
              validate_layout(PerBlockMN{1, 32}, Shape{4, 64}, Array::zeros(DType::kF32, {2, 4}));
            }),
            "PerBlockMN(block_m=1, block_n=32): scale shape must be (4, 2) for data of shape "
            "(4, 64), got (2, 4)");
  EXPECT_EQ(error_message<ValueError>([] {
              validate_layout(PerChannel{}, Shape{4, 8}, Array::zeros(DType::kF32, {1, 4}));
            }),
            "PerChannel(): scale shape must be (4, 1) or (4,) for data of shape (4, 8), got "
            "(1, 4)");
  EXPECT_EQ(error_message<ValueError>([] {
              validate_layout(PerTensor{}, Shape{4, 8}, Array::zeros(DType::kF32, {2}));
            }),
            "PerTensor(): scale shape must be () or (1,) for data of shape (4, 8), got (2,)");
}

}  // namespace
}  // namespace breccia
