// DeviceWorkspace: breccia's own stream and stream-ordered device memory, for work with no
// framework allocator in play (the checkpoint converter's device option).
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <memory>

#include "breccia/error.hpp"
#include "breccia/kernels/cuda.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda {
namespace {

// The stream and memory pool of a workspace, alive while the workspace or any array allocated
// from it is: the last owner waits for the stream's work, then destroys both.
struct StreamAndPool {
  Device device;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;

  explicit StreamAndPool(Device on) : device(on) {
    const detail::DeviceGuard guard(device);
    detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cudaMemPoolProps properties{};
    properties.allocType = cudaMemAllocationTypePinned;
    properties.location.type = cudaMemLocationTypeDevice;
    properties.location.id = device.id;
    const cudaError_t created = cudaMemPoolCreate(&pool, &properties);
    if (created != cudaSuccess) {
      cudaStreamDestroy(stream);
      detail::check(created, "cudaMemPoolCreate");
    }
    // Freed memory stays in the pool for the next tensor instead of going back to the driver at
    // every synchronisation (the default threshold, 0).
    std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  }
  ~StreamAndPool() {  // no throwing here: it may run while an earlier CUDA error unwinds
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device.id);
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
    cudaMemPoolDestroy(pool);
    cudaSetDevice(previous);
  }
  StreamAndPool(const StreamAndPool&) = delete;
  StreamAndPool& operator=(const StreamAndPool&) = delete;
};

// Stream-ordered memory from the workspace's pool; each block is freed on its stream when its
// last owner goes, and keeps the stream and pool alive until then.
class StreamAllocator final : public Allocator {
 public:
  explicit StreamAllocator(std::shared_ptr<StreamAndPool> resources)
      : resources_(std::move(resources)) {}

  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    if (device != resources_->device) {
      fail<DeviceError>("device: this allocator serves ", resources_->device, ", got ", device);
    }
    if (bytes < 0) fail<ValueError>("bytes: expected a non-negative size, got ", bytes);
    if (bytes == 0) return {};
    const detail::DeviceGuard guard(device);
    void* memory = nullptr;
    detail::check(cudaMallocFromPoolAsync(&memory, static_cast<std::size_t>(bytes),
                                          resources_->pool, resources_->stream),
                  "cudaMallocFromPoolAsync");
    return {memory,
            [resources = resources_](void* pointer) { cudaFreeAsync(pointer, resources->stream); }};
  }

 private:
  std::shared_ptr<StreamAndPool> resources_;
};

}  // namespace

struct DeviceWorkspace::State {
  std::shared_ptr<StreamAndPool> resources;
  std::unique_ptr<StreamAllocator> allocator;
  Context context;
};

DeviceWorkspace::DeviceWorkspace(Device device) : state_(std::make_unique<State>()) {
  if (device.kind != Device::Kind::kCUDA) {
    fail<DeviceError>("device: expected a CUDA device, got ", device);
  }
  int count = 0;
  if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
    fail<DeviceError>("device: ", device, " asked for, but CUDA finds no usable GPU (",
                      cudaGetErrorString(status), ")");
  }
  if (device.id >= count) {
    fail<DeviceError>("device: this machine has ", count, " CUDA device(s), got ", device);
  }
  state_->resources = std::make_shared<StreamAndPool>(device);
  state_->allocator = std::make_unique<StreamAllocator>(state_->resources);
  state_->context =
      Context{.allocator = state_->allocator.get(), .stream = state_->resources->stream};
}

DeviceWorkspace::~DeviceWorkspace() {
  // Scratch blocks the ops kept from this workspace's allocator go back to its pool now.
  release_scratch();
}

Device DeviceWorkspace::device() const {
  return state_->resources->device;
}

const Context& DeviceWorkspace::context() const {
  return state_->context;
}

Array DeviceWorkspace::to_device(const Array& host) const {
  if (!host.device().is_cpu()) {
    fail<DeviceError>("host: expected an array on cpu, got one on ", host.device());
  }
  const StreamAndPool& resources = *state_->resources;
  const Array contiguous = host.contiguous();
  Array out = Array::empty(host.dtype(), host.shape(), resources.device, state_->allocator.get());
  if (out.nbytes() == 0) return out;
  const detail::DeviceGuard guard(resources.device);
  detail::check(
      cudaMemcpyAsync(out.data(), contiguous.data(), static_cast<std::size_t>(contiguous.nbytes()),
                      cudaMemcpyHostToDevice, resources.stream),
      "cudaMemcpyAsync (to the device)");
  // The host array may be a temporary: the copy must be done before it goes.
  detail::check(cudaStreamSynchronize(resources.stream), "cudaStreamSynchronize");
  return out;
}

Array DeviceWorkspace::to_host(const Array& array) const {
  const StreamAndPool& resources = *state_->resources;
  if (array.device() != resources.device) {
    fail<DeviceError>("array: expected an array on ", resources.device, ", got one on ",
                      array.device());
  }
  if (!array.is_contiguous()) {
    fail<ValueError>("array: expected a contiguous device array, got strides ",
                     shape_str(array.strides()));
  }
  Array out = Array::empty(array.dtype(), array.shape());
  if (out.nbytes() == 0) return out;
  const detail::DeviceGuard guard(resources.device);
  detail::check(cudaMemcpyAsync(out.data(), array.data(), static_cast<std::size_t>(array.nbytes()),
                                cudaMemcpyDeviceToHost, resources.stream),
                "cudaMemcpyAsync (to the host)");
  detail::check(cudaStreamSynchronize(resources.stream), "cudaStreamSynchronize");
  return out;
}

}  // namespace breccia::kernels::cuda
