#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/backend/cuda/layernorm.cuh"
#include "simnpo/backend/cuda/matmul.cuh"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cuda {

// The kernels of simnpo/backend/cpu/rmsnorm.hpp (the formulas are there), same
// signatures and meaning; one warp per row, as layer norm's.

template <class S>
__global__ void rmsnorm_forward_kernel(S* out, S* rstd, const S* inp, const S* weight, std::int64_t N, std::int64_t C,
                                       S eps) {
    const std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const S* x = inp + n * C;
    S squares = 0;
    for (std::int64_t c = lane; c < C; c += 32) squares += x[c] * x[c];
    const S s = S{1} / sqrt(warp_sum(squares) / static_cast<S>(C) + eps);
    S* y = out + n * C;
    for (std::int64_t c = lane; c < C; c += 32) y[c] = (x[c] * s) * weight[c];
    if (lane == 0) rstd[n] = s;
}

// dinp [N, C] += rstd · (dnorm − x̂ · mean(dnorm · x̂)), dnorm = dout · weight, x̂ = inp · rstd.
template <class S>
__global__ void rmsnorm_backward_input_kernel(S* dinp, const S* dout, const S* inp, const S* weight, const S* rstd,
                                              std::int64_t N, std::int64_t C) {
    const std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const S* dy = dout + n * C;
    const S* x = inp + n * C;
    const S s = rstd[n];
    S dnorm_xhat_sum = 0;
    for (std::int64_t c = lane; c < C; c += 32) dnorm_xhat_sum += dy[c] * weight[c] * (x[c] * s);
    const S dnorm_xhat_mean = warp_sum(dnorm_xhat_sum) / static_cast<S>(C);
    S* dx = dinp + n * C;
    for (std::int64_t c = lane; c < C; c += 32) dx[c] += s * (dy[c] * weight[c] - (x[c] * s) * dnorm_xhat_mean);
}

// Per chunk of rows: partial [chunk, C] = Σ dout · x̂; a thread per column.
template <class S>
__global__ void rmsnorm_backward_weight_kernel(S* partial, const S* dout, const S* inp, const S* rstd, std::int64_t N,
                                               std::int64_t C) {
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t chunk = blockIdx.y;
    if (c >= C) return;
    const std::int64_t first = chunk * column_chunk_rows, last = min(N, first + column_chunk_rows);
    S dweight = 0;
    for (std::int64_t n = first; n < last; ++n) dweight += dout[n * C + c] * (inp[n * C + c] * rstd[n]);
    partial[chunk * C + c] = dweight;
}

// out [N, C] = (inp · rstd) · weight; caches rstd [N] = 1/√(mean(inp²) + eps).
template <class S>
void rmsnorm_forward(Tag, S* out, S* rstd, const S* inp, const S* weight, std::int64_t N, std::int64_t C, double eps) {
    require_float<S>();
    rmsnorm_forward_kernel<<<grid_for(N, warps_per_block), block_threads, 0, stream()>>>(out, rstd, inp, weight, N, C,
                                                                                         static_cast<S>(eps));
    SIMNPO_CUDA_LAUNCHED("rmsnorm_forward_kernel");
}

// Accumulates dinp [N, C]; stores (per `store`) dweight [C], summed over fixed
// chunks of rows in chunk order (run-to-run identical).
template <class S>
void rmsnorm_backward(Tag, S* dinp, S* dweight, const S* dout, const S* inp, const S* weight, const S* rstd,
                      std::int64_t N, std::int64_t C, GradStore store) {
    require_float<S>();
    rmsnorm_backward_input_kernel<<<grid_for(N, warps_per_block), block_threads, 0, stream()>>>(dinp, dout, inp, weight,
                                                                                                rstd, N, C);
    SIMNPO_CUDA_LAUNCHED("rmsnorm_backward_input_kernel");
    const std::int64_t chunks = (N + column_chunk_rows - 1) / column_chunk_rows;
    auto* partial = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(chunks * C) * sizeof(S)));
    if (chunks > 0) {  // a grid of no chunks is not a launch
        rmsnorm_backward_weight_kernel<<<dim3(grid_for(C), static_cast<unsigned>(chunks)), block_threads, 0, stream()>>>(
            partial, dout, inp, rstd, N, C);
        SIMNPO_CUDA_LAUNCHED("rmsnorm_backward_weight_kernel");
    }
    column_sums_finish_kernel<S><<<grid_for(C), block_threads, 0, stream()>>>(dweight, partial, chunks, C,
                                                                              store == GradStore::accumulate);
    SIMNPO_CUDA_LAUNCHED("column_sums_finish_kernel");
}

}  // namespace simnpo::backend::cuda
