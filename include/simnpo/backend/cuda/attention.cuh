#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/backend/cuda/layernorm.cuh"
#include "simnpo/backend/cuda/matmul.cuh"
#include "simnpo/backend/cuda/softmax.cuh"

namespace simnpo::backend::cuda {

// Causal grouped-query attention as batched products: queries are first laid
// out head by head, [B, H, T, D], keys and values [B, KV, T, D]. The `group` =
// H / KV query heads that share a key/value head are then consecutive, so that
// their rows form one [group·T, D] matrix against that head's [T, D]: each
// product is one strided-batched cuBLASLt call over the B·KV key/value heads
// (GPT-2's multi-head attention is group 1), and the dk and dv products sum
// over a group's heads inside the GEMM, with no reduction of our own. Unlike
// the CPU backend, which computes each row's first lengths[b] positions only,
// the products cover all T positions and padding is masked instead: att rows of
// padded queries are zero (so are their outputs and gradients), and keys after
// the query or outside its window are zero. The masked part of each product is
// computed and thrown away, as in eager PyTorch.

// The sizes of the head-major layout: q [B, H, T, D], then k and v [B, KV, T, D].
struct HeadLayout {
    std::int64_t B, T, H, KV, D;
    std::int64_t queries() const { return B * T * H * D; }
    std::int64_t keys() const { return B * T * KV * D; }
    std::int64_t size() const { return queries() + 2 * keys(); }
};

// Where column c of row (b, t) of x [B, T, (H + 2·KV)·D] sits in the head-major
// layout (KV 0: rows of queries only).
__device__ inline std::int64_t head_major_index(std::int64_t b, std::int64_t t, int c, int T, int H, int KV, int D,
                                                std::int64_t queries, std::int64_t keys) {
    const int head = c / D, d = c % D;
    if (head < H) return ((b * H + head) * T + t) * D + d;
    if (head < H + KV) return queries + ((b * KV + head - H) * T + t) * D + d;
    return queries + keys + ((b * KV + head - H - KV) * T + t) * D + d;
}

// heads (head-major) from x; one block per row (b, t), so that the index
// arithmetic is a row's, in 32 bits, not a 64-bit division per element.
template <class S>
__global__ void split_heads_kernel(S* heads, const S* x, int T, int H, int KV, int D, std::int64_t queries,
                                   std::int64_t keys) {
    const std::int64_t row = blockIdx.x;  // b·T + t
    const std::int64_t b = row / T, t = row % T;
    const int width = (H + 2 * KV) * D;
    for (int c = threadIdx.x; c < width; c += blockDim.x)
        heads[head_major_index(b, t, c, T, H, KV, D, queries, keys)] = x[row * width + c];
}

// The way back: x = (or += with `accumulate`) heads.
template <class S>
__global__ void merge_heads_kernel(S* x, const S* heads, int T, int H, int KV, int D, std::int64_t queries,
                                   std::int64_t keys, bool accumulate) {
    const std::int64_t row = blockIdx.x;
    const std::int64_t b = row / T, t = row % T;
    const int width = (H + 2 * KV) * D;
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        const S value = heads[head_major_index(b, t, c, T, H, KV, D, queries, keys)];
        S& target = x[row * width + c];
        target = accumulate ? target + value : value;
    }
}

template <class S>
void split_heads(S* heads, const S* x, const HeadLayout& layout) {
    split_heads_kernel<<<static_cast<unsigned>(layout.B * layout.T), block_threads, 0, stream()>>>(
        heads, x, static_cast<int>(layout.T), static_cast<int>(layout.H), static_cast<int>(layout.KV),
        static_cast<int>(layout.D), layout.queries(), layout.keys());
    SIMNPO_CUDA_LAUNCHED("split_heads_kernel");
}

