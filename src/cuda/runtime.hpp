// CUDA runtime plumbing shared by the kernels: error checks that throw breccia errors, the
// caller's stream and allocator, and device checks.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "breccia/array.hpp"
#include "breccia/kernels/cuda.hpp"

namespace breccia::kernels::cuda::detail {

// Throws DeviceError naming `what` and CUDA's message unless status is cudaSuccess.
void check(cudaError_t status, std::string_view what);
// Checks the last launch (configuration errors surface here, faults at the next sync).
void check_launch(std::string_view kernel);

inline cudaStream_t stream_of(const Context& context) {
  return static_cast<cudaStream_t>(context.stream);
}

// Temporary device memory from the caller's allocator, for work enqueued on the context's
// stream: when the owner goes it is kept for the next call on that stream (stream order makes
// that safe before the kernel finishes), except under CUDA-graph capture and above 64 MiB
// (release_scratch() gives the kept blocks back).
std::shared_ptr<void> scratch(const Context& context, std::int64_t bytes, Device device);

// Per-device caches hold this many devices; device_slot() is a device's index into one, and
// throws DeviceError naming `what` for ids outside it.
inline constexpr int kMaxDevices = 64;
std::size_t device_slot(Device device, std::string_view what);

// The number of SMs of a CUDA device (asked once per device, then cached).
int sm_count(Device device);

// Throws DeviceError unless `array` lives on a CUDA device.
void require_cuda(const Array& array, std::string_view argument);

// Makes `device` current for the scope (kernels launch on the data's device).
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// NVFP4: writes amax / 2688 of the tensor amax held as bits at `amax_bits` into each of
// `global_scales` (one thread; `amax_bits` may be one of them).
void finish_nvfp4_global_scale(const std::uint32_t* amax_bits,
                               std::span<float* const> global_scales, cudaStream_t stream);

}  // namespace breccia::kernels::cuda::detail
