// The CUTLASS 3.x/4.x Hopper GEMMs (TMA loads, wgmma, warp-specialized cooperative kernels):
// FP8 with per-tensor or DeepSeek block scales, and bf16 for the emulated block formats. Each
// src/cuda/gemm/*.cu instantiates one (operand type, output type) pair so the slow CUTLASS
// compiles run in parallel.
#pragma once

#include <array>
#include <mutex>

#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cute/tensor.hpp>
#include <cutlass/detail/blockwise_scale_layout.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>

#include "breccia/error.hpp"
#include "cuda/gemm/gemm.hpp"
#include "cuda/runtime.hpp"

namespace breccia::kernels::cuda::gemm {

using namespace cute;

// A packed stride (leading dimension, unit, batch) of CUTLASS's K-major A/B or row-major D.
template <class Stride>
Stride packed_stride(std::int64_t leading, std::int64_t batch) {
  Stride stride{};
  cute::get<0>(stride) = leading;
  cute::get<2>(stride) = batch;
  return stride;
}

// A (M x K) row-major; B (N x K) row-major (CUTLASS's column-major K x N: K-major) or, with
// LayoutB = RowMajor, K x N row-major (N-major, 16-bit types only); D (M x N) row-major.
template <class ElementA, class ElementB, class ElementD, class TileShape, class ClusterShape,
          class Schedule, class EpilogueSchedule, class LayoutSFA = void, class LayoutSFB = void,
          class LayoutB_ = cutlass::layout::ColumnMajor, class TileScheduler = void>
struct TmaGemm {
  static constexpr bool kBlockwise = !cute::is_void_v<LayoutSFA>;
  using LayoutA = cutlass::layout::RowMajor;
  using LayoutB = LayoutB_;
  using LayoutD = cutlass::layout::RowMajor;
  static constexpr int kAlignmentAB = 16;
  static constexpr int kAlignmentD = 16 / sizeof(ElementD);

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutD, kAlignmentD,
      ElementD, LayoutD, kAlignmentD, EpilogueSchedule,
      cutlass::epilogue::fusion::LinearCombination<ElementD, float, ElementD, float>>::CollectiveOp;

  using OperandA = cute::conditional_t<kBlockwise, cute::tuple<LayoutA, LayoutSFA>, LayoutA>;
  using OperandB = cute::conditional_t<kBlockwise, cute::tuple<LayoutB, LayoutSFB>, LayoutB>;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementA, OperandA, kAlignmentAB,
      ElementB, OperandB, kAlignmentAB, float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      Schedule>::CollectiveOp;

