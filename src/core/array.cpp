#include "breccia/array.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "breccia/error.hpp"

namespace breccia {
namespace {

// Both return true when the exact result does not fit in int64.
bool multiply_overflows(std::int64_t a, std::int64_t b, std::int64_t& product) {
  return __builtin_mul_overflow(a, b, &product);
}

bool add_overflows(std::int64_t a, std::int64_t b, std::int64_t& sum) {
  return __builtin_add_overflow(a, b, &sum);
}

std::int64_t checked_nbytes(std::int64_t numel, DType dtype, std::span<const std::int64_t> shape) {
  std::int64_t bytes = 0;
  if (multiply_overflows(numel, itemsize(dtype), bytes)) {
    fail<ValueError>("shape: ", shape_str(shape), " of ", dtype_name(dtype),
                     " needs more bytes than int64 can count");
  }
  return bytes;
}

// Every byte address the view can reach, relative to `data`, must be computable in int64 so
// that kernels can index with plain int64 arithmetic.
void check_reach(std::span<const std::int64_t> shape, std::span<const std::int64_t> strides,
                 DType dtype, std::int64_t byte_offset) {
  std::int64_t lowest = 0;
  std::int64_t highest = 0;
  bool overflowed = false;
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    std::int64_t extent = 0;
    // Each stride in bytes too, size-1 axes included: copies and exports scale every stride
    // by the item size (a DLPack producer may put anything in a size-1 axis's stride).
    std::int64_t byte_stride = 0;
    overflowed |= multiply_overflows(strides[axis], itemsize(dtype), byte_stride);
    overflowed |= multiply_overflows(strides[axis], shape[axis] - 1, extent);
    std::int64_t& bound = extent < 0 ? lowest : highest;
    overflowed |= add_overflows(bound, extent, bound);
  }
  std::int64_t lowest_byte = 0;
  std::int64_t highest_byte = 0;
  overflowed |= multiply_overflows(lowest, itemsize(dtype), lowest_byte);
  overflowed |= multiply_overflows(highest, itemsize(dtype), highest_byte);
  overflowed |= add_overflows(highest_byte, itemsize(dtype), highest_byte);  // its last byte
  overflowed |= add_overflows(highest_byte, byte_offset, highest_byte);
  overflowed |= add_overflows(lowest_byte, byte_offset, lowest_byte);
  if (overflowed) {
    fail<ValueError>("strides: expected a view whose byte offsets fit in int64, got shape ",
                     shape_str(shape), " with strides ", shape_str(strides), " of ",
                     dtype_name(dtype), " at byte offset ", byte_offset);
  }
}

// Row-major copy of an arbitrarily strided view, one innermost row at a time. kItemSize is a
// template parameter so the per-element copy compiles to a single move.
template <int kItemSize>
void copy_strided(const Array& source, std::byte* destination) {
  const Shape& shape = source.shape();
  const Strides& strides = source.strides();
  const int outer_axes = source.ndim() - 1;
  const std::int64_t row_length = shape.back();
  const std::int64_t row_step = strides.back() * kItemSize;
  const std::int64_t rows = source.numel() / row_length;

  std::vector<std::int64_t> index(outer_axes, 0);
  const std::byte* row = static_cast<const std::byte*>(source.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    if (row_step == kItemSize) {
      std::memcpy(destination, row, row_length * kItemSize);
      destination += row_length * kItemSize;
    } else {
      // Indexed, not stepped: stepping would form a pointer one stride past the last element,
      // which for a huge stride (a size-1 axis may have any) overflows the address space.
      for (std::int64_t i = 0; i < row_length; ++i) {
        std::memcpy(destination, row + i * row_step, kItemSize);
        destination += kItemSize;
      }
    }
    // Odometer over the outer axes.
    for (int axis = outer_axes - 1; axis >= 0; --axis) {
      const std::int64_t step = strides[axis] * kItemSize;
      if (++index[axis] < shape[axis]) {
        row += step;
        break;
      }
      row -= step * (shape[axis] - 1);
      index[axis] = 0;
    }
  }
}

// Freed large host blocks kept for reuse, up to kCapacity bytes: an op's output of the same
// size as one freed a moment ago (the next tensor of a checkpoint conversion, the next call in
// a loop) takes its pages as they are, instead of the kernel zeroing fresh ones on first touch,
// which costs as much as the kernels on a VM. Oldest blocks go first; a block is reused only
// for a request within a quarter of its size. Thread-safe; never destroyed (arrays may be freed
// during static destruction).
class LargeBlockCache {
 public:
  static constexpr std::size_t kCapacity = std::size_t{512} << 20;
  static constexpr std::align_val_t kAlignment{std::size_t{2} << 20};

  static LargeBlockCache& instance() {
    static auto* cache = new LargeBlockCache;
    return *cache;
  }

