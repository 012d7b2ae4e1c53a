// Where and how an operation runs: the allocator its outputs come from, the stream its device
// kernels run on, and which kernels may run. One value, passed from the Python front end (or a
// C++ caller) through the ops to every kernel.
#pragma once

#include <cstdint>

#include "breccia/array.hpp"

namespace breccia {

enum class KernelPreference : std::uint8_t {
  kAutomatic,  // the fastest kernels for the data's device
  kReference,  // the scalar reference kernels (the oracle); CPU data only
};

// On a GPU, scratch memory an op takes from `allocator` (at most 64 MiB a request) may be kept
// for later calls on the same stream, up to four blocks a stream, until
// kernels::cuda::release_scratch(): the memory's deleters must stay valid until then.
struct Context {
  Allocator* allocator = nullptr;  // outputs; breccia's CPU allocator when null (required on GPUs)
  void* stream = nullptr;          // CUDA: the caller's cudaStream_t (null: the default stream)
  KernelPreference kernels = KernelPreference::kAutomatic;
};

}  // namespace breccia
