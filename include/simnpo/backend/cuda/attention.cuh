#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/backend/cuda/layernorm.cuh"
#include "simnpo/backend/cuda/matmul.cuh"

namespace simnpo::backend::cuda {

// Causal multi-head attention as batched products over the B·H heads: queries,
// keys and values are first laid out head by head, [B, H, T, D], so that each
// product is one strided-batched cuBLASLt call. Unlike the CPU backend, which
// computes each row's first lengths[b] positions only, the products cover all
// T positions and padding is masked instead: att rows of padded queries are
// zero (so are their outputs and gradients), and keys after the query are zero
// by causality. The masked half of each product is computed and thrown away,
// as in eager PyTorch.

// heads: `parts` arrays [B, H, T, D], n = B·T·C apart, from x [B, T, parts·C]
// (parts = 3 splits qkv into q, k, v). One block per row (b, t), so that the
// index arithmetic is a row's, in 32 bits, not a 64-bit division per element.
template <class S>
__global__ void split_heads_kernel(S* heads, const S* x, int T, int H, int D, int parts, std::int64_t n) {
    const std::int64_t row = blockIdx.x;  // b·T + t
    const std::int64_t b = row / T, t = row % T;
    const int C = H * D;
    for (int c = threadIdx.x; c < parts * C; c += blockDim.x) {
        const int part = c / C, h = (c % C) / D, d = c % D;
        heads[part * n + ((b * H + h) * T + t) * D + d] = x[row * parts * C + c];
    }
}

// The way back: x [B, T, parts·C] = (or += with `accumulate`) the `parts` arrays heads [B, H, T, D].
template <class S>
__global__ void merge_heads_kernel(S* x, const S* heads, int T, int H, int D, int parts, bool accumulate,
                                   std::int64_t n) {
    const std::int64_t row = blockIdx.x;
    const std::int64_t b = row / T, t = row % T;
    const int C = H * D;
    for (int c = threadIdx.x; c < parts * C; c += blockDim.x) {
        const int part = c / C, h = (c % C) / D, d = c % D;
        const S value = heads[part * n + ((b * H + h) * T + t) * D + d];
        S& target = x[row * parts * C + c];
        target = accumulate ? target + value : value;
    }
}

template <class S>
void split_heads(S* heads, const S* x, std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t D, int parts) {
    split_heads_kernel<<<static_cast<unsigned>(B * T), block_threads, 0, stream()>>>(
        heads, x, static_cast<int>(T), static_cast<int>(H), static_cast<int>(D), parts, B * T * H * D);
    SIMNPO_CUDA_LAUNCHED("split_heads_kernel");
}

template <class S>
void merge_heads(S* x, const S* heads, std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t D, int parts,
                 bool accumulate) {
    merge_heads_kernel<<<static_cast<unsigned>(B * T), block_threads, 0, stream()>>>(
        x, heads, static_cast<int>(T), static_cast<int>(H), static_cast<int>(D), parts, accumulate, B * T * H * D);
    SIMNPO_CUDA_LAUNCHED("merge_heads_kernel");
}

// att [B, H, T, T]: row i of head (b, h), one warp per row, becomes the
// softmax over keys j <= i of its scores, zero beyond; zero throughout for a
// padded query (i >= lengths[b]). The row stays in registers, PerLane values a
// lane (T <= 32·PerLane): each score is read once, each probability written once.
template <class S, int PerLane>
__global__ void causal_softmax_kernel(S* att, const std::int64_t* lengths, std::int64_t B, std::int64_t H,
                                      std::int64_t T) {
    const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= B * H * T) return;
    const std::int64_t i = row % T, b = row / (H * T);
    S* p = att + row * T;
    if (i >= lengths[b]) {
        for (std::int64_t j = lane; j < T; j += 32) p[j] = 0;
        return;
    }
    S values[PerLane];
    S row_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        const std::int64_t j = lane + 32 * k;
        values[k] = j <= i ? p[j] : -INFINITY;
        row_max = max(row_max, values[k]);
    }
    for (int offset = 16; offset > 0; offset /= 2) row_max = max(row_max, __shfl_xor_sync(0xffffffffu, row_max, offset));
    S sum = 0;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        values[k] = lane + 32 * k <= i ? exp(values[k] - row_max) : S{0};
        sum += values[k];
    }
    const S inverse = S{1} / warp_sum(sum);
#pragma unroll
    for (int k = 0; k < PerLane; ++k)
        if (lane + 32 * k < T) p[lane + 32 * k] = values[k] * inverse;
}

// The softmax's backward in place: dscores = scale · P ∘ (dP − rowsum(P ∘ dP)),
// with P = att and dP = datt [B, H, T, T]; one warp per row, in registers as
// above. Where P is zero by the mask (keys after the query, padded queries)
// dscores is zero and neither input is read.
template <class S, int PerLane>
__global__ void softmax_backward_kernel(S* datt, const S* att, const std::int64_t* lengths, std::int64_t B,
                                        std::int64_t H, std::int64_t T, S scale) {
    const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= B * H * T) return;
    const std::int64_t i = row % T, b = row / (H * T);
    const S* p = att + row * T;
    S* dp = datt + row * T;
    if (i >= lengths[b]) {
        for (std::int64_t j = lane; j < T; j += 32) dp[j] = 0;
        return;
    }
    S probabilities[PerLane], gradients[PerLane];
    S dot = 0;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        const std::int64_t j = lane + 32 * k;
        probabilities[k] = j <= i ? p[j] : S{0};
        gradients[k] = j <= i ? dp[j] : S{0};
        dot += probabilities[k] * gradients[k];
    }
    dot = warp_sum(dot);
