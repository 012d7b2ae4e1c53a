// DeviceWorkspace: breccia's own stream and stream-ordered device memory, for work with no
// framework allocator in play (the checkpoint converter's device option).
#include <cuda_runtime.h>

#include <memory>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {
namespace {

// cudaMallocAsync on one stream; each block is freed on that stream when its last owner goes.
class StreamAllocator final : public Allocator {
 public:
  StreamAllocator(Device device, cudaStream_t stream) : device_(device), stream_(stream) {}

  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    if (device != device_) {
      fail<DeviceError>("device: this allocator serves ", device_, ", got ", device);
    }
    if (bytes < 0) fail<ValueError>("bytes: expected a non-negative size, got ", bytes);
    const detail::DeviceGuard guard(device_);
    void* memory = nullptr;
    detail::check(cudaMallocAsync(&memory, static_cast<std::size_t>(bytes), stream_),
                  "cudaMallocAsync");
    const cudaStream_t stream = stream_;
    return {memory, [stream](void* pointer) { cudaFreeAsync(pointer, stream); }};
  }

 private:
  Device device_;
  cudaStream_t stream_;
};

}  // namespace

struct DeviceWorkspace::State {
  Device device;
  cudaStream_t stream = nullptr;
  std::unique_ptr<StreamAllocator> allocator;
  Context context;
};

DeviceWorkspace::DeviceWorkspace(Device device) : state_(std::make_unique<State>()) {
  if (device.kind != Device::Kind::kCUDA) {
    fail<DeviceError>("device: expected a CUDA device, got ", device);
  }
  int count = 0;
  detail::check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device.id < 0 || device.id >= count) {
    fail<DeviceError>("device: this machine has ", count, " CUDA device(s), got ", device);
  }
  const detail::DeviceGuard guard(device);
  state_->device = device;
  detail::check(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking),
                "cudaStreamCreate");
  state_->allocator = std::make_unique<StreamAllocator>(device, state_->stream);
  state_->context = Context{.allocator = state_->allocator.get(), .stream = state_->stream};
}

DeviceWorkspace::~DeviceWorkspace() {
  const detail::DeviceGuard guard(state_->device);
  release_scratch();  // blocks the ops kept from this workspace's allocator
  cudaStreamSynchronize(state_->stream);
  cudaStreamDestroy(state_->stream);
}

Device DeviceWorkspace::device() const {
  return state_->device;
}

const Context& DeviceWorkspace::context() const {
  return state_->context;
}

Array DeviceWorkspace::to_device(const Array& host) const {
  if (!host.device().is_cpu()) {
    fail<DeviceError>("host: expected an array on cpu, got one on ", host.device());
  }
  const Array contiguous = host.contiguous();
  Array out = Array::empty(host.dtype(), host.shape(), state_->device, state_->allocator.get());
  const detail::DeviceGuard guard(state_->device);
  detail::check(
      cudaMemcpyAsync(out.data(), contiguous.data(), static_cast<std::size_t>(contiguous.nbytes()),
                      cudaMemcpyHostToDevice, state_->stream),
      "cudaMemcpyAsync (to the device)");
  // The host array may be a temporary: the copy must be done before it goes.
  detail::check(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize");
  return out;
}

Array DeviceWorkspace::to_host(const Array& array) const {
  if (array.device() != state_->device) {
    fail<DeviceError>("array: expected an array on ", state_->device, ", got one on ",
                      array.device());
  }
  if (!array.is_contiguous()) {
    fail<ValueError>("array: expected a contiguous device array, got strides ",
                     shape_str(array.strides()));
  }
  Array out = Array::empty(array.dtype(), array.shape());
  const detail::DeviceGuard guard(state_->device);
  detail::check(cudaMemcpyAsync(out.data(), array.data(), static_cast<std::size_t>(array.nbytes()),
                                cudaMemcpyDeviceToHost, state_->stream),
                "cudaMemcpyAsync (to the host)");
  detail::check(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize");
  return out;
}

}  // namespace breccia::kernels::cuda
