#include "cuda/runtime.hpp"

#include "breccia/error.hpp"
#include "cuda/device_numerics.cuh"

namespace breccia::kernels::cuda {

bool built() { return true; }

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

void check_launch(std::string_view kernel) { check(cudaGetLastError(), kernel); }

std::shared_ptr<void> scratch(const Context& context, std::int64_t bytes, Device device) {
  if (context.allocator == nullptr) {
    fail<DeviceError>("allocator: CUDA ops need the caller's allocator for ", device,
                      " (pass one in CastOptions / the op's allocator argument), got none");
  }
  if (bytes == 0) return nullptr;
  std::shared_ptr<void> memory = context.allocator->allocate(bytes, device);
  if (memory == nullptr) fail<DeviceError>("allocator: expected ", bytes, " bytes on ", device, ", got null");
  return memory;
}

void require_cuda(const Array& array, std::string_view argument) {
  if (array.device().kind != Device::Kind::kCUDA) {
    fail<DeviceError>(argument, ": expected an array on a CUDA device, got ", array.device());
  }
}

DeviceGuard::DeviceGuard(Device device) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device.id) check(cudaSetDevice(device.id), "cudaSetDevice");
}

DeviceGuard::~DeviceGuard() { cudaSetDevice(previous_); }

namespace {

__global__ void nvfp4_global_scale_kernel(float* global_scale) {
  const float amax = *global_scale;
  // x86 divides a NaN into the same NaN, quieted; the GPU would write a canonical one.
  *global_scale = cuda_detail::is_nan(amax) ? cuda_detail::quiet(amax) : numerics::nvfp4_global_scale(amax);
}

}  // namespace

void finish_nvfp4_global_scale(float* global_scale, cudaStream_t stream) {
  nvfp4_global_scale_kernel<<<1, 1, 0, stream>>>(global_scale);
  check_launch("nvfp4_global_scale_kernel");
}

}  // namespace detail
}  // namespace breccia::kernels::cuda
