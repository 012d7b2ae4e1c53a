#include "breccia/array.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "breccia/error.hpp"
#include "test_support.hpp"

namespace breccia {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// Calls visit(index) for every index of `shape` in row-major order.
template <class Visit>
void for_each_index(const Shape& shape, Visit visit) {
  for (std::int64_t dim : shape) {
    if (dim == 0) return;
  }
  std::vector<std::int64_t> index(shape.size(), 0);
  while (true) {
    visit(index);
    int axis = static_cast<int>(shape.size()) - 1;
    for (; axis >= 0; --axis) {
      if (++index[axis] < shape[axis]) break;
      index[axis] = 0;
    }
    if (axis < 0) return;
  }
}

template <class T>
std::vector<T> iota_buffer(std::size_t size) {
  std::vector<T> buffer(size);
  std::iota(buffer.begin(), buffer.end(), T{0});
  return buffer;
}

// The copy's element at row-major position `flat` must be the source element at
// index·strides (plus the byte offset) — checked for every element.
void expect_contiguous_copy_matches(const Array& view) {
  const Array copy = view.contiguous();
  ASSERT_TRUE(copy.is_contiguous());
  EXPECT_EQ(copy.shape(), view.shape());
  if (view.is_contiguous()) {
    EXPECT_EQ(copy.data(), view.data()) << "a contiguous array is returned as is";
  } else {
    EXPECT_EQ(copy.strides(), contiguous_strides(view.shape()));
  }
  EXPECT_EQ(copy.dtype(), view.dtype());
  const int bytes = itemsize(view.dtype());
  const auto* source = static_cast<const std::byte*>(view.data());
  const auto* copied = static_cast<const std::byte*>(copy.data());
  std::int64_t flat = 0;
  for_each_index(view.shape(), [&](const std::vector<std::int64_t>& index) {
    std::int64_t offset = 0;
    for (std::size_t axis = 0; axis < index.size(); ++axis) {
      offset += index[axis] * view.strides()[axis];
    }
    EXPECT_EQ(std::memcmp(copied + flat * bytes, source + offset * bytes, bytes), 0)
        << "element " << flat << " of " << view.str();
    ++flat;
  });
  EXPECT_EQ(flat, view.numel());
}

TEST(ShapeStr, SpellsPythonTuples) {
  EXPECT_EQ(shape_str(Shape{}), "()");
  EXPECT_EQ(shape_str(Shape{4}), "(4,)");
  EXPECT_EQ(shape_str(Shape{4, 8}), "(4, 8)");
  EXPECT_EQ(shape_str(Shape{2, 0, 3}), "(2, 0, 3)");
}

TEST(CheckedNumel, MultipliesDims) {
  EXPECT_EQ(checked_numel(Shape{}), 1);
  EXPECT_EQ(checked_numel(Shape{7}), 7);
  EXPECT_EQ(checked_numel(Shape{2, 3, 4}), 24);
  EXPECT_EQ(checked_numel(Shape{5, 0, 3}), 0);
}

TEST(CheckedNumel, HandlesCountsBeyondInt32) {
  EXPECT_EQ(checked_numel(Shape{65536, 65536, 2}), std::int64_t{1} << 33);
  EXPECT_EQ(checked_numel(Shape{std::int64_t{1} << 31, std::int64_t{1} << 31}),
            std::int64_t{1} << 62);
  EXPECT_EQ(checked_numel(Shape{kInt64Max}), kInt64Max);
  EXPECT_EQ(checked_numel(Shape{kInt64Max, 1}), kInt64Max);
  EXPECT_EQ(checked_numel(Shape{kInt64Max, 0}), 0);
}

// NumPy refuses a shape whose non-zero dims overflow even when a zero dim empties it, and more
// than 64 dims; so does the core, so that every Array can cross to Python.
TEST(CheckedNumel, AbsurdShapesAreRefusedEvenWhenEmpty) {
  EXPECT_THROW(checked_numel(Shape{kInt64Max, kInt64Max, 0}), ValueError);
  EXPECT_THROW(checked_numel(Shape{0, std::int64_t{1} << 32, std::int64_t{1} << 32}), ValueError);
  EXPECT_EQ(checked_numel(Shape(kMaxDims, 1)), 1);
  EXPECT_TRUE(test_support::contains(test_support::error_message<ValueError>(
                                         [] { checked_numel(Shape(kMaxDims + 1, 1), "data"); }),
                                     "data: expected at most 64 dimensions, got 65"));
}

TEST(CheckedNumel, RejectsOverflowAndNegativeDimsNamingTheArgument) {
  for (const Shape& shape : {Shape{std::int64_t{1} << 32, std::int64_t{1} << 32},
                             Shape{std::int64_t{1} << 31, std::int64_t{1} << 31, 2},
                             Shape{kInt64Max, 2}, Shape{3, -1}, Shape{-4}}) {
    try {
      checked_numel(shape, "weights");
      FAIL() << "accepted " << shape_str(shape);
    } catch (const ValueError& error) {
      const std::string message = error.what();
      EXPECT_EQ(message.rfind("weights", 0), 0u) << message;
      EXPECT_NE(message.find(shape_str(shape)), std::string::npos) << message;
    }
  }
}

TEST(ContiguousStrides, AreRowMajorProductsOfLaterDims) {
  EXPECT_EQ(contiguous_strides(Shape{}), Strides{});
  EXPECT_EQ(contiguous_strides(Shape{2, 3, 4}), (Strides{12, 4, 1}));
  const Shape huge{3, 65536, 65536, 4};  // 2^34 * 3 elements
  EXPECT_EQ(contiguous_strides(huge),
            (Strides{std::int64_t{1} << 34, std::int64_t{1} << 18, 4, 1}));
  std::mt19937 random(7);
  for (int trial = 0; trial < 200; ++trial) {
    Shape shape(1 + random() % 5);
    for (auto& dim : shape) dim = 1 + random() % 9;
    const Strides strides = contiguous_strides(shape);
    ASSERT_EQ(strides.back(), 1);
    for (std::size_t axis = 0; axis + 1 < shape.size(); ++axis) {
      EXPECT_EQ(strides[axis], strides[axis + 1] * shape[axis + 1]) << shape_str(shape);
    }
  }
}

TEST(ArrayBorrow, EmptyStridesMeanRowMajor) {
  std::vector<float> buffer(24);
  const Array array =
      Array::borrow(buffer.data(), DType::kF32, {2, 3, 4}, {}, Device::cpu(), nullptr);
  EXPECT_TRUE(array.defined());
  EXPECT_EQ(array.strides(), (Strides{12, 4, 1}));
  EXPECT_EQ(array.numel(), 24);
  EXPECT_EQ(array.nbytes(), 96);
  EXPECT_EQ(array.data(), buffer.data());
  EXPECT_EQ(array.base(), buffer.data());
  EXPECT_TRUE(array.is_contiguous());
  EXPECT_FALSE(array.read_only());
}

TEST(ArrayBorrow, ByteOffsetLocatesElementZero) {
  auto buffer = iota_buffer<std::int32_t>(16);
  const Array array =
      Array::borrow(buffer.data(), DType::kI32, {3}, {}, Device::cpu(), nullptr, 5 * 4);
  EXPECT_EQ(array.base(), buffer.data());
  EXPECT_EQ(array.data_as<std::int32_t>(), buffer.data() + 5);
  EXPECT_EQ(array.data_as<std::int32_t>()[2], 7);
}

TEST(ArrayBorrow, OwnerKeepsMemoryAliveAcrossCopies) {
  int releases = 0;
  auto* buffer = new std::int64_t[4]{};
  {
    std::shared_ptr<void> owner(buffer, [&releases](void* memory) {
      ++releases;
      delete[] static_cast<std::int64_t*>(memory);
    });
    Array array = Array::borrow(buffer, DType::kI64, {4}, {}, Device::cpu(), std::move(owner));
    const Array view = array.reshaped({2, 2});
    array = Array();
    EXPECT_EQ(releases, 0);
    EXPECT_EQ(view.owner().use_count(), 1);
  }
  EXPECT_EQ(releases, 1);
}

TEST(ArrayBorrow, RejectsInvalidGeometry) {
  std::vector<std::byte> buffer(64);
  void* data = buffer.data();
  const Device cpu = Device::cpu();
  EXPECT_THROW(Array::borrow(data, DType::kU8, {2, -3}, {}, cpu, nullptr), ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kU8, {2, 3}, {3}, cpu, nullptr), ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kU8, {6}, {1, 1}, cpu, nullptr), ValueError);
  EXPECT_THROW(Array::borrow(nullptr, DType::kU8, {6}, {}, cpu, nullptr), ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kU8, {6}, {}, cpu, nullptr, -1), ValueError);
  // Element count overflow, byte count overflow (2^61 float64 = 2^64 bytes), and strides
  // whose reach overflows int64.
  EXPECT_THROW(Array::borrow(data, DType::kU8, {std::int64_t{1} << 32, std::int64_t{1} << 32},
                             {}, cpu, nullptr),
               ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kF64, {std::int64_t{1} << 61}, {}, cpu, nullptr),
               ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kU8, {std::int64_t{1} << 40},
                             {std::int64_t{1} << 30}, cpu, nullptr),
               ValueError);
  EXPECT_THROW(Array::borrow(data, DType::kF32, {2, std::int64_t{1} << 40},
                             {-(std::int64_t{1} << 62), 1}, cpu, nullptr),
               ValueError);
  // The largest addressable view is accepted; one more byte of offset is not.
  EXPECT_EQ(Array::borrow(data, DType::kU8, {kInt64Max}, {}, cpu, nullptr).nbytes(), kInt64Max);
  EXPECT_THROW(Array::borrow(data, DType::kU8, {kInt64Max}, {}, cpu, nullptr, 1), ValueError);
  // Null data is fine when there is nothing to point at.
  EXPECT_TRUE(Array::borrow(nullptr, DType::kU8, {0, 5}, {}, cpu, nullptr).defined());
  // Found by the dlpack_import fuzzer: the stride of a size-1 axis never moves a cursor, but
  // copies scale it by the item size, which overflowed (UBSan) in contiguous().
  EXPECT_THROW(Array::borrow(data, DType::kF32, {1, 2}, {std::int64_t{1} << 62, 1}, cpu, nullptr),
               ValueError);
  EXPECT_EQ(Array::borrow(data, DType::kF32, {1, 2}, {std::int64_t{1} << 60, 1}, cpu, nullptr)
                .contiguous()
                .numel(),
            2);
  // And a size-1 innermost axis with such a stride: the copy used to step a pointer past it.
  EXPECT_EQ(Array::borrow(data, DType::kF32, {2, 1}, {1, std::int64_t{1} << 60}, cpu, nullptr)
                .contiguous()
                .numel(),
            2);
}

