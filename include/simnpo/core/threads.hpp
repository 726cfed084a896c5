#pragma once
#include "simnpo/core/internal_check.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace simnpo {

// Sets the threads the CPU kernels use. Products are split across the same
// OpenMP team (backend/cpu/matmul.hpp), so this is the only pool there is.
inline void set_threads(int threads) {
    if (threads < 1) threads = 1;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
}

// The threads the CPU kernels use now (1 without OpenMP).
inline int thread_count() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace simnpo
