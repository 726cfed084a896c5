// simnpo's CUDA backend: <simnpo.hpp> plus Gpt<simnpo::cuda, float> on NVIDIA
// GPUs, through cuBLASLt for the products and hand-written kernels (and thrust
// for the reductions) for the rest. A file that includes it is CUDA source:
// compile it with nvcc (a .cu file, or LANGUAGE CUDA in CMake) and link
// simnpo::cuda.
#pragma once

#ifndef __CUDACC__
#error "simnpo: <simnpo/cuda.hpp> holds CUDA kernels: compile this file with nvcc (a .cu file, or LANGUAGE CUDA)"
#endif

#include <simnpo.hpp>

#define SIMNPO_UMBRELLA_INCLUDE

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/backend/cuda/matmul.cuh"
#include "simnpo/backend/cuda/layernorm.cuh"
#include "simnpo/backend/cuda/rmsnorm.cuh"
#include "simnpo/backend/cuda/rope.cuh"
#include "simnpo/backend/cuda/elementwise.cuh"
#include "simnpo/backend/cuda/attention.cuh"
#include "simnpo/backend/cuda/softmax.cuh"
#include "simnpo/backend/cuda/optimizer.cuh"

#undef SIMNPO_UMBRELLA_INCLUDE