TEST(ArrayBorrow, ErrorsNameArgumentExpectationAndValue) {
  std::vector<std::byte> buffer(8);
  try {
    Array::borrow(buffer.data(), DType::kU8, {2, 4}, {1}, Device::cpu(), nullptr);
    FAIL();
  } catch (const ValueError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("strides"), std::string::npos) << message;
    EXPECT_NE(message.find("expected 2"), std::string::npos) << message;
    EXPECT_NE(message.find("got 1"), std::string::npos) << message;
  }
}

TEST(ArrayHugeShapes, ArithmeticBeyondInt32WithoutAllocating) {
  // A tiny buffer described as 3e9 bytes: only shape arithmetic runs, nothing is read.
  std::byte tiny[8]{};
  const std::int64_t count = 3'000'000'000;
  const Array flat = Array::borrow(tiny, DType::kU8, {count}, {}, Device::cpu(), nullptr);
  EXPECT_EQ(flat.numel(), count);
  EXPECT_EQ(flat.nbytes(), count);
  EXPECT_TRUE(flat.is_contiguous());
  const Array grid = flat.reshaped({3, 1'000'000'000});
  EXPECT_EQ(grid.strides(), (Strides{1'000'000'000, 1}));
  EXPECT_EQ(grid.dim(-1), 1'000'000'000);

  const Array wide = Array::borrow(tiny, DType::kF32, {65536, 65536, 2}, {}, Device::cpu(),
                                   nullptr);
  EXPECT_EQ(wide.numel(), std::int64_t{1} << 33);
  EXPECT_EQ(wide.nbytes(), std::int64_t{1} << 35);
  EXPECT_EQ(wide.strides(), (Strides{131072, 2, 1}));
}

TEST(ArrayHugeShapes, ZeroStrideBroadcastOfOneValue) {
  float value = 2.5f;
  const std::int64_t side = std::int64_t{1} << 20;
  const Array broadcast =
      Array::borrow(&value, DType::kF32, {side, side}, {0, 0}, Device::cpu(), nullptr);
  EXPECT_EQ(broadcast.numel(), std::int64_t{1} << 40);
  EXPECT_EQ(broadcast.nbytes(), std::int64_t{1} << 42);
  EXPECT_FALSE(broadcast.is_contiguous());
  // The far corner, reached through the strides, is the single stored value.
  const std::int64_t corner =
      (side - 1) * broadcast.strides()[0] + (side - 1) * broadcast.strides()[1];
  EXPECT_EQ(broadcast.data_as<float>()[corner], 2.5f);
}

TEST(ArrayEmpty, AllocatesAlignedContiguousCpuMemory) {
  for (DType dtype : {DType::kU8, DType::kBF16, DType::kF32, DType::kF64}) {
    for (const Shape& shape : {Shape{}, Shape{1}, Shape{3, 5}, Shape{2, 3, 7}, Shape{0, 4}}) {
      const Array array = Array::empty(dtype, shape);
      EXPECT_TRUE(array.defined());
      EXPECT_EQ(array.shape(), shape);
      EXPECT_EQ(array.strides(), contiguous_strides(shape));
      EXPECT_EQ(array.numel(), checked_numel(shape));
      EXPECT_EQ(array.nbytes(), checked_numel(shape) * itemsize(dtype));
      EXPECT_EQ(array.device(), Device::cpu());
      EXPECT_EQ(array.byte_offset(), 0);
      EXPECT_NE(array.owner(), nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(array.data()) % 64, 0u) << array.str();
    }
  }
}

TEST(ArrayEmpty, ZerosAreZero) {
  const Array array = Array::zeros(DType::kF64, {3, 17});
  const auto* bytes = static_cast<const unsigned char*>(array.data());
  for (std::int64_t i = 0; i < array.nbytes(); ++i) ASSERT_EQ(bytes[i], 0) << i;
}

// A stand-in for a framework's device allocator, backed by host memory.
class RecordingAllocator final : public Allocator {
 public:
  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    requests.push_back({bytes, device});
    if (return_null) return nullptr;
    return std::shared_ptr<void>(new std::byte[bytes], [](void* p) {
      delete[] static_cast<std::byte*>(p);
    });
  }
  struct Request {
    std::int64_t bytes;
    Device device;
  };
  std::vector<Request> requests;
  bool return_null = false;
};

TEST(ArrayEmpty, DeviceMemoryComesFromTheCallersAllocator) {
  RecordingAllocator allocator;
  const Array array = Array::empty(DType::kBF16, {4, 6}, Device::cuda(1), &allocator);
  ASSERT_EQ(allocator.requests.size(), 1u);
  EXPECT_EQ(allocator.requests[0].bytes, 48);
  EXPECT_EQ(allocator.requests[0].device, Device::cuda(1));
  EXPECT_EQ(array.device(), Device::cuda(1));
  EXPECT_EQ(array.str(), "Array(bfloat16, (4, 6), cuda:1)");

  EXPECT_THROW(Array::empty(DType::kF32, {4}, Device::cuda(0)), DeviceError);
  allocator.return_null = true;
  EXPECT_THROW(Array::empty(DType::kF32, {4}, Device::cuda(0), &allocator), ValueError);
  EXPECT_THROW(cpu_allocator().allocate(16, Device::cuda(0)), DeviceError);
  EXPECT_THROW(Array::empty(DType::kF32, {-1}), ValueError);
}

TEST(ArrayDim, CountsNegativeAxesFromTheEnd) {
  const Array array = Array::empty(DType::kU8, {2, 3, 5});
  EXPECT_EQ(array.ndim(), 3);
  for (int axis = 0; axis < 3; ++axis) {
    EXPECT_EQ(array.dim(axis), array.shape()[axis]);
    EXPECT_EQ(array.dim(axis - 3), array.shape()[axis]);
  }
  for (int bad : {3, 4, -4, -100}) {
    try {
      array.dim(bad);
      FAIL() << bad;
    } catch (const ValueError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("axis"), std::string::npos) << message;
      EXPECT_NE(message.find("got " + std::to_string(bad)), std::string::npos) << message;
      EXPECT_NE(message.find("(2, 3, 5)"), std::string::npos) << message;
    }
  }
  EXPECT_THROW(Array::empty(DType::kU8, {}).dim(0), ValueError);
}

TEST(ArrayContiguity, IgnoresStridesOfSizeOneDimsLikeNumpy) {
  std::vector<float> buffer(64);
  const auto view = [&](Shape shape, Strides strides) {
    return Array::borrow(buffer.data(), DType::kF32, std::move(shape), std::move(strides),
                         Device::cpu(), nullptr);
  };
  EXPECT_TRUE(view({3, 1, 4}, {4, 999, 1}).is_contiguous());
  EXPECT_TRUE(view({1, 4}, {-7, 1}).is_contiguous());
  EXPECT_TRUE(view({1}, {0}).is_contiguous());
  EXPECT_TRUE(view({}, {}).is_contiguous());
  EXPECT_TRUE(view({0, 4}, {5, 3}).is_contiguous());  // empty: nothing to lay out
  EXPECT_FALSE(view({4, 3}, {1, 4}).is_contiguous());
  EXPECT_FALSE(view({3, 4}, {8, 1}).is_contiguous());
  EXPECT_FALSE(view({4}, {-1}).is_contiguous());
  EXPECT_FALSE(view({2, 4}, {0, 1}).is_contiguous());
}

TEST(ArrayContiguous, TransposedView) {
  auto buffer = iota_buffer<std::int32_t>(15);  // a (3, 5) matrix
  const Array transposed =
      Array::borrow(buffer.data(), DType::kI32, {5, 3}, {1, 5}, Device::cpu(), nullptr);
  const Array copy = transposed.contiguous();
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(copy.data_as<std::int32_t>()[i * 3 + j], j * 5 + i);
  }
  expect_contiguous_copy_matches(transposed);
}

TEST(ArrayContiguous, SlicedWithSteps) {
  auto buffer = iota_buffer<std::int64_t>(10 * 12);  // a (10, 12) matrix; view [1:9:2, 2::3]
  const Array sliced = Array::borrow(buffer.data(), DType::kI64, {4, 4}, {24, 3}, Device::cpu(),
                                     nullptr, (1 * 12 + 2) * 8);
  const Array copy = sliced.contiguous();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(copy.data_as<std::int64_t>()[i * 4 + j], (1 + 2 * i) * 12 + (2 + 3 * j));
    }
  }
  expect_contiguous_copy_matches(sliced);
}

TEST(ArrayContiguous, NegativeStrides) {
  auto buffer = iota_buffer<std::uint8_t>(4 * 6);  // a (4, 6) matrix; view [::-1, ::-2]
  const Array flipped = Array::borrow(buffer.data(), DType::kU8, {4, 3}, {-6, -2}, Device::cpu(),
                                      nullptr, 3 * 6 + 5);
  const Array copy = flipped.contiguous();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(copy.data_as<std::uint8_t>()[i * 3 + j], (3 - i) * 6 + (5 - 2 * j));
    }
  }
  expect_contiguous_copy_matches(flipped);
}

