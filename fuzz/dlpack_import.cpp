// libFuzzer target: DLPack import (versioned and legacy) of tensors whose every field comes from
// the input: version, flags, device, dtype, ndim, shape, strides, byte offset. The data pointer
// is a real buffer, and an imported CPU tensor is read in full whenever the elements it claims
// lie inside that buffer (the fuzzer's own bound check, in 128-bit arithmetic) and are few. The
// deleter must run exactly once for an accepted tensor and never for a rejected one.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "breccia/dlpack.hpp"
#include "fuzz_support.hpp"
#include "interop/dlpack_abi.hpp"

namespace {

namespace abi = breccia::dlpack::abi;

constexpr std::size_t kBufferBytes = 1 << 16;
alignas(64) unsigned char buffer[kBufferBytes];
int deleter_calls = 0;

// Reads the input front to back; zeros once it runs out.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  template <class T>
  T next() {
    T value{};
    const std::size_t n = std::min(sizeof(T), size_ - std::min(size_, used_));
    if (n > 0) std::memcpy(&value, data_ + used_, n);
    used_ += sizeof(T);
    return value;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t used_ = 0;
};

// Whether every element the tensor claims lies inside `buffer`.
bool inside_buffer(const breccia::Array& array) {
  if (array.numel() == 0) return true;
  __int128 low = 0;
  __int128 high = 0;
  for (int axis = 0; axis < array.ndim(); ++axis) {
    const __int128 reach = static_cast<__int128>(array.shape()[axis] - 1) * array.strides()[axis];
    (reach < 0 ? low : high) += reach;
  }
  const __int128 item = breccia::itemsize(array.dtype());
  const __int128 start = static_cast<const unsigned char*>(array.data()) - buffer;
  return start + low * item >= 0 && start + (high + 1) * item <= kBufferBytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input input(data, size);
  const bool legacy = input.next<std::uint8_t>() & 1;
  abi::DLManagedTensorVersioned versioned{};
  versioned.version = {input.next<std::uint8_t>() % 3u, input.next<std::uint8_t>()};
  versioned.flags = input.next<std::uint8_t>();
  abi::DLTensor& tensor = versioned.dl_tensor;
  const std::uint8_t place = input.next<std::uint8_t>();
  tensor.data = place == 0 ? nullptr : buffer + place % 64;
  tensor.device = {input.next<std::uint8_t>() % 5, input.next<std::uint8_t>() % 3};
  tensor.dtype = {input.next<std::uint8_t>(), input.next<std::uint8_t>(),
                  input.next<std::uint16_t>()};
  tensor.ndim = input.next<std::int8_t>();
  const std::size_t dims = static_cast<std::size_t>(std::max(tensor.ndim, std::int32_t{0}));
  std::vector<std::int64_t> shape(dims + 1);
  std::vector<std::int64_t> strides(dims + 1);
  const bool explicit_strides = input.next<std::uint8_t>() & 1;
  for (std::size_t i = 0; i < dims; ++i) {
    // Mostly small dims, now and then any int64.
    const auto raw = input.next<std::int64_t>();
    shape[i] = (raw & 0x100) ? raw : raw % 9;
    const auto stride = input.next<std::int64_t>();
    strides[i] = (stride & 0x100) ? stride : stride % 17;
  }
  tensor.shape = shape.data();
  tensor.strides = explicit_strides ? strides.data() : nullptr;
  tensor.byte_offset = input.next<std::uint8_t>() % 128;

  deleter_calls = 0;
  abi::DLManagedTensor managed{tensor, nullptr, [](abi::DLManagedTensor*) { ++deleter_calls; }};
  versioned.deleter = [](abi::DLManagedTensorVersioned*) { ++deleter_calls; };
  bool accepted = false;
  breccia::fuzz::expect_only_breccia_errors([&] {
    const breccia::Array array = legacy ? breccia::dlpack::from_legacy(&managed)
                                        : breccia::dlpack::from_versioned(&versioned);
    accepted = true;
    if (deleter_calls != 0) __builtin_trap();
    // Reads (copies) only what fits a small budget: a broadcast tensor (stride 0) may claim far
    // more elements than its memory holds, and copying those is a legitimate huge allocation.
    if (array.device().is_cpu() && inside_buffer(array) &&
        array.numel() <= static_cast<std::int64_t>(kBufferBytes)) {
      const breccia::Array copy = array.contiguous();
      if (copy.numel() != array.numel()) __builtin_trap();
    }
  });
  if (deleter_calls != (accepted ? 1 : 0)) __builtin_trap();
  return 0;
}
