#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/backend/cuda/layernorm.cuh"

namespace simnpo::backend::cuda {

// The kernels of simnpo/backend/cpu/softmax.hpp, with the same signatures and
// meaning: one block per row of V logits.

// Reduction over the block (block_threads threads) with `op`, returned to every thread.
template <class T, class Op>
__device__ T block_reduce(T value, Op op) {
    __shared__ T partial[warps_per_block];
    for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = value;
    __syncthreads();
    value = partial[0];
    for (int w = 1; w < warps_per_block; ++w) value = op(value, partial[w]);
    return value;
}

struct MaxOp {
    template <class T>
    __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct SumOp {
    template <class T>
    __device__ T operator()(T a, T b) const { return a + b; }
};

// log Σ_v exp(row[v]) over a row of V, by the whole block.
template <class S>
__device__ S row_logsumexp(const S* row, std::int64_t V) {
    S row_max = -INFINITY;
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) row_max = max(row_max, row[v]);
    row_max = block_reduce(row_max, MaxOp{});
    S sum = 0;
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += exp(row[v] - row_max);
    return row_max + log(block_reduce(sum, SumOp{}));
}

template <class S>
__global__ void logsoftmax_gather_kernel(S* logprobs, S* logsumexp, const S* logits, const std::int32_t* targets,
                                         std::int64_t V) {
    const std::int64_t n = blockIdx.x;
    const S* row = logits + n * V;
    const S lse = row_logsumexp(row, V);
    if (threadIdx.x == 0) {
        logsumexp[n] = lse;
        logprobs[n] = row[targets[n]] - lse;
    }
}

template <class S>
__global__ void logprob_backward_kernel(S* dlogits, const S* logits, const S* logsumexp, const std::int32_t* targets,
                                        const S* weights, std::int64_t V) {
    const std::int64_t n = blockIdx.x;
    const S w = weights[n], lse = logsumexp[n];
    const std::int64_t target = targets[n];
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const S d = -w * exp(logits[n * V + v] - lse);
        dlogits[n * V + v] = v == target ? d + w : d;
    }
}

template <class S>
__global__ void log_softmax_kernel(S* logprobs, const S* logits, std::int64_t V) {
    const std::int64_t n = blockIdx.x;
    const S lse = row_logsumexp(logits + n * V, V);
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) logprobs[n * V + v] = logits[n * V + v] - lse;
}

template <class S>
__global__ void kl_forward_backward_kernel(S* dlogits, double* kl, const S* logits, const S* ref_logprobs, S scale,
                                           std::int64_t V) {
    const std::int64_t n = blockIdx.x;
    const S* row = logits + n * V;
    const S* ref = ref_logprobs + n * V;
    const S lse = row_logsumexp(row, V);
    double term = 0.0;
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const S log_q = row[v] - lse, p = exp(ref[v]);
        if (p > S{0}) term += static_cast<double>(p * (ref[v] - log_q));  // 0 · log 0 = 0
        dlogits[n * V + v] = scale * (exp(log_q) - p);
    }
    term = block_reduce(term, SumOp{});
    if (threadIdx.x == 0) kl[n] = term;
}

// logsumexp [N] and logprobs [N] = logits[n, targets[n]] − logsumexp[n] of logits [N, V].
template <class S>
void logsoftmax_gather(Tag, S* logprobs, S* logsumexp, const S* logits, const std::int32_t* targets, std::int64_t N,
                       std::int64_t V) {
    require_float<S>();
    if (N == 0) return;
    logsoftmax_gather_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(logprobs, logsumexp, logits,
                                                                                       targets, V);
    SIMNPO_CUDA_LAUNCHED("logsoftmax_gather_kernel");
}

// Writes dlogits [N, V] = weights[n] · (onehot(targets[n]) − softmax(logits[n])).
template <class S>
void logprob_backward(Tag, S* dlogits, const S* logits, const S* logsumexp, const std::int32_t* targets,
                      const S* weights, std::int64_t N, std::int64_t V) {
    require_float<S>();
    if (N == 0) return;
    logprob_backward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(dlogits, logits, logsumexp,
                                                                                      targets, weights, V);
    SIMNPO_CUDA_LAUNCHED("logprob_backward_kernel");
}

// Row-wise log-softmax: logprobs [N, V].
template <class S>
void log_softmax(Tag, S* logprobs, const S* logits, std::int64_t N, std::int64_t V) {
    require_float<S>();
    if (N == 0) return;
    log_softmax_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(logprobs, logits, V);
    SIMNPO_CUDA_LAUNCHED("log_softmax_kernel");
}

// kl [N] = KL(p ‖ softmax(logits)) per row (in double), p = exp(ref_logprobs);
// writes dlogits [N, V] = scale · (softmax(logits) − p).
template <class S>
void kl_forward_backward(Tag, S* dlogits, double* kl, const S* logits, const S* ref_logprobs, S scale, std::int64_t N,
                         std::int64_t V) {
    require_float<S>();
    if (N == 0) return;
    kl_forward_backward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(dlogits, kl, logits,
                                                                                         ref_logprobs, scale, V);
    SIMNPO_CUDA_LAUNCHED("kl_forward_backward_kernel");
}

}  // namespace simnpo::backend::cuda
