#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include "simnpo/backend/cuda/common.cuh"

namespace simnpo::backend::cuda {

// The kernels of simnpo/backend/cpu/rope.hpp, same signatures and meaning (the
// tables come from the host's rope_tables, copied to the device).

// One block per row of x [B·T, row_stride], a thread per pair (head k, i < D/2);
// sign = +1 is the rotation, −1 its transpose.
template <class S>
__global__ void rope_kernel(S* x, const S* cos, const S* sin, int T, int heads, int D, std::int64_t row_stride,
                            S sign) {
    const std::int64_t row = blockIdx.x;
    const int half = D / 2;
    const S* c = cos + (row % T) * half;
    const S* s = sin + (row % T) * half;
    for (int pair = threadIdx.x; pair < heads * half; pair += blockDim.x) {
        const int k = pair / half, i = pair % half;
        S* first = x + row * row_stride + k * D + i;
        const S a = first[0], b = first[half], rotated_sin = sign * s[i];
        first[0] = a * c[i] + (-b) * rotated_sin;
        first[half] = b * c[i] + a * rotated_sin;
    }
}

template <class S>
void rope_rotate(S* x, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads, std::int64_t D,
                 std::int64_t row_stride, S sign) {
    if (B * T == 0) return;
    rope_kernel<<<static_cast<unsigned>(B * T), block_threads, 0, stream()>>>(
        x, cos, sin, static_cast<int>(T), static_cast<int>(heads), static_cast<int>(D), row_stride, sign);
    SIMNPO_CUDA_LAUNCHED("rope_kernel");
}

// (x_i, x_{i+D/2}) ← (x_i·cos − x_{i+D/2}·sin, x_{i+D/2}·cos + x_i·sin) on the first `heads` heads of each row.
template <class S>
void rope_forward(Tag, S* x, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads,
                  std::int64_t D, std::int64_t row_stride) {
    require_float<S>();
    rope_rotate(x, cos, sin, B, T, heads, D, row_stride, S{1});
}

// The gradient of the same rows in place, by the transposed rotation.
template <class S>
void rope_backward(Tag, S* dx, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads,
                   std::int64_t D, std::int64_t row_stride) {
    require_float<S>();
    rope_rotate(dx, cos, sin, B, T, heads, D, row_stride, S{-1});
}

}  // namespace simnpo::backend::cuda