  // A block of `capacity` bytes (a multiple of 2 MiB), reused or new.
  void* take(std::size_t capacity) {
    {
      const std::lock_guard lock(mutex_);
      for (auto block = blocks_.begin(); block != blocks_.end(); ++block) {
        if (block->capacity >= capacity && block->capacity - capacity <= capacity / 4) {
          void* memory = block->memory;
          cached_ -= block->capacity;
          blocks_.erase(block);
          return memory;
        }
      }
    }
    void* memory = ::operator new(capacity, kAlignment);
#if defined(MADV_HUGEPAGE)
    madvise(memory, capacity, MADV_HUGEPAGE);  // advice: failure is fine
#endif
    return memory;
  }

  void give_back(void* memory, std::size_t capacity) {
    if (capacity <= kCapacity) {
      const std::lock_guard lock(mutex_);
      while (cached_ + capacity > kCapacity) {
        ::operator delete(blocks_.front().memory, kAlignment);
        cached_ -= blocks_.front().capacity;
        blocks_.erase(blocks_.begin());
      }
      blocks_.push_back({memory, capacity});
      cached_ += capacity;
      return;
    }
    ::operator delete(memory, kAlignment);
  }

 private:
  struct Block {
    void* memory;
    std::size_t capacity;
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;  // oldest first
  std::size_t cached_ = 0;
};

class CpuAllocator final : public Allocator {
 public:
  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    if (!device.is_cpu()) {
      fail<DeviceError>("device: the CPU allocator serves only cpu, got ", device);
    }
    if (bytes < 0) fail<ValueError>("bytes: expected a non-negative size, got ", bytes);
    // 64 bytes: one cache line, and enough for any SIMD load the CPU kernels use.
    constexpr std::align_val_t kAlignment{64};
    // Large arrays on 2 MiB boundaries, with transparent huge pages asked for (as NumPy does):
    // first touch then faults once per 2 MiB instead of once per 4 KiB, which otherwise costs
    // more than the kernels that fill them.
    constexpr std::size_t kHugePage = std::size_t{2} << 20;
    const auto size = static_cast<std::size_t>(bytes);
    if (size >= 2 * kHugePage) {
      const std::size_t capacity = (size + kHugePage - 1) / kHugePage * kHugePage;
      void* memory = LargeBlockCache::instance().take(capacity);
      return {memory, [capacity](void* pointer) {
                LargeBlockCache::instance().give_back(pointer, capacity);
              }};
    }
    void* memory = ::operator new(size, kAlignment);
    return {memory, [](void* pointer) { ::operator delete(pointer, kAlignment); }};
  }
};

}  // namespace

std::string shape_str(std::span<const std::int64_t> shape) {
  std::string text = "(";
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(shape[axis]);
  }
  // A one-element tuple is spelled "(4,)", as Python prints it.
  if (shape.size() == 1) text += ",";
  return text + ")";
}

std::int64_t checked_numel(std::span<const std::int64_t> shape, std::string_view argument) {
  if (shape.size() > kMaxDims) {
    fail<ValueError>(argument, ": expected at most ", kMaxDims, " dimensions, got ", shape.size());
  }
  bool has_zero = false;
  std::int64_t numel = 1;
  for (std::int64_t dim : shape) {
    if (dim < 0) {
      fail<ValueError>(argument, ": expected non-negative dimensions, got ", shape_str(shape));
    }
    has_zero |= dim == 0;
  }
  for (std::int64_t dim : shape) {
    if (multiply_overflows(numel, std::max<std::int64_t>(dim, 1), numel)) {
      fail<ValueError>(argument, ": expected at most 2^63-1 elements, got shape ", shape_str(shape),
                       " whose element count (zero dims aside) overflows int64");
    }
  }
  return has_zero ? 0 : numel;
}

Strides contiguous_strides(std::span<const std::int64_t> shape) {
  Strides strides(shape.size());
  std::int64_t stride = 1;
  for (std::size_t axis = shape.size(); axis-- > 0;) {
    strides[axis] = stride;
    // Zero dims count as one, as NumPy does, so strides stay meaningful for empty arrays. The
    // product past axis 0 is never used as a stride, so only earlier overflows matter.
    if (multiply_overflows(stride, std::max<std::int64_t>(shape[axis], 1), stride) && axis > 0) {
      fail<ValueError>("shape: expected row-major strides that fit in int64, got shape ",
                       shape_str(shape));
    }
  }
  return strides;
}

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

Array Array::empty(DType dtype, Shape shape, Device device, Allocator* allocator) {
  const std::int64_t bytes = checked_nbytes(checked_numel(shape), dtype, shape);
  if (allocator == nullptr) {
    if (!device.is_cpu()) {
      fail<DeviceError>("allocator: expected one for memory on ", device,
                        " (breccia allocates only CPU memory itself), got none");
    }
    allocator = &cpu_allocator();
  }
  std::shared_ptr<void> memory = allocator->allocate(bytes, device);
  if (!memory && bytes > 0) {
    fail<ValueError>("allocator: expected ", bytes, " bytes on ", device, ", got null");
  }
  void* data = memory.get();
  return borrow(data, dtype, std::move(shape), {}, device, std::move(memory));
}

