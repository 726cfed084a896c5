#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "simnpo/core/error.hpp"

namespace simnpo::backend::cuda {

// Every CUDA runtime and cuBLASLt call goes through check(): a failure is a
// simnpo::Error that names the call and CUDA's reason.
inline void check(cudaError_t status, const char* call) {
    if (status != cudaSuccess) fail("CUDA: ", call, " failed: ", cudaGetErrorString(status));
}
inline void check(cublasStatus_t status, const char* call) {
    if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt: ", call, " failed: ", cublasLtGetStatusString(status));
}
#define SIMNPO_CUDA_CHECK(call) ::simnpo::backend::cuda::check((call), #call)
// After a kernel launch: a bad configuration shows up here, not at the next call.
#define SIMNPO_CUDA_LAUNCHED(kernel) ::simnpo::backend::cuda::check(cudaGetLastError(), "launch of " kernel)

// The number of CUDA devices this process can use: 0 when there is no GPU or
// no driver (never an error, so that callers can say so plainly).
inline int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky error of a failed query
        return 0;
    }
    return count;
}

// What every kernel of the process shares: the current device's stream, on
// which all work is queued in order, a cuBLASLt handle and its workspace, and
// a scratch area for kernels that need temporary memory. Created on first use;
// with no GPU that first use is an error that says so.
class Context {
public:
    static Context& get() {
        static Context context;
        return context;
    }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    cudaStream_t stream() const { return stream_; }
    cublasLtHandle_t blas() const { return blas_; }
    void* workspace() const { return workspace_; }
    static constexpr std::size_t workspace_bytes = std::size_t{32} << 20;  // cuBLASLt's recommendation for Hopper

    // At least `bytes` of device scratch, valid until the next call. Growing it
    // waits for queued work, which may still read the old area.
    void* scratch(std::size_t bytes) {
        if (bytes > scratch_bytes_) {
            SIMNPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
            if (scratch_ != nullptr) SIMNPO_CUDA_CHECK(cudaFree(scratch_));
            scratch_ = nullptr;
            SIMNPO_CUDA_CHECK(cudaMalloc(&scratch_, bytes));
            scratch_bytes_ = bytes;
        }
        return scratch_;
    }

    // At least `bytes` of device memory in slot 0 or 1 for a product's operand
    // rounded to bfloat16 (BF16 mode), valid until the next call for that
    // slot: a backward's two activations at once. Growing waits as scratch() does.
    void* rounding_scratch(int slot, std::size_t bytes) {
        Area& area = rounding_[slot];
        if (bytes > area.bytes) {
            SIMNPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
            if (area.data != nullptr) SIMNPO_CUDA_CHECK(cudaFree(area.data));
            area = {};
            SIMNPO_CUDA_CHECK(cudaMalloc(&area.data, bytes));
            area.bytes = bytes;
        }
        return area.data;
    }

    void synchronize() const { SIMNPO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

private:
    Context() {
        if (device_count() == 0) fail("CUDA: no GPU is available to this process (the CUDA backend needs one)");
        SIMNPO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        SIMNPO_CUDA_CHECK(cublasLtCreate(&blas_));
        SIMNPO_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes));
    }
    // The process is ending: the driver reclaims everything, and errors can no longer be reported.
    ~Context() {
        if (scratch_ != nullptr) (void)cudaFree(scratch_);
        for (Area& area : rounding_)
            if (area.data != nullptr) (void)cudaFree(area.data);
        (void)cudaFree(workspace_);
        (void)cublasLtDestroy(blas_);
        (void)cudaStreamDestroy(stream_);
    }

    cudaStream_t stream_ = nullptr;
    cublasLtHandle_t blas_ = nullptr;
    void* workspace_ = nullptr;
    void* scratch_ = nullptr;
    std::size_t scratch_bytes_ = 0;
    struct Area {
        void* data = nullptr;
        std::size_t bytes = 0;
    };
    Area rounding_[2];
};

inline cudaStream_t stream() { return Context::get().stream(); }

