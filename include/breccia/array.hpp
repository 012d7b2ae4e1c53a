// Array: an n-d view of typed memory on one device, owning or borrowing it through shared
// ownership. It is the single currency between the bindings, the ops and the kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "breccia/device.hpp"
#include "breccia/dtype.hpp"

namespace breccia {

using Shape = std::vector<std::int64_t>;
using Strides = std::vector<std::int64_t>;  // in elements, as DLPack

std::string shape_str(std::span<const std::int64_t> shape);  // "(4, 8)"

// The most dims an Array may have: NumPy's limit, so that every Array can cross to Python.
inline constexpr std::size_t kMaxDims = 64;

// Product of dims, throwing ValueError (naming `argument`) on a negative dim, more than
// kMaxDims dims, or a product of the non-zero dims that overflows int64 (NumPy refuses such a
// shape even when a zero dim makes it empty).
std::int64_t checked_numel(std::span<const std::int64_t> shape,
                           std::string_view argument = "shape");

// Row-major strides for `shape`.
Strides contiguous_strides(std::span<const std::int64_t> shape);

// Allocates device memory for outputs. The CPU one uses aligned operator new; a GPU one is
// supplied by the caller's framework (its caching allocator, on its current stream).
class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns an owner whose get() is the start of `bytes` bytes on `device`.
  virtual std::shared_ptr<void> allocate(std::int64_t bytes, Device device) = 0;
};

Allocator& cpu_allocator();

class Array {
 public:
  Array() = default;

  // Fresh, uninitialised, contiguous memory from `allocator` (CPU by default).
  static Array empty(DType dtype, Shape shape, Device device = Device::cpu(),
                     Allocator* allocator = nullptr);
  static Array zeros(DType dtype, Shape shape);  // CPU

  // Wraps memory someone else owns; `owner` keeps it alive (may be null for memory that
  // outlives the Array). `strides` empty means row-major.
  static Array borrow(void* data, DType dtype, Shape shape, Strides strides, Device device,
                      std::shared_ptr<void> owner, std::int64_t byte_offset = 0);

  // A default-constructed Array (no shape, no memory) is undefined; an empty one is defined.
  bool defined() const { return static_cast<bool>(base_) || (numel_ == 0 && !shape_.empty()); }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const { return numel_; }
  std::int64_t nbytes() const { return numel_ * itemsize(dtype_); }
  Device device() const { return device_; }
  std::int64_t byte_offset() const { return byte_offset_; }
  const std::shared_ptr<void>& owner() const { return owner_; }
  // Set for memory whose producer forbids writes (DLPack's read-only flag); views keep it and
  // DLPack export passes it on.
  bool read_only() const { return read_only_; }
  Array marked_read_only() const;

  // Pointer DLPack calls `data` (before byte_offset).
  void* base() const { return base_; }
  // Address of element 0.
  void* data() const { return static_cast<std::byte*>(base_) + byte_offset_; }
  template <class T>
  T* data_as() const {
    return static_cast<T*>(data());
  }

  bool is_contiguous() const;
  // This array if contiguous, else a row-major CPU copy. Throws DeviceError for device memory.
  Array contiguous() const;
  // Same memory under another shape (must be contiguous, same numel).
  Array reshaped(Shape shape) const;
  // Same bytes read as another dtype of the same itemsize (e.g. uint8 <-> float8_e4m3fn).
  Array viewed_as(DType dtype) const;
  // The last two dims swapped, as a view (shape and strides swapped); a 0-d or 1-d array is
  // returned as it is, as NumPy's .T does.
  Array transposed() const;

  std::string str() const;  // "Array(float32, (4, 8), cpu)"

 private:
  void* base_ = nullptr;
  std::int64_t byte_offset_ = 0;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Strides strides_;
  std::int64_t numel_ = 0;
  Device device_;
  std::shared_ptr<void> owner_;
  bool read_only_ = false;
};

}  // namespace breccia
