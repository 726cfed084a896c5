# The CUDA backend's build: SIMNPO_WITH_CUDA is AUTO (on when nvcc is found), ON
# (an error without nvcc) or OFF. When on, the CUDA language is enabled and the
# INTERFACE target simnpo::cuda (simnpo::simnpo + cudart + cuBLASLt) is defined
# for sources that include <simnpo/cuda.hpp>. Sets SIMNPO_CUDA_ENABLED.
set(SIMNPO_CUDA_ENABLED OFF)
if(NOT SIMNPO_WITH_CUDA MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "SIMNPO_WITH_CUDA must be AUTO, ON or OFF, got '${SIMNPO_WITH_CUDA}'")
endif()

if(NOT SIMNPO_WITH_CUDA STREQUAL "OFF")
    # CUDA's default location, which is not on PATH on Debian.
    if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
        set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
    endif()
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
        # Hopper's machine code, plus PTX that the driver compiles for any GPU from Ampere on.
        if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
            set(CMAKE_CUDA_ARCHITECTURES "90-real;80-virtual")
        endif()
        enable_language(CUDA)
        find_package(CUDAToolkit REQUIRED)
        set(SIMNPO_CUDA_ENABLED ON)
    elseif(SIMNPO_WITH_CUDA STREQUAL "ON")
        message(FATAL_ERROR "SIMNPO_WITH_CUDA is ON but no CUDA compiler was found: set CUDACXX to nvcc's path")
    endif()
endif()
message(STATUS "simnpo: CUDA backend programs: ${SIMNPO_CUDA_ENABLED}")

if(SIMNPO_CUDA_ENABLED)
    add_library(simnpo_cuda INTERFACE)
    add_library(simnpo::cuda ALIAS simnpo_cuda)
    set_target_properties(simnpo_cuda PROPERTIES EXPORT_NAME cuda)
    target_link_libraries(simnpo_cuda INTERFACE simnpo CUDA::cudart CUDA::cublasLt)
    target_compile_options(simnpo_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:
        # CMake 3.25 does not know nvcc 13's C++20 support (cuda_std_20): asked for directly.
        -std=c++20
        # Eigen's host-device annotations on defaulted members (#20012) and its
        # constexpr calls across the host-device line: Eigen's, not ours.
        --expt-relaxed-constexpr -diag-suppress=20012
        # The CPU kernels in the same file keep their OpenMP threads.
        -Xcompiler=-fopenmp>)
endif()
