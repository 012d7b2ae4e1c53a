# The CUDA kernels (src/cuda), their GoogleTest binary (tests/cuda) and benchmark (bench/cuda).
# Included from the top-level CMakeLists.txt when BRECCIA_CUDA is on.
#
# Targets sm_90a (Hopper's wgmma/TMA) plus compute_90 PTX, which newer GPUs JIT-compile (the
# block-scaling kernels run there; the CUTLASS GEMMs need sm_90a and report so elsewhere).
#
# CUTLASS (header-only) is never downloaded: it is looked for in BRECCIA_CUTLASS_DIR, then
# $CUTLASS_DIR, then the checkout's .cutlass/ folder, then the installed `nvidia-cutlass`
# Python package (cutlass_library/source/include). Without it the GEMMs are left out and
# kernels::cuda::scaled_matmul raises UnsupportedError.

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

set(BRECCIA_CUDA_GENCODE
    "-gencode=arch=compute_90a,code=sm_90a" "-gencode=arch=compute_90,code=compute_90")
set(BRECCIA_CUTLASS_GENCODE "-gencode=arch=compute_90a,code=sm_90a")  # wgmma: sm_90a only
if(BRECCIA_CUDA_PTX_ONLY)  # a compile check: the front end and NVVM, no ptxas
  set(BRECCIA_CUDA_GENCODE "-gencode=arch=compute_90a,code=compute_90a")
  set(BRECCIA_CUTLASS_GENCODE ${BRECCIA_CUDA_GENCODE})
endif()
# --expt-relaxed-constexpr: the constexpr format rules (std::bit_cast) run on the device.
# -fmad=false: no multiply-add contraction, so the GPU rounds every product as the CPU does.
set(BRECCIA_CUDA_FLAGS --expt-relaxed-constexpr -fmad=false ${BRECCIA_CUDA_GENCODE})

# --- CUTLASS headers --------------------------------------------------------------------
set(BRECCIA_CUTLASS_DIR "" CACHE PATH "Folder holding cutlass/ and cute/ headers")
set(_cutlass_hints "${BRECCIA_CUTLASS_DIR}" "$ENV{CUTLASS_DIR}/include" "$ENV{CUTLASS_DIR}"
    "${CMAKE_CURRENT_SOURCE_DIR}/.cutlass/include")
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
            "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source', 'include'))"
    OUTPUT_VARIABLE _cutlass_python_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  list(APPEND _cutlass_hints "${_cutlass_python_include}")
endif()
find_path(BRECCIA_CUTLASS_INCLUDE cutlass/gemm/collective/collective_builder.hpp
          HINTS ${_cutlass_hints} NO_DEFAULT_PATH)
option(BRECCIA_CUTLASS_GEMM "Build the CUTLASS FP8 GEMMs (slow to compile)" ON)

# --- the kernels, compiled into libbreccia ------------------------------------------------
file(GLOB BRECCIA_CUDA_SOURCES CONFIGURE_DEPENDS src/cuda/*.cu)
add_library(breccia_cuda_objects OBJECT ${BRECCIA_CUDA_SOURCES})
target_include_directories(breccia_cuda_objects PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_compile_options(breccia_cuda_objects PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${BRECCIA_CUDA_FLAGS}>)
set_target_properties(breccia_cuda_objects PROPERTIES CUDA_ARCHITECTURES OFF
                                                      POSITION_INDEPENDENT_CODE ON)
target_sources(breccia PRIVATE $<TARGET_OBJECTS:breccia_cuda_objects>)

# The CUTLASS GEMMs: sm_90a only (wgmma has no portable PTX), one instance per file.
if(BRECCIA_CUTLASS_INCLUDE AND BRECCIA_CUTLASS_GEMM)
  message(STATUS "breccia: CUTLASS GEMMs from ${BRECCIA_CUTLASS_INCLUDE}")
  file(GLOB BRECCIA_CUTLASS_SOURCES CONFIGURE_DEPENDS src/cuda/gemm/*.cu)
  add_library(breccia_cutlass_objects OBJECT ${BRECCIA_CUTLASS_SOURCES})
  target_include_directories(breccia_cutlass_objects PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_include_directories(breccia_cutlass_objects SYSTEM PRIVATE ${BRECCIA_CUTLASS_INCLUDE})
  target_compile_options(breccia_cutlass_objects PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr ${BRECCIA_CUTLASS_GENCODE}>)
  set_target_properties(breccia_cutlass_objects PROPERTIES CUDA_ARCHITECTURES OFF
                                                           POSITION_INDEPENDENT_CODE ON)
  target_compile_definitions(breccia_cuda_objects PRIVATE BRECCIA_CUTLASS)
  target_sources(breccia PRIVATE $<TARGET_OBJECTS:breccia_cutlass_objects>)
else()
  message(STATUS "breccia: CUTLASS headers not found (or BRECCIA_CUTLASS_GEMM=OFF): no FP8 GEMMs")
endif()

target_compile_definitions(breccia PRIVATE BRECCIA_WITH_CUDA)
target_link_libraries(breccia PUBLIC CUDA::cudart)

# --- GPU tests and benchmark: run by scripts/gpu-check, not by ctest (CI has no GPU) ------
if(BRECCIA_TESTS)
  file(GLOB BRECCIA_CUDA_TEST_SOURCES CONFIGURE_DEPENDS tests/cuda/*.cu)
  add_executable(breccia-cuda-tests ${BRECCIA_CUDA_TEST_SOURCES})
  target_include_directories(breccia-cuda-tests PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR}/tests)
  target_compile_options(breccia-cuda-tests PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${BRECCIA_CUDA_FLAGS}>)
  set_target_properties(breccia-cuda-tests PROPERTIES CUDA_ARCHITECTURES OFF)
  target_link_libraries(breccia-cuda-tests PRIVATE breccia::breccia GTest::gtest_main)
endif()

# Not part of a Python package build (which turns the tests off).
if(BRECCIA_TESTS OR BRECCIA_BENCH)
  add_executable(breccia-cuda-bench bench/cuda/bench_cuda.cu)
  target_include_directories(breccia-cuda-bench PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR}/tests)
  target_compile_options(breccia-cuda-bench PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${BRECCIA_CUDA_FLAGS}>)
  set_target_properties(breccia-cuda-bench PROPERTIES CUDA_ARCHITECTURES OFF)
  target_link_libraries(breccia-cuda-bench PRIVATE breccia::breccia)
endif()
