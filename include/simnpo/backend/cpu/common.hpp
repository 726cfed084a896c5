#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "simnpo/core/threads.hpp"

namespace simnpo::backend::cpu {

// The CPU backend's tag. Model code passes it to every kernel, so that the
// kernels of a backend are found by argument-dependent lookup.
struct Tag {
    template <class T>
    using Buffer = std::vector<T, Eigen::aligned_allocator<T>>;
};

template <class S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using MatrixMap = Eigen::Map<RowMatrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class S>
using ConstMatrixMap = Eigen::Map<const RowMatrix<S>, 0, Eigen::OuterStride<>>;
template <class S>
using VectorMap = Eigen::Map<Eigen::Matrix<S, 1, Eigen::Dynamic>>;
template <class S>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<S, 1, Eigen::Dynamic>>;

template <class S>
using ArrayMap = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <class S>
using ConstArrayMap = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

// Runs body(begin, end) over [0, n) split into one contiguous chunk per
// thread, so that each chunk is one vectorised Eigen expression.
template <class Body>
void parallel_chunks(std::int64_t n, Body&& body) {
    RegionErrors errors;  // a product's workspace may fail to allocate
#pragma omp parallel
    {
#ifdef _OPENMP
        const std::int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
#else
        const std::int64_t threads = 1, thread = 0;
#endif
        const std::int64_t begin = n * thread / threads, end = n * (thread + 1) / threads;
        if (end > begin) errors.run([&] { body(begin, end); });
    }
    errors.rethrow();
}

// Zeroing the gradient slab is memory-bound: two threads halve it.
template <class T>
void fill_zero(Tag, T* data, std::size_t n) {
    parallel_chunks(static_cast<std::int64_t>(n),
                    [&](std::int64_t begin, std::int64_t end) { std::fill(data + begin, data + end, T{}); });
}

// A rows x cols row-major view whose rows are `stride` elements apart.
template <class S>
MatrixMap<S> matrix(S* data, std::int64_t rows, std::int64_t cols, std::int64_t stride = -1) {
    return MatrixMap<S>(data, rows, cols, Eigen::OuterStride<>(stride < 0 ? cols : stride));
}
template <class S>
ConstMatrixMap<S> matrix(const S* data, std::int64_t rows, std::int64_t cols, std::int64_t stride = -1) {
    return ConstMatrixMap<S>(data, rows, cols, Eigen::OuterStride<>(stride < 0 ? cols : stride));
}

template <class T>
void copy_to_device(Tag, T* device, std::span<const T> host) {
    std::copy(host.begin(), host.end(), device);
}

template <class T>
void copy_to_host(Tag, std::span<T> host, const T* device) {
    std::copy_n(device, host.size(), host.begin());
}

template <class T>
void copy_on_device(Tag, T* destination, const T* source, std::size_t n) {
    std::copy_n(source, n, destination);
}

}  // namespace simnpo::backend::cpu

namespace simnpo {
using cpu = backend::cpu::Tag;
}
