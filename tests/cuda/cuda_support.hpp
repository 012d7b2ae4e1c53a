// Test and benchmark support for CUDA: a stream-ordered allocator (the stand-in for a
// framework's caching allocator) and host <-> device copies of Arrays.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "breccia/array.hpp"
#include "kernel_cases.hpp"

namespace breccia::cuda_test {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

// cudaMallocAsync / cudaFreeAsync on one stream: memory comes from the device's pool, and
// frees are ordered after the work queued before them, as with PyTorch's caching allocator.
class StreamAllocator : public Allocator {
 public:
  // The device's default pool keeps freed memory instead of unmapping it at every
  // synchronisation, as a caching allocator does (otherwise each large allocation pays for
  // mapping fresh pages, which benchmarks would measure).
  explicit StreamAllocator(cudaStream_t stream = nullptr) : stream_(stream) {
    int device = 0;
    cudaMemPool_t pool = nullptr;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t keep_all = ~std::uint64_t{0};
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all),
          "cudaMemPoolSetAttribute");
  }
  std::shared_ptr<void> allocate(std::int64_t bytes, Device device) override {
    if (device.kind != Device::Kind::kCUDA) throw std::runtime_error("StreamAllocator: CUDA only");
    void* pointer = nullptr;
    check(cudaMallocAsync(&pointer, static_cast<std::size_t>(bytes > 0 ? bytes : 1), stream_),
          "cudaMallocAsync");
    cudaStream_t stream = stream_;
    return {pointer, [stream](void* p) { cudaFreeAsync(p, stream); }};
  }

 private:
  cudaStream_t stream_;
};

inline Array to_device(const Array& host, Allocator& allocator) {
  const Array source = host.contiguous();
  Array device = Array::empty(source.dtype(), source.shape(), Device::cuda(0), &allocator);
  check(cudaMemcpy(device.data(), source.data(), static_cast<std::size_t>(source.nbytes()),
                   cudaMemcpyHostToDevice),
        "cudaMemcpy to device");
  return device;
}

inline Array to_host(const Array& device) {
  Array host = Array::empty(device.dtype(), device.shape());
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  check(cudaMemcpy(host.data(), device.data(), static_cast<std::size_t>(device.nbytes()),
                   cudaMemcpyDeviceToHost),
        "cudaMemcpy to host");
  return host;
}

using kernel_cases::mismatched_bytes;

}  // namespace breccia::cuda_test