TEST(ArrayContiguous, ZeroStrideBroadcast) {
  auto buffer = iota_buffer<std::uint16_t>(5);
  const Array rows =
      Array::borrow(buffer.data(), DType::kBF16, {3, 5}, {0, 1}, Device::cpu(), nullptr);
  const Array columns =
      Array::borrow(buffer.data(), DType::kF16, {5, 2, 3}, {1, 0, 0}, Device::cpu(), nullptr);
  const Array row_copy = rows.contiguous();
  const Array column_copy = columns.contiguous();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 5; ++j) EXPECT_EQ(row_copy.data_as<std::uint16_t>()[i * 5 + j], j);
  }
  for (int i = 0; i < 30; ++i) EXPECT_EQ(column_copy.data_as<std::uint16_t>()[i], i / 6);
  expect_contiguous_copy_matches(rows);
  expect_contiguous_copy_matches(columns);
}

TEST(ArrayContiguous, RandomStridedViewsOfEveryItemSize) {
  std::mt19937_64 random(2024);
  const DType dtypes[] = {DType::kE4M3, DType::kBF16, DType::kF32, DType::kI64};
  for (int trial = 0; trial < 400; ++trial) {
    const DType dtype = dtypes[trial % 4];
    const int bytes = itemsize(dtype);
    Shape shape(1 + random() % 4);
    Strides strides(shape.size());
    std::int64_t lowest = 0;
    std::int64_t highest = 0;
    for (std::size_t axis = 0; axis < shape.size(); ++axis) {
      shape[axis] = 1 + static_cast<std::int64_t>(random() % 5);
      strides[axis] = static_cast<std::int64_t>(random() % 15) - 7;
      const std::int64_t extent = strides[axis] * (shape[axis] - 1);
      (extent < 0 ? lowest : highest) += extent;
    }
    std::vector<std::uint8_t> buffer((highest - lowest + 1) * bytes + 16);
    for (auto& byte : buffer) byte = static_cast<std::uint8_t>(random());
    const Array view = Array::borrow(buffer.data(), dtype, shape, strides, Device::cpu(), nullptr,
                                     -lowest * bytes + 16);
    SCOPED_TRACE(shape_str(shape) + " strides " + shape_str(strides));
    expect_contiguous_copy_matches(view);
  }
}