template <class S>
void merge_heads(S* x, const S* heads, const HeadLayout& layout, bool accumulate) {
    merge_heads_kernel<<<static_cast<unsigned>(layout.B * layout.T), block_threads, 0, stream()>>>(
        x, heads, static_cast<int>(layout.T), static_cast<int>(layout.H), static_cast<int>(layout.KV),
        static_cast<int>(layout.D), layout.queries(), layout.keys(), accumulate);
    SIMNPO_CUDA_LAUNCHED("merge_heads_kernel");
}

// The first key that query i sees (window 0: no limit), as on the CPU.
__host__ __device__ inline std::int64_t first_key(std::int64_t i, std::int64_t window) {
    return window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
}

// att [B, H, T, T]: row i of head (b, h), one warp per row, becomes the
// softmax over the keys it sees, first_key(i, window) <= j <= i, of its scores,
// zero elsewhere; zero throughout for a padded query (i >= lengths[b]). The row
// stays in registers, PerLane values a lane (T <= 32·PerLane): each score is
// read once, each probability written once.
template <class S, int PerLane>
__global__ void causal_softmax_kernel(S* att, const std::int64_t* lengths, std::int64_t B, std::int64_t H,
                                      std::int64_t T, std::int64_t window) {
    const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= B * H * T) return;
    const std::int64_t i = row % T, b = row / (H * T);
    S* p = att + row * T;
    if (i >= lengths[b]) {
        for (std::int64_t j = lane; j < T; j += 32) p[j] = 0;
        return;
    }
    const std::int64_t first = first_key(i, window);
    S values[PerLane];
    S row_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        const std::int64_t j = lane + 32 * k;
        values[k] = first <= j && j <= i ? p[j] : -INFINITY;
        row_max = max(row_max, values[k]);
    }
    for (int offset = 16; offset > 0; offset /= 2) row_max = max(row_max, __shfl_xor_sync(0xffffffffu, row_max, offset));
    S sum = 0;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        const std::int64_t j = lane + 32 * k;
        values[k] = first <= j && j <= i ? exp(values[k] - row_max) : S{0};
        sum += values[k];
    }
    const S inverse = S{1} / warp_sum(sum);
#pragma unroll
    for (int k = 0; k < PerLane; ++k)
        if (lane + 32 * k < T) p[lane + 32 * k] = values[k] * inverse;
}

// The softmax's backward in place: dscores = scale · P ∘ (dP − rowsum(P ∘ dP)),
// with P = att and dP = datt [B, H, T, T]; one warp per row, in registers as
// above. Where P is zero by the mask (keys after the query or outside its
// window, padded queries) dscores is zero and neither input is read.
template <class S, int PerLane>
__global__ void softmax_backward_kernel(S* datt, const S* att, const std::int64_t* lengths, std::int64_t B,
                                        std::int64_t H, std::int64_t T, std::int64_t window, S scale) {
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
    const std::int64_t first = first_key(i, window);
    S probabilities[PerLane], gradients[PerLane];
    S dot = 0;
#pragma unroll
    for (int k = 0; k < PerLane; ++k) {
        const std::int64_t j = lane + 32 * k;
        const bool seen = first <= j && j <= i;
        probabilities[k] = seen ? p[j] : S{0};
        gradients[k] = seen ? dp[j] : S{0};
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
//   out [B, T, H·D], att [B, H, T, T] (here every row in full, zeros where masked), qkv [B, T, (H + 2·KV)·D].
template <class S>
void attention_forward(Tag tag, S* out, S* att, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                       std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D, std::int64_t window) {
    require_float<S>();
    if (B * T == 0) return;
    const HeadLayout layout{B, T, H, KV, D};
    const std::int64_t group = H / KV, GT = group * T;
    auto* q = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(layout.size() + layout.queries()) * sizeof(S)));
    S *k = q + layout.queries(), *v = k + layout.keys(), *y = v + layout.keys();
    split_heads(q, qkv, layout);
    const int kv_heads = static_cast<int>(B * KV);
    // scores = q · kᵀ / √D: per key/value head, its group's [group·T, D] queries against its [T, D] keys
    gemm(tag, {.transpose_b = true, .M = GT, .N = T, .K = D, .A = q, .lda = D, .B = k, .ldb = D, .C = att, .ldc = T,
               .batch = kv_heads, .stride_a = GT * D, .stride_b = T * D, .stride_c = GT * T,
               .alpha = 1.0f / std::sqrt(static_cast<float>(D))});
    launch_by_row_length(T, [&](auto per_lane) {
        causal_softmax_kernel<S, decltype(per_lane)::value><<<grid_for(B * H * T, warps_per_block), block_threads, 0, stream()>>>(
            att, lengths, B, H, T, window);
    });
    SIMNPO_CUDA_LAUNCHED("causal_softmax_kernel");
    gemm(tag, {.M = GT, .N = D, .K = T, .A = att, .lda = T, .B = v, .ldb = D, .C = y, .ldc = D, .batch = kv_heads,
               .stride_a = GT * T, .stride_b = T * D, .stride_c = GT * D});
    merge_heads(out, y, {B, T, H, 0, D}, false);
}

