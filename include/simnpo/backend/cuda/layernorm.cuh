#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cuda {

// Sum over the 32 lanes of a warp, returned to every lane.
template <class T>
__device__ T warp_sum(T value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

inline constexpr int warps_per_block = block_threads / 32;

// One warp per row (simnpo/backend/cpu/layernorm.hpp has the formulas); two
// passes over the row, as on the CPU, against cancellation when |mean| >> spread.
template <class S>
__global__ void layernorm_forward_kernel(S* out, S* mean, S* rstd, const S* inp, const S* weight, const S* bias,
                                         std::int64_t N, std::int64_t C, S eps) {
    const std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const S* x = inp + n * C;
    S sum = 0;
    for (std::int64_t c = lane; c < C; c += 32) sum += x[c];
    const S m = warp_sum(sum) / static_cast<S>(C);
    S squares = 0;
    for (std::int64_t c = lane; c < C; c += 32) squares += (x[c] - m) * (x[c] - m);
    const S s = S{1} / sqrt(warp_sum(squares) / static_cast<S>(C) + eps);
    S* y = out + n * C;
    for (std::int64_t c = lane; c < C; c += 32) y[c] = (x[c] - m) * s * weight[c] + bias[c];
    if (lane == 0) {
        mean[n] = m;
        rstd[n] = s;
    }
}

// dinp [N, C] += rstd · (dnorm − mean(dnorm) − x̂ · mean(dnorm · x̂)), dnorm = dout · weight; a warp per row.
template <class S>
__global__ void layernorm_backward_input_kernel(S* dinp, const S* dout, const S* inp, const S* weight, const S* mean,
                                                const S* rstd, std::int64_t N, std::int64_t C) {
    const std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const S* dy = dout + n * C;
    const S* x = inp + n * C;
    const S m = mean[n], s = rstd[n];
    S dnorm_sum = 0, dnorm_xhat_sum = 0;
    for (std::int64_t c = lane; c < C; c += 32) {
        const S dnorm = dy[c] * weight[c];
        dnorm_sum += dnorm;
        dnorm_xhat_sum += dnorm * (x[c] - m) * s;
    }
    const S dnorm_mean = warp_sum(dnorm_sum) / static_cast<S>(C);
    const S dnorm_xhat_mean = warp_sum(dnorm_xhat_sum) / static_cast<S>(C);
    S* dx = dinp + n * C;
    for (std::int64_t c = lane; c < C; c += 32) {
        const S xhat = (x[c] - m) * s;
        dx[c] += s * (dy[c] * weight[c] - dnorm_mean - xhat * dnorm_xhat_mean);
    }
}

inline constexpr std::int64_t layernorm_chunk_rows = 128;

// Per chunk of rows: partial [chunk, 0:C] = Σ dout · x̂, partial [chunk, C:2C] = Σ dout; a thread per column.
template <class S>
__global__ void layernorm_backward_params_kernel(S* partial, const S* dout, const S* inp, const S* mean, const S* rstd,
                                                 std::int64_t N, std::int64_t C) {
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t chunk = blockIdx.y;
    if (c >= C) return;
    const std::int64_t first = chunk * layernorm_chunk_rows, last = min(N, first + layernorm_chunk_rows);
    S dweight = 0, dbias = 0;
    for (std::int64_t n = first; n < last; ++n) {
        const S dy = dout[n * C + c];
        dweight += dy * (inp[n * C + c] - mean[n]) * rstd[n];
        dbias += dy;
    }
    partial[chunk * 2 * C + c] = dweight;
    partial[chunk * 2 * C + C + c] = dbias;
}

// The chunks' partial sums in chunk order, stored or added into dweight and dbias.
template <class S>
__global__ void layernorm_backward_finish_kernel(S* dweight, S* dbias, const S* partial, std::int64_t chunks,
                                                 std::int64_t C, bool accumulate) {
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    S dw = 0, db = 0;
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
        dw += partial[chunk * 2 * C + c];
        db += partial[chunk * 2 * C + C + c];
    }
    dweight[c] = accumulate ? dweight[c] + dw : dw;
    dbias[c] = accumulate ? dbias[c] + db : db;
}

// out [N, C] = (inp − mean) · rstd · weight + bias; caches mean [N] and rstd [N].
template <class S>
void layernorm_forward(Tag, S* out, S* mean, S* rstd, const S* inp, const S* weight, const S* bias, std::int64_t N,
                       std::int64_t C, double eps) {
    require_float<S>();
    layernorm_forward_kernel<<<grid_for(N, warps_per_block), block_threads, 0, stream()>>>(
        out, mean, rstd, inp, weight, bias, N, C, static_cast<S>(eps));
    SIMNPO_CUDA_LAUNCHED("layernorm_forward_kernel");
}

// Accumulates dinp [N, C] from dout [N, C]; stores (per `store`) dweight [C] and
// dbias [C], summed over fixed chunks of rows in order (run-to-run identical).
template <class S>
void layernorm_backward(Tag, S* dinp, S* dweight, S* dbias, const S* dout, const S* inp, const S* weight,
                        const S* mean, const S* rstd, std::int64_t N, std::int64_t C, GradStore store) {
    require_float<S>();
    layernorm_backward_input_kernel<<<grid_for(N, warps_per_block), block_threads, 0, stream()>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    SIMNPO_CUDA_LAUNCHED("layernorm_backward_input_kernel");
    const std::int64_t chunks = (N + layernorm_chunk_rows - 1) / layernorm_chunk_rows;
    auto* partial = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(chunks * 2 * C) * sizeof(S)));
    layernorm_backward_params_kernel<<<dim3(grid_for(C), static_cast<unsigned>(chunks)), block_threads, 0, stream()>>>(
        partial, dout, inp, mean, rstd, N, C);
    SIMNPO_CUDA_LAUNCHED("layernorm_backward_params_kernel");
    layernorm_backward_finish_kernel<<<grid_for(C), block_threads, 0, stream()>>>(dweight, dbias, partial, chunks, C,
                                                                                  store == GradStore::accumulate);
    SIMNPO_CUDA_LAUNCHED("layernorm_backward_finish_kernel");
}

}  // namespace simnpo::backend::cuda
