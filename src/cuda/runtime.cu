#include "cuda/runtime.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "breccia/error.hpp"
#include "cuda/scale_rules.cuh"

namespace breccia::kernels::cuda {

bool has_cutlass_gemm() {
#if defined(BRECCIA_CUTLASS)
  return true;
#else
  return false;
#endif
}

namespace detail {

void check(cudaError_t status, std::string_view what) {
  if (status != cudaSuccess) {
    fail<DeviceError>(what, ": CUDA error ", cudaGetErrorName(status), " (",
                      cudaGetErrorString(status), ")");
  }
}

void check_launch(std::string_view kernel) {
  check(cudaGetLastError(), kernel);
}

namespace {

// Scratch blocks (GEMM workspaces, scale products) kept for the next call on the same device
// and stream, so that a call asks the caller's allocator for its output only: a request to a
// framework allocator from a kernel launcher costs microseconds (for PyTorch, a trip back into
// Python). Reusing a block on the stream it was last used on needs no synchronisation, the rule
// PyTorch's own caching allocator follows; streams are told apart by cudaStreamGetId, which
// differs for every stream ever created (a handle can be reused, and cudaStreamPerThread is
// one handle for many streams). Requests above kLargest bytes are not kept (a transposed copy
// of a whole weight, say); at most kBlocksPerStream per stream, the least recently returned
// given back first. release_scratch() gives every kept block back. The pool itself is never
// destroyed: it may outlive the framework whose memory it holds.
class ScratchPool {
 public:
  static constexpr std::int64_t kLargest = std::int64_t{64} << 20;

  static ScratchPool& instance() {
    static auto* pool = new ScratchPool;
    return *pool;
  }

  std::shared_ptr<void> take(const Context& context, std::int64_t bytes, Device device) {
    unsigned long long stream_id = 0;
    check(cudaStreamGetId(stream_of(context), &stream_id), "cudaStreamGetId");
    const Key key{device.id, stream_id};
    constexpr std::int64_t kGranule = 4096;
    const std::int64_t rounded = (bytes + kGranule - 1) / kGranule * kGranule;
    Block block;
    {
      const std::lock_guard lock(mutex_);
      std::vector<Block>& blocks = free_[key];
      // The smallest kept block that holds the request without being more than twice its size.
      auto fit = blocks.end();
      for (auto b = blocks.begin(); b != blocks.end(); ++b) {
        if (b->bytes >= rounded && b->bytes <= 2 * rounded &&
            (fit == blocks.end() || b->bytes < fit->bytes)) {
          fit = b;
        }
      }
      if (fit != blocks.end()) {
        block = std::move(*fit);
        blocks.erase(fit);
      }
    }
    if (block.memory == nullptr) {
      block.bytes = rounded;
      block.memory = allocate(context, rounded, device);
    }
    void* address = block.memory.get();
    return std::shared_ptr<void>(address, [this, key, block = std::move(block)](void*) mutable {
      Block evicted;  // released after the lock: a framework's free may need its own lock
      {
        const std::lock_guard lock(mutex_);
        std::vector<Block>& blocks = free_[key];
        blocks.push_back(std::move(block));
        // The least recently returned goes: a repeated call finds every block it used.
        if (blocks.size() > kBlocksPerStream) {
          evicted = std::move(blocks.front());
          blocks.erase(blocks.begin());
        }
      }
    });
  }

  void release() {
    std::map<Key, std::vector<Block>> released;
    {
      const std::lock_guard lock(mutex_);
      released.swap(free_);
    }
  }

  static std::shared_ptr<void> allocate(const Context& context, std::int64_t bytes, Device device) {
    std::shared_ptr<void> memory = context.allocator->allocate(bytes, device);
    if (memory == nullptr) {
      fail<DeviceError>("allocator: expected ", bytes, " bytes on ", device, ", got null");
    }
    return memory;
  }

 private:
  static constexpr std::size_t kBlocksPerStream = 4;
  struct Block {
    std::shared_ptr<void> memory;
    std::int64_t bytes = 0;
  };
  using Key = std::pair<int, unsigned long long>;
  std::mutex mutex_;
  std::map<Key, std::vector<Block>> free_;
};

}  // namespace

std::shared_ptr<void> scratch(const Context& context, std::int64_t bytes, Device device) {
  if (context.allocator == nullptr) {
    fail<DeviceError>("allocator: CUDA ops need the caller's allocator for ", device,
                      " (pass one in the op's Context), got none");
  }
  if (bytes == 0) return nullptr;
  // Work captured into a CUDA graph keeps its addresses for every replay: its scratch is its own.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream_of(context), &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone || bytes > ScratchPool::kLargest) {
    return ScratchPool::allocate(context, bytes, device);
  }
  return ScratchPool::instance().take(context, bytes, device);
}

void require_cuda(const Array& array, std::string_view argument) {
  if (array.device().kind != Device::Kind::kCUDA) {
    fail<DeviceError>(argument, ": expected an array on a CUDA device, got ", array.device());
  }
}

std::size_t device_slot(Device device, std::string_view what) {
  if (device.id < 0 || device.id >= kMaxDevices) {
    fail<DeviceError>(what, ": device ids 0-", kMaxDevices - 1, " are supported, got ", device);
  }
  return static_cast<std::size_t>(device.id);
}

int sm_count(Device device) {
  static std::array<std::atomic<int>, kMaxDevices> cached{};
  const std::size_t slot = device_slot(device, "sm_count");
  int sms = cached[slot].load(std::memory_order_relaxed);
  if (sms == 0) {
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device.id),
          "cudaDeviceGetAttribute(multiProcessorCount)");
    cached[slot].store(sms, std::memory_order_relaxed);
  }
  return sms;
}

DeviceGuard::DeviceGuard(Device device) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  changed_ = previous_ != device.id;
  if (changed_) check(cudaSetDevice(device.id), "cudaSetDevice");
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);
}

namespace {

__device__ float amax_value(std::uint32_t bits) {
  return cuda_detail::amax_from_bits(bits);
}

struct GlobalScales {
  float* to[2];
  int count;
};

__global__ void nvfp4_global_scale_kernel(const std::uint32_t* amax_bits, GlobalScales out) {
  const float amax = amax_value(*amax_bits);
  // x86 divides a NaN into the same NaN; the GPU would write its own canonical one.
  const float global = cuda_detail::is_nan(amax) ? amax : numerics::nvfp4_global_scale(amax);
  for (int i = 0; i < out.count; ++i) *out.to[i] = global;
}

}  // namespace

void finish_nvfp4_global_scale(const std::uint32_t* amax_bits,
                               std::span<float* const> global_scales, cudaStream_t stream) {
  GlobalScales out{};
  if (global_scales.size() > 2)
    fail<ValueError>("global_scales: expected at most two, got ", global_scales.size());
  out.count = static_cast<int>(global_scales.size());
  for (int i = 0; i < out.count; ++i) out.to[i] = global_scales[i];
  nvfp4_global_scale_kernel<<<1, 1, 0, stream>>>(amax_bits, out);
  check_launch("nvfp4_global_scale_kernel");
}

}  // namespace detail

void release_scratch() {
  detail::ScratchPool::instance().release();
}

}  // namespace breccia::kernels::cuda