// A std::vector-like array in device memory: what Gpt<Cuda, float> keeps its
// parameter, gradient and moment slabs and its activations in. New elements
// are zero, as a vector's are; capacity only grows, so that a model that sees
// batches of changing shape stops allocating once it has seen the largest.
// Copies are deep (device to device), queued on the context's stream.
template <class T>
class DeviceBuffer {
    static_assert(std::is_trivially_copyable_v<T>, "DeviceBuffer holds plain values");

public:
    using value_type = T;

    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t n) { resize(n); }
    DeviceBuffer(std::size_t n, T value) { assign(n, value); }
    DeviceBuffer(const DeviceBuffer& other) { *this = other; }
    DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
    DeviceBuffer& operator=(const DeviceBuffer& other) {
        if (this != &other) {
            reserve_exact(other.size_);
            size_ = other.size_;
            if (size_ > 0)
                SIMNPO_CUDA_CHECK(cudaMemcpyAsync(data_, other.data_, bytes(size_), cudaMemcpyDeviceToDevice, stream()));
        }
        return *this;
    }
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        DeviceBuffer(std::move(other)).swap(*this);
        return *this;
    }
    ~DeviceBuffer() {
        if (data_ != nullptr) (void)cudaFree(data_);  // a destructor cannot report; cudaFree waits for queued work
    }

    void swap(DeviceBuffer& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        std::swap(capacity_, other.capacity_);
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

    // Keeps the first min(size(), n) elements; new ones are zero.
    void resize(std::size_t n) {
        if (n > capacity_) {
            T* grown = allocate(n);
            if (size_ > 0)
                SIMNPO_CUDA_CHECK(cudaMemcpyAsync(grown, data_, bytes(size_), cudaMemcpyDeviceToDevice, stream()));
            release();
            data_ = grown;
            capacity_ = n;
        }
        if (n > size_) SIMNPO_CUDA_CHECK(cudaMemsetAsync(data_ + size_, 0, bytes(n - size_), stream()));
        size_ = n;
    }

    // n copies of value (zero is one memset; anything else is staged on the host).
    void assign(std::size_t n, T value) {
        reserve_exact(n);
        size_ = n;
        if (n == 0) return;
        if (value == T{}) {
            SIMNPO_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(n), stream()));
        } else {
            const std::vector<T> host(n, value);
            SIMNPO_CUDA_CHECK(cudaMemcpyAsync(data_, host.data(), bytes(n), cudaMemcpyHostToDevice, stream()));
        }
    }

private:
    static std::size_t bytes(std::size_t n) { return n * sizeof(T); }
    static T* allocate(std::size_t n) {
        Context::get();  // without a GPU, the error that says so
        void* memory = nullptr;
        const cudaError_t status = cudaMalloc(&memory, bytes(n));
        if (status != cudaSuccess) {
            (void)cudaGetLastError();
            fail("CUDA: cannot allocate ", bytes(n) >> 20, " MiB of device memory: ", cudaGetErrorString(status));
        }
        return static_cast<T*>(memory);
    }
    // Room for exactly n elements when there is less; the contents are not kept.
    void reserve_exact(std::size_t n) {
        if (n <= capacity_) return;
        T* fresh = allocate(n);
        release();
        data_ = fresh;
        capacity_ = n;
        size_ = 0;
    }
    void release() {
        if (data_ != nullptr) SIMNPO_CUDA_CHECK(cudaFree(data_));
        data_ = nullptr;
        capacity_ = size_ = 0;
    }

    T* data_ = nullptr;
    std::size_t size_ = 0, capacity_ = 0;
};

// The CUDA backend's tag (simnpo::cuda). Kernels are found by argument-dependent
// lookup, as for the CPU's. Products run in fp32 unless `tf32` is set, which lets
// cuBLASLt use TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation).
struct Tag {
    template <class T>
    using Buffer = DeviceBuffer<T>;
    bool tf32 = false;
};

// Threads per block of the element-wise kernels, and their grid for n elements.
inline constexpr int block_threads = 256;
inline unsigned grid_for(std::int64_t n, int threads = block_threads) {
    const std::int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, std::int64_t{1} << 20));
}

// Grid-stride loop over [0, n), so that any n fits the capped grid above.
#define SIMNPO_GRID_LOOP(i, n)                                                                          \
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

template <class T>
void fill_zero(Tag, T* data, std::size_t n) {
    if (n > 0) SIMNPO_CUDA_CHECK(cudaMemsetAsync(data, 0, n * sizeof(T), stream()));
}

// Host to device. From pageable memory CUDA stages the data before returning,
// so the host memory may be reused at once, without waiting for the stream.
template <class T>
void copy_to_device(Tag, T* device, std::span<const T> host) {
    if (!host.empty())
        SIMNPO_CUDA_CHECK(cudaMemcpyAsync(device, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, stream()));
}

// Device to host, after all queued work: a host round trip.
template <class T>
void copy_to_host(Tag, std::span<T> host, const T* device) {
    if (host.empty()) return;
    SIMNPO_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, host.size_bytes(), cudaMemcpyDeviceToHost, stream()));
    SIMNPO_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

template <class T>
void copy_on_device(Tag, T* destination, const T* source, std::size_t n) {
    if (n > 0)
        SIMNPO_CUDA_CHECK(cudaMemcpyAsync(destination, source, n * sizeof(T), cudaMemcpyDeviceToDevice, stream()));
}

// The backend computes in float: cuBLASLt's fp32/TF32 products and float kernels.
template <class S>
constexpr void require_float() {
    static_assert(std::is_same_v<S, float>, "simnpo: the CUDA backend computes in float (Gpt<simnpo::cuda, float>)");
}

}  // namespace simnpo::backend::cuda

namespace simnpo {
using cuda = backend::cuda::Tag;
}