#pragma unroll
    for (int k = 0; k < PerLane; ++k)
        if (lane + 32 * k < T) dp[lane + 32 * k] = scale * probabilities[k] * (gradients[k] - dot);
}

// Calls launch(std::integral_constant<int, PerLane>) with the fewest values a
// lane that hold a row of T keys (at most 1024).
template <class Launch>
void launch_by_row_length(std::int64_t T, Launch&& launch) {
    if (T <= 32) launch(std::integral_constant<int, 1>{});
    else if (T <= 64) launch(std::integral_constant<int, 2>{});
    else if (T <= 128) launch(std::integral_constant<int, 4>{});
    else if (T <= 256) launch(std::integral_constant<int, 8>{});
    else if (T <= 512) launch(std::integral_constant<int, 16>{});
    else if (T <= 1024) launch(std::integral_constant<int, 32>{});
    else fail("CUDA attention: sequences of ", T, " positions are longer than the 1024 it supports");
}

// The CPU backend's attention_forward (simnpo/backend/cpu/attention.hpp), same buffers:
//   out [B, T, C], att [B, H, T, T] (here every row in full, zeros where masked), qkv [B, T, 3C].
template <class S>
void attention_forward(Tag tag, S* out, S* att, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                       std::int64_t T, std::int64_t C, std::int64_t H) {
    require_float<S>();
    const std::int64_t D = C / H, n = B * T * C;
    auto* q = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(4 * n) * sizeof(S)));
    S *k = q + n, *v = k + n, *y = v + n;
    split_heads(q, qkv, B, T, H, D, 3);
    const int heads = static_cast<int>(B * H);
    // scores = q · kᵀ / √D, head by head
    gemm(tag, {.transpose_b = true, .M = T, .N = T, .K = D, .A = q, .lda = D, .B = k, .ldb = D, .C = att, .ldc = T,
               .batch = heads, .stride_a = T * D, .stride_b = T * D, .stride_c = T * T,
               .alpha = 1.0f / std::sqrt(static_cast<float>(D))});
    launch_by_row_length(T, [&](auto per_lane) {
        causal_softmax_kernel<S, decltype(per_lane)::value><<<grid_for(B * H * T, warps_per_block), block_threads, 0, stream()>>>(
            att, lengths, B, H, T);
    });
    SIMNPO_CUDA_LAUNCHED("causal_softmax_kernel");
    gemm(tag, {.M = T, .N = D, .K = T, .A = att, .lda = T, .B = v, .ldb = D, .C = y, .ldc = D, .batch = heads,
               .stride_a = T * T, .stride_b = T * D, .stride_c = T * D});
    merge_heads(out, y, B, T, H, D, 1, false);
}

// Accumulates dqkv [B, T, 3C] from dout [B, T, C], given the forward's qkv and att.
template <class S>
void attention_backward(Tag tag, S* dqkv, const S* dout, const S* qkv, const S* att, const std::int64_t* lengths,
                        std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t H) {
    require_float<S>();
    const std::int64_t D = C / H, n = B * T * C;
    const std::size_t bytes = static_cast<std::size_t>(7 * n + B * H * T * T) * sizeof(S);
    auto* q = static_cast<S*>(Context::get().scratch(bytes));
    S *k = q + n, *v = k + n, *dy = v + n, *dq = dy + n, *dk = dq + n, *dv = dk + n, *datt = dv + n;
    split_heads(q, qkv, B, T, H, D, 3);
    split_heads(dy, dout, B, T, H, D, 1);
    const int heads = static_cast<int>(B * H);
    const std::int64_t TD = T * D, TT = T * T;
    // dv = attᵀ · dy, datt = dy · vᵀ
    gemm(tag, {.transpose_a = true, .M = T, .N = D, .K = T, .A = att, .lda = T, .B = dy, .ldb = D, .C = dv, .ldc = D,
               .batch = heads, .stride_a = TT, .stride_b = TD, .stride_c = TD});
    gemm(tag, {.transpose_b = true, .M = T, .N = T, .K = D, .A = dy, .lda = D, .B = v, .ldb = D, .C = datt, .ldc = T,
               .batch = heads, .stride_a = TD, .stride_b = TD, .stride_c = TT});
    launch_by_row_length(T, [&](auto per_lane) {
        softmax_backward_kernel<S, decltype(per_lane)::value><<<grid_for(B * H * T, warps_per_block), block_threads, 0, stream()>>>(
            datt, att, lengths, B, H, T, 1.0f / std::sqrt(static_cast<float>(D)));
    });
    SIMNPO_CUDA_LAUNCHED("softmax_backward_kernel");
    // dq = dscores · k, dk = dscoresᵀ · q
    gemm(tag, {.M = T, .N = D, .K = T, .A = datt, .lda = T, .B = k, .ldb = D, .C = dq, .ldc = D, .batch = heads,
               .stride_a = TT, .stride_b = TD, .stride_c = TD});
    gemm(tag, {.transpose_a = true, .M = T, .N = D, .K = T, .A = datt, .lda = T, .B = q, .ldb = D, .C = dk, .ldc = D,
               .batch = heads, .stride_a = TT, .stride_b = TD, .stride_c = TD});
    merge_heads(dqkv, dq, B, T, H, D, 3, true);  // dq, dk, dv are n apart, as split_heads laid them out
}

}  // namespace simnpo::backend::cuda