Array Array::zeros(DType dtype, Shape shape) {
  Array array = empty(dtype, std::move(shape));
  if (array.nbytes() > 0) std::memset(array.data(), 0, array.nbytes());
  return array;
}

Array Array::borrow(void* data, DType dtype, Shape shape, Strides strides, Device device,
                    std::shared_ptr<void> owner, std::int64_t byte_offset) {
  const std::int64_t numel = checked_numel(shape);
  checked_nbytes(numel, dtype, shape);
  if (strides.empty()) {
    strides = contiguous_strides(shape);
  } else if (strides.size() != shape.size()) {
    fail<ValueError>("strides: expected ", shape.size(), " strides for shape ", shape_str(shape),
                     ", got ", strides.size(), " ", shape_str(strides));
  }
  if (byte_offset < 0) {
    fail<ValueError>("byte_offset: expected a non-negative offset, got ", byte_offset);
  }
  if (numel > 0) {
    if (data == nullptr) {
      fail<ValueError>("data: expected a pointer to ", numel, " elements of shape ",
                       shape_str(shape), ", got null");
    }
    check_reach(shape, strides, dtype, byte_offset);
  }

  Array array;
  array.base_ = data;
  array.byte_offset_ = byte_offset;
  array.dtype_ = dtype;
  array.shape_ = std::move(shape);
  array.strides_ = std::move(strides);
  array.numel_ = numel;
  array.device_ = device;
  array.owner_ = std::move(owner);
  return array;
}

std::int64_t Array::dim(int axis) const {
  const int axes = ndim();
  const int resolved = axis < 0 ? axis + axes : axis;
  if (resolved < 0 || resolved >= axes) {
    fail<ValueError>("axis: expected an axis in [", -axes, ", ", axes, ") for shape ",
                     shape_str(shape_), ", got ", axis);
  }
  return shape_[resolved];
}

Array Array::marked_read_only() const {
  Array array = *this;
  array.read_only_ = true;
  return array;
}

bool Array::is_contiguous() const {
  if (numel_ == 0) return true;
  std::int64_t expected = 1;
  for (int axis = ndim() - 1; axis >= 0; --axis) {
    // The stride of a size-1 axis is never used to reach an element, so any value is fine.
    if (shape_[axis] != 1 && strides_[axis] != expected) return false;
    expected *= shape_[axis];
  }
  return true;
}

Array Array::contiguous() const {
  if (is_contiguous()) return *this;
  if (!device_.is_cpu()) {
    fail<DeviceError>("array: contiguous() copies only CPU memory, got a strided array on ",
                      device_,
                      "; breccia never copies device memory behind your back, so make it "
                      "contiguous in your framework first");
  }
  Array copy = empty(dtype_, shape_);
  auto* destination = static_cast<std::byte*>(copy.data());
  switch (itemsize(dtype_)) {
    case 1:
      copy_strided<1>(*this, destination);
      break;
    case 2:
      copy_strided<2>(*this, destination);
      break;
    case 4:
      copy_strided<4>(*this, destination);
      break;
    case 8:
      copy_strided<8>(*this, destination);
      break;
  }
  return copy;
}

Array Array::reshaped(Shape shape) const {
  const std::int64_t numel = checked_numel(shape);
  if (numel != numel_) {
    fail<ValueError>("shape: expected ", numel_, " elements to match ", shape_str(shape_), ", got ",
                     shape_str(shape), " with ", numel);
  }
  if (!is_contiguous()) {
    fail<ValueError>("array: reshaped() needs a contiguous array, got shape ", shape_str(shape_),
                     " with strides ", shape_str(strides_), "; call contiguous() first");
  }
  Array array = *this;
  array.strides_ = contiguous_strides(shape);
  array.shape_ = std::move(shape);
  return array;
}

Array Array::viewed_as(DType dtype) const {
  if (itemsize(dtype) != itemsize(dtype_)) {
    fail<TypeError>("dtype: expected a dtype of ", itemsize(dtype_), " byte(s) to view ",
                    dtype_name(dtype_), ", got ", dtype_name(dtype), " of ", itemsize(dtype),
                    " byte(s)");
  }
  Array array = *this;
  array.dtype_ = dtype;
  return array;
}

Array Array::transposed() const {
  if (ndim() < 2) return *this;
  Array array = *this;
  const std::size_t last = shape_.size() - 1;
  std::swap(array.shape_[last], array.shape_[last - 1]);
  std::swap(array.strides_[last], array.strides_[last - 1]);
  return array;
}

std::string Array::str() const {
  if (!defined()) return "Array(undefined)";
  return "Array(" + std::string(dtype_name(dtype_)) + ", " + shape_str(shape_) + ", " +
         device_.str() + ")";
}

}  // namespace breccia
