#pragma once
#include "simnpo/core/internal_check.hpp"

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef EIGEN_USE_BLAS
extern "C" void openblas_set_num_threads(int threads);
#endif

namespace simnpo {

// Sets the threads the CPU kernels use: OpenMP loops, Eigen's products and,
// when Eigen routes its products to it, OpenBLAS.
inline void set_threads(int threads) {
    if (threads < 1) threads = 1;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
#ifdef EIGEN_USE_BLAS
    openblas_set_num_threads(threads);
#endif
}

}  // namespace simnpo