// Accumulates dqkv [B, T, (H + 2·KV)·D] from dout [B, T, H·D], given the forward's qkv and att.
template <class S>
void attention_backward(Tag tag, S* dqkv, const S* dout, const S* qkv, const S* att, const std::int64_t* lengths,
                        std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D,
                        std::int64_t window) {
    require_float<S>();
    if (B * T == 0) return;
    const HeadLayout layout{B, T, H, KV, D};
    const std::int64_t group = H / KV, GT = group * T, TD = T * D;
    // q, k, v; dy; dq, dk, dv (laid out as q, k, v, for merge_heads); datt
    const std::size_t bytes = static_cast<std::size_t>(2 * layout.size() + layout.queries() + B * H * T * T) * sizeof(S);
    auto* q = static_cast<S*>(Context::get().scratch(bytes));
    S *k = q + layout.queries(), *v = k + layout.keys(), *dy = v + layout.keys();
    S *dq = dy + layout.queries(), *dk = dq + layout.queries(), *dv = dk + layout.keys(), *datt = dv + layout.keys();
    split_heads(q, qkv, layout);
    split_heads(dy, dout, {B, T, H, 0, D});
    const int kv_heads = static_cast<int>(B * KV);
    // dv = attᵀ · dy (summed over the group's heads by the product), datt = dy · vᵀ
    gemm(tag, {.transpose_a = true, .M = T, .N = D, .K = GT, .A = att, .lda = T, .B = dy, .ldb = D, .C = dv, .ldc = D,
               .batch = kv_heads, .stride_a = GT * T, .stride_b = GT * D, .stride_c = TD});
    gemm(tag, {.transpose_b = true, .M = GT, .N = T, .K = D, .A = dy, .lda = D, .B = v, .ldb = D, .C = datt, .ldc = T,
               .batch = kv_heads, .stride_a = GT * D, .stride_b = TD, .stride_c = GT * T});
    launch_by_row_length(T, [&](auto per_lane) {
        softmax_backward_kernel<S, decltype(per_lane)::value><<<grid_for(B * H * T, warps_per_block), block_threads, 0, stream()>>>(
            datt, att, lengths, B, H, T, window, 1.0f / std::sqrt(static_cast<float>(D)));
    });
    SIMNPO_CUDA_LAUNCHED("softmax_backward_kernel");
    // dq = dscores · k, dk = dscoresᵀ · q (summed over the group's heads)
    gemm(tag, {.M = GT, .N = D, .K = T, .A = datt, .lda = T, .B = k, .ldb = D, .C = dq, .ldc = D, .batch = kv_heads,
               .stride_a = GT * T, .stride_b = TD, .stride_c = GT * D});
    gemm(tag, {.transpose_a = true, .M = T, .N = D, .K = GT, .A = datt, .lda = T, .B = q, .ldb = D, .C = dk, .ldc = D,
               .batch = kv_heads, .stride_a = GT * T, .stride_b = GT * D, .stride_c = TD});
    merge_heads(dqkv, dq, layout, true);
}