  using Kernel =
      cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, CollectiveMainloop,
                                           CollectiveEpilogue, TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// The epilogue of D = alpha * (A @ B) with no C: D row-major M x N, alpha read from the
// device, or 1 when `alpha` is null.
template <class Gemm, class ElementD>
typename Gemm::GemmKernel::EpilogueArguments epilogue_of(const Problem& p, const float* alpha) {
  using StrideD = typename Gemm::GemmKernel::StrideD;
  const StrideD stride_d = packed_stride<StrideD>(p.n, std::int64_t{p.m} * p.n);
  typename Gemm::GemmKernel::EpilogueArguments epilogue{
      {}, nullptr, stride_d, static_cast<ElementD*>(p.d), stride_d};
  if (alpha != nullptr) {
    epilogue.thread.alpha_ptr = alpha;
  } else {
    epilogue.thread.alpha = 1.0f;
  }
  epilogue.thread.beta = 0.0f;
  return epilogue;
}

// Lets the kernel take its shared memory on `device`, once per device: CUTLASS's initialize()
// would set the attribute again on every call, a driver call on the host path of each GEMM.
template <class GemmKernel>
void allow_shared_memory(Device device) {
  static std::array<std::once_flag, detail::kMaxDevices> done;
  if (GemmKernel::SharedStorageSize < (48 << 10)) return;
  std::call_once(done[detail::device_slot(device, "scaled_matmul")], [] {
    const cudaError_t status = cudaFuncSetAttribute(cutlass::device_kernel<GemmKernel>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    int{GemmKernel::SharedStorageSize});
    if (status != cudaSuccess) cudaGetLastError();  // not left for a later launch check to find
    detail::check(status, "cudaFuncSetAttribute (CUTLASS GEMM shared memory)");
  });
}

template <class Config>
void run_gemm(typename Config::Gemm::Arguments& arguments, const Context& context, Device device) {
  using Gemm = typename Config::Gemm;
  using GemmKernel = typename Gemm::GemmKernel;
  if (Gemm::can_implement(arguments) != cutlass::Status::kSuccess) {
    fail<UnsupportedError>(
        "scaled_matmul: the CUTLASS kernel cannot take M=", cute::get<0>(arguments.problem_shape),
        " N=", cute::get<1>(arguments.problem_shape), " K=", cute::get<2>(arguments.problem_shape),
        " (alignment)");
  }
  const std::size_t workspace_bytes = Gemm::get_workspace_size(arguments);
  const std::shared_ptr<void> workspace =
      detail::scratch(context, static_cast<std::int64_t>(workspace_bytes), device);
  const cudaStream_t stream = detail::stream_of(context);
  allow_shared_memory<GemmKernel>(device);
  if (GemmKernel::initialize_workspace(arguments, workspace.get(), stream) !=
      cutlass::Status::kSuccess) {
    fail<DeviceError>("scaled_matmul: CUTLASS GEMM workspace initialization failed");
  }
  typename GemmKernel::Params params =
      GemmKernel::to_underlying_arguments(arguments, workspace.get());
  if (Gemm::run(params, stream) != cutlass::Status::kSuccess)
    fail<DeviceError>("scaled_matmul: CUTLASS GEMM launch failed");
  detail::check_launch("CUTLASS FP8 GEMM");
}

// Per-tensor scales: D = (scale_a * scale_b) * (A @ B), alpha read from the device. Large
// problems: 128 x 256 tiles in 2 x 1 clusters, persistent; small ones (TileScheduler
// StreamKScheduler): 128 x 128 tiles in 1 x 2 clusters with K split across idle SMs.
template <class TileScheduler>
struct PerTensorTiles {
  using Tile = cute::Shape<_128, _256, _128>;
  using Cluster = cute::Shape<_2, _1, _1>;
};
template <>
struct PerTensorTiles<cutlass::gemm::StreamKScheduler> {
  using Tile = cute::Shape<_128, _128, _128>;
  using Cluster = cute::Shape<_1, _2, _1>;
};

template <class ElementB, class ElementD, class TileScheduler = void>
void per_tensor_gemm(const Problem& p, const Context& context, Device device) {
  using Tiles = PerTensorTiles<TileScheduler>;
  using Config = TmaGemm<cutlass::float_e4m3_t, ElementB, ElementD, typename Tiles::Tile,
                         typename Tiles::Cluster,
                         cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                         cutlass::epilogue::TmaWarpSpecializedCooperative, void, void,
                         cutlass::layout::ColumnMajor, TileScheduler>;
  using Gemm = typename Config::Gemm;
  using StrideA = typename Gemm::GemmKernel::StrideA;
  using StrideB = typename Gemm::GemmKernel::StrideB;
  typename Gemm::Arguments arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {p.m, p.n, p.k, 1},
      {static_cast<const cutlass::float_e4m3_t*>(p.a),
       packed_stride<StrideA>(p.k, std::int64_t{p.m} * p.k), static_cast<const ElementB*>(p.b),
       packed_stride<StrideB>(p.k, std::int64_t{p.n} * p.k)},
      epilogue_of<Gemm, ElementD>(p, p.alpha)};
  run_gemm<Config>(arguments, context, device);
}

// DeepSeek block scales: A 1 x 128 (K-major, M x ceil(K/128)), B 128 x 128 (K-major,
// ceil(N/128) x ceil(K/128): a weight's scales as checkpoints store them), applied in the main
// loop in fp32.
using BlockScaleConfig =
    cutlass::detail::Sm90BlockwiseScaleConfig<1, 128, 128, cute::GMMA::Major::K,
                                              cute::GMMA::Major::K>;

// TileScheduler: CUTLASS's persistent scheduler (whole output tiles), or stream-K, which also
// splits K across SMs that whole tiles would leave idle (a DeepSeek layer at M <= 128 has
// 17-56 tiles for 132 SMs); gemm_dispatch.cu picks one per problem.
template <class ElementD, class TileScheduler>
void blockwise_gemm(const Problem& p, const Context& context, Device device) {
  using LayoutSFA = decltype(BlockScaleConfig::deduce_layoutSFA());
  using LayoutSFB = decltype(BlockScaleConfig::deduce_layoutSFB());
  using Config = TmaGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, ElementD,
                         cute::Shape<_128, _128, _128>, cute::Shape<_1, _2, _1>,
                         cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8Blockwise,
                         cutlass::epilogue::TmaWarpSpecializedCooperative, LayoutSFA, LayoutSFB,
                         cutlass::layout::ColumnMajor, TileScheduler>;
  using Gemm = typename Config::Gemm;
  using StrideA = typename Gemm::GemmKernel::StrideA;
  using StrideB = typename Gemm::GemmKernel::StrideB;
  const auto shape = make_shape(p.m, p.n, p.k, 1);
  typename Gemm::Arguments arguments{cutlass::gemm::GemmUniversalMode::kGemm,
                                     {p.m, p.n, p.k, 1},
                                     {static_cast<const cutlass::float_e4m3_t*>(p.a),
                                      packed_stride<StrideA>(p.k, std::int64_t{p.m} * p.k),
                                      static_cast<const cutlass::float_e4m3_t*>(p.b),
                                      packed_stride<StrideB>(p.k, std::int64_t{p.n} * p.k),
                                      p.scale_a, BlockScaleConfig::tile_atom_to_shape_SFA(shape),
                                      p.scale_b, BlockScaleConfig::tile_atom_to_shape_SFB(shape)},
                                     epilogue_of<Gemm, ElementD>(p, nullptr)};
  run_gemm<Config>(arguments, context, device);
}

// bf16 x bf16 (the emulated block formats, dequantized to exact bf16 values): D = alpha *
// (A @ B) with alpha read from the device. Stream-K work division keeps every SM busy when
// M is small (a 128-row output has few tiles).
template <class ElementD, bool kBKMajor>
void bf16_gemm(const Problem& p, const Context& context, Device device) {
  using LayoutB =
      cute::conditional_t<kBKMajor, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;
  using Config =
      TmaGemm<cutlass::bfloat16_t, cutlass::bfloat16_t, ElementD, cute::Shape<_128, _256, _64>,
              cute::Shape<_1, _1, _1>, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
              cutlass::epilogue::TmaWarpSpecializedCooperative, void, void, LayoutB,
              cutlass::gemm::StreamKScheduler>;
  using Gemm = typename Config::Gemm;
  using StrideA = typename Gemm::GemmKernel::StrideA;
  using StrideB = typename Gemm::GemmKernel::StrideB;
  StrideB stride_b{};
  if constexpr (kBKMajor) {
    cute::get<0>(stride_b) = p.k;
  } else {
    cute::get<1>(stride_b) = p.n;
  }
  cute::get<2>(stride_b) = std::int64_t{p.n} * p.k;
  typename Gemm::Arguments arguments{cutlass::gemm::GemmUniversalMode::kGemm,
                                     {p.m, p.n, p.k, 1},
                                     {static_cast<const cutlass::bfloat16_t*>(p.a),
                                      packed_stride<StrideA>(p.k, std::int64_t{p.m} * p.k),
                                      static_cast<const cutlass::bfloat16_t*>(p.b), stride_b},
                                     epilogue_of<Gemm, ElementD>(p, p.alpha)};
  run_gemm<Config>(arguments, context, device);
}

}  // namespace breccia::kernels::cuda::gemm