TEST(ArrayContiguous, ContiguousArraysAreReturnedWithoutCopying) {
  const Array array = Array::empty(DType::kF32, {4, 8});
  EXPECT_EQ(array.contiguous().data(), array.data());
  std::vector<float> buffer(32);
  const Array odd_unit_stride =
      Array::borrow(buffer.data(), DType::kF32, {4, 1, 8}, {8, 3, 1}, Device::cpu(), nullptr);
  EXPECT_EQ(odd_unit_stride.contiguous().data(), buffer.data());
}

TEST(ArrayContiguous, NeverCopiesDeviceMemory) {
  std::vector<float> stand_in(32);
  const Array transposed =
      Array::borrow(stand_in.data(), DType::kF32, {8, 4}, {1, 8}, Device::cuda(0), nullptr);
  try {
    transposed.contiguous();
    FAIL();
  } catch (const DeviceError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("cuda:0"), std::string::npos) << message;
    EXPECT_NE(message.find("never copies"), std::string::npos) << message;
  }
  const Array row_major =
      Array::borrow(stand_in.data(), DType::kF32, {4, 8}, {}, Device::cuda(0), nullptr);
  EXPECT_EQ(row_major.contiguous().data(), stand_in.data());
}

TEST(ArrayReshaped, KeepsMemoryAndRequiresMatchingCount) {
  auto buffer = iota_buffer<float>(24);
  const Array array =
      Array::borrow(buffer.data(), DType::kF32, {4, 6}, {}, Device::cpu(), nullptr);
  const Array reshaped = array.reshaped({2, 3, 4});
  EXPECT_EQ(reshaped.data(), array.data());
  EXPECT_EQ(reshaped.strides(), (Strides{12, 4, 1}));
  EXPECT_EQ(array.reshaped({24}).shape(), (Shape{24}));
  EXPECT_THROW(array.reshaped({5, 5}), ValueError);
  EXPECT_THROW(array.reshaped({-4, -6}), ValueError);
  const Array transposed =
      Array::borrow(buffer.data(), DType::kF32, {6, 4}, {1, 6}, Device::cpu(), nullptr);
  EXPECT_THROW(transposed.reshaped({24}), ValueError);
  EXPECT_TRUE(array.marked_read_only().reshaped({24}).read_only());
}

