#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <exception>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "simnpo/core/error.hpp"

namespace simnpo {

// The cores this machine has (at least 1).
inline int core_count() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

// The most threads set_threads accepts: 4 per core, at most 256. More only take
// turns on the cores, and each costs a stack and BLAS buffers: 1024 threads on
// 2 cores under an address-space limit (ulimit -v) made train hang.
inline int max_threads() { return std::min(256, 4 * core_count()); }

// Sets the threads the CPU kernels use (fewer than 1 means 1). Products are
// split across the same OpenMP team (backend/cpu/matmul.hpp), so this is the
// only pool there is. Error above max_threads().
inline void set_threads(int threads) {
    if (threads > max_threads())
        fail("set_threads: ", threads, " threads is more than the limit of ", max_threads(), " (4 per core, at most 256)");
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

// Keeps the first exception thrown in an OpenMP parallel region, to rethrow
// after it: an exception that leaves a region calls std::terminate, and one
// thread leaving early would leave the others waiting at its barrier.
class RegionErrors {
public:
    template <class Body>
    void run(Body&& body) noexcept {
        try {
            body();
        } catch (...) {
#pragma omp critical(simnpo_region_errors)
            if (!first_) first_ = std::current_exception();
        }
    }

    // Call after the region, on the thread that started it.
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::exception_ptr first_;
};

}  // namespace simnpo