// GPT-2's multi-head attention: qkv [B, T, 3C], out [B, T, C], H heads of C / H.
template <class S>
void attention_forward(Tag tag, S* out, S* att, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                       std::int64_t T, std::int64_t C, std::int64_t H) {
    attention_forward(tag, out, att, qkv, lengths, B, T, H, H, C / H, std::int64_t{0});
}

// Accumulates dqkv [B, T, 3C] from dout [B, T, C], given the forward's qkv and att.
template <class S>
void attention_backward(Tag tag, S* dqkv, const S* dout, const S* qkv, const S* att, const std::int64_t* lengths,
                        std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t H) {
    attention_backward(tag, dqkv, dout, qkv, att, lengths, B, T, H, H, C / H, std::int64_t{0});
}

// The trunks' attention (the CPU backend's causal_attention_forward, in
// blockwise_attention.hpp): here the materialising kernels, whose cache is att
// [B, H, T, T]; the backward does not need the forward's out.
inline std::int64_t causal_attention_cache_size(Tag, std::int64_t B, std::int64_t H, std::int64_t T) {
    return B * H * T * T;
}

template <class S>
void causal_attention_forward(Tag tag, S* out, S* cache, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                              std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D, std::int64_t window) {
    attention_forward(tag, out, cache, qkv, lengths, B, T, H, KV, D, window);
}

template <class S>
void causal_attention_backward(Tag tag, S* dqkv, const S* dout, const S* qkv, const S*, const S* cache,
                               const std::int64_t* lengths, std::int64_t B, std::int64_t T, std::int64_t H,
                               std::int64_t KV, std::int64_t D, std::int64_t window) {
    attention_backward(tag, dqkv, dout, qkv, cache, lengths, B, T, H, KV, D, window);
}

// One query against a cache, a block per query head: scores [H, visible] in
// scratch, softmax by block reductions, then out [h, d] = Σ_j p_j · v[j, d] in key order.
template <class S>
__global__ void attention_decode_kernel(S* out, S* scores, const S* q, const S* keys, const S* values, std::int64_t n,
                                        int H, int KV, int D, std::int64_t first, S scale) {
    const int h = blockIdx.x, kv = h / (H / KV);
    const std::int64_t visible = n - first, stride = static_cast<std::int64_t>(KV) * D;
    S* p = scores + h * visible;
    const S* query = q + h * D;
    S largest = -INFINITY;
    for (std::int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
        const S* key = keys + (first + j) * stride + kv * D;
        S dot = 0;
        for (int d = 0; d < D; ++d) dot += query[d] * key[d];
        p[j] = dot * scale;
        largest = max(largest, p[j]);
    }
    largest = block_reduce(largest, MaxOp{});
    S sum = 0;
    for (std::int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
        p[j] = exp(p[j] - largest);
        sum += p[j];
    }
    const S inverse = S{1} / block_reduce(sum, SumOp{});  // its barrier also publishes every p[j] to the block
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        S total = 0;
        for (std::int64_t j = 0; j < visible; ++j) total += p[j] * inverse * values[(first + j) * stride + kv * D + d];
        out[h * D + d] = total;
    }
}

// The CPU backend's attention_decode: out [H·D] from q [H·D] at position n − 1 and keys, values [n, KV·D].
template <class S>
void attention_decode(Tag, S* out, const S* q, const S* keys, const S* values, std::int64_t n, std::int64_t H,
                      std::int64_t KV, std::int64_t D, std::int64_t window) {
    require_float<S>();
    const std::int64_t first = first_key(n - 1, window);
    auto* scores = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(H * (n - first)) * sizeof(S)));
    attention_decode_kernel<<<static_cast<unsigned>(H), block_threads, 0, stream()>>>(
        out, scores, q, keys, values, n, static_cast<int>(H), static_cast<int>(KV), static_cast<int>(D), first,
        S{1} / std::sqrt(static_cast<S>(D)));
    SIMNPO_CUDA_LAUNCHED("attention_decode_kernel");
}

}  // namespace simnpo::backend::cuda