TEST(ArrayViewedAs, ReinterpretsSameSizedElements) {
  const Array bytes = Array::zeros(DType::kU8, {2, 16});
  const Array float8 = bytes.viewed_as(DType::kE4M3);
  EXPECT_EQ(float8.dtype(), DType::kE4M3);
  EXPECT_EQ(float8.data(), bytes.data());
  EXPECT_EQ(float8.shape(), bytes.shape());
  EXPECT_EQ(Array::zeros(DType::kF16, {3}).viewed_as(DType::kBF16).dtype(), DType::kBF16);
  EXPECT_THROW(bytes.viewed_as(DType::kF32), TypeError);
  EXPECT_THROW(Array::zeros(DType::kF32, {3}).viewed_as(DType::kF64), TypeError);
}

TEST(ArrayStr, NamesDTypeShapeAndDevice) {
  EXPECT_EQ(Array::empty(DType::kF32, {4, 8}).str(), "Array(float32, (4, 8), cpu)");
  EXPECT_EQ(Array::empty(DType::kE8M0, {5}).str(), "Array(float8_e8m0fnu, (5,), cpu)");
  EXPECT_EQ(Array::empty(DType::kI64, {}).str(), "Array(int64, (), cpu)");
  EXPECT_EQ(Array().str(), "Array(undefined)");
}

TEST(ArrayDefined, DefaultIsUndefinedAndEmptyIsDefined) {
  EXPECT_FALSE(Array().defined());
  EXPECT_TRUE(Array::empty(DType::kU8, {0}).defined());
  EXPECT_TRUE(Array::empty(DType::kU8, {}).defined());
}

}  // namespace
}  // namespace breccia
