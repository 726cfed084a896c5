#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <Eigen/Core>

#include "simnpo/backend/cpu/attention.hpp"
#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// Blockwise attention (FlashAttention's scheme, Dao et al. 2022 and 2023): the
// scores are computed a block of query rows against a block of key rows at a
// time and never stored whole, so memory is linear in T. The forward keeps a
// running max and sum per query row (online softmax) and hands the backward
// each row's log-sum-exp, from which the backward recomputes the probabilities.
//
// Rows per block, by measurement at D 64 (GPT-2 small), T 64 to 2048. The rows
// that see none of a key block stay out of its products, so only the key block
// on the diagonal wastes work (half of it masked): a small key block keeps that
// waste small, and tall query blocks keep the products large.
inline constexpr std::int64_t attention_query_block = 128;
inline constexpr std::int64_t attention_key_block = 32;

namespace detail {

// Query i's visible keys inside the key block [key, key + cols), as offsets
// into the block: [begin, end).
struct VisibleKeys {
    std::int64_t begin, end;
};

inline VisibleKeys visible_keys(std::int64_t i, std::int64_t key, std::int64_t cols, std::int64_t window) {
    return {std::max(first_visible_key(i, window), key) - key, std::min(i + 1, key + cols) - key};
}

// One past the last query that sees any of the keys [key, key + cols), up to end.
// Every query from key up to it sees at least one of them.
inline std::int64_t end_of_seeing_queries(std::int64_t key, std::int64_t cols, std::int64_t window,
                                          std::int64_t end) {
    return window > 0 ? std::min(end, key + cols - 1 + window) : end;
}

// row ← exp(row − shift) on the visible keys [begin, end) (not empty), zero on the
// rest. The exponential runs over the visible keys widened to whole SIMD packets
// (the scratch rows start aligned): Eigen would take a ragged segment's ends one
// key at a time, and the whole row wastes much of double's dear exp on masked
// keys. Masked keys inside the widened range go in as −∞, so that none
// overflows, and are zeroed after, since the vectorised exp(−∞) may be a denormal.
template <class Row, class S>
void exp_of_visible(Row row, std::int64_t begin, std::int64_t end, S shift) {
    constexpr std::int64_t packet = Eigen::internal::packet_traits<S>::size;
    const std::int64_t from = begin / packet * packet, to = std::min(row.size(), (end + packet - 1) / packet * packet);
    row.segment(from, begin - from).setConstant(-std::numeric_limits<S>::infinity());
    row.segment(end, to - end).setConstant(-std::numeric_limits<S>::infinity());
    row.segment(from, to - from) = (row.segment(from, to - from) - shift).exp();
    row.head(begin).setZero();
    row.tail(row.size() - end).setZero();
}

}  // namespace detail

// attention_forward's attention (attention.hpp: layout, grouping, causal mask,
// sliding window, scale 1/√D, right padding by lengths) without its att.
//   out [B, T, H·D]  attention output, heads side by side; padded rows zero
//   lse [B, H, T]    log Σ exp of each query row's scaled visible scores (the
//                    backward's cache); padded rows are left as they were
// Each thread takes a block of query rows of one head and runs over its key
// blocks; the rows that see none of a key block stay out of its products.
template <class S>
void blockwise_attention_forward(Tag, S* out, S* lse, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                                 std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D, std::int64_t window) {
    constexpr std::int64_t BQ = attention_query_block, BK = attention_key_block;
    const std::int64_t stride = (H + 2 * KV) * D, group = H / KV, query_blocks = (T + BQ - 1) / BQ;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // the scratch, and Eigen's products, may allocate
#pragma omp parallel
    {
        // This thread's scratch, allocated on its first block: one block of scores (then
        // probabilities), the unnormalised output rows, and each row's running max and sum.
        RowMatrix<S> scores, unnormalised;
        Eigen::Array<S, Eigen::Dynamic, 1> largest, total;
        // The last query blocks see the most keys: handing them out first balances the threads.
#pragma omp for collapse(3) schedule(dynamic)
        for (std::int64_t block = query_blocks - 1; block >= 0; --block) {
            for (std::int64_t b = 0; b < B; ++b) {
                for (std::int64_t h = 0; h < H; ++h) errors.run([&] {
                    const std::int64_t first_row = block * BQ, block_rows = std::min(BQ, T - first_row);
                    const std::int64_t rows = std::clamp(lengths[b] - first_row, std::int64_t{0}, block_rows);
                    S* o = out + (b * T + first_row) * H * D + h * D;
                    matrix(o + rows * H * D, block_rows - rows, D, H * D).setZero();
                    if (rows == 0) return;
                    scores.resize(BQ, BK);
                    unnormalised.resize(BQ, D);
                    largest.resize(BQ);
                    total.resize(BQ);
                    unnormalised.topRows(rows).setZero();
                    largest.head(rows).setConstant(-std::numeric_limits<S>::infinity());
                    total.head(rows).setZero();
                    const S* base = qkv + b * T * stride;
                    const std::int64_t end_row = first_row + rows;
                    // Key blocks before the first row's window, or after the last row, are all masked.
                    for (std::int64_t key = first_visible_key(first_row, window) / BK * BK; key < end_row; key += BK) {
                        const std::int64_t cols = std::min(BK, end_row - key);
                        const std::int64_t row_begin = std::max(first_row, key) - first_row;
                        const std::int64_t seeing =
                            detail::end_of_seeing_queries(key, cols, window, end_row) - first_row - row_begin;
                        const auto q = matrix(base + (first_row + row_begin) * stride + h * D, seeing, D, stride);
                        const auto k = matrix(base + key * stride + (H + h / group) * D, cols, D, stride);
                        const auto v = matrix(base + key * stride + (H + KV + h / group) * D, cols, D, stride);
                        auto p = matrix(scores.data(), seeing, cols, BK);
                        p.noalias() = (q * k.transpose()) * scale;
                        for (std::int64_t r = 0; r < seeing; ++r) {
                            const std::int64_t row = row_begin + r;
                            const auto [begin, end] = detail::visible_keys(first_row + row, key, cols, window);
                            // Online softmax: rescale what the earlier blocks summed to the new max.
                            const S new_largest =
                                std::max(largest(row), p.row(r).segment(begin, end - begin).maxCoeff());
                            const S rescale = std::exp(largest(row) - new_largest);
                            detail::exp_of_visible(p.row(r).array(), begin, end, new_largest);
                            total(row) = total(row) * rescale + p.row(r).sum();
                            largest(row) = new_largest;
                            unnormalised.row(row) *= rescale;
                        }
                        unnormalised.middleRows(row_begin, seeing).noalias() += p * v;
                    }
                    S* row_lse = lse + (b * H + h) * T + first_row;
                    for (std::int64_t r = 0; r < rows; ++r) {
                        VectorMap<S>(o + r * H * D, D) = unnormalised.row(r) / total(r);
                        row_lse[r] = largest(r) + std::log(total(r));
                    }
                });
            }
        }
    }
    errors.rethrow();
}

// Accumulates dqkv [B, T, (H + 2·KV)·D] from dout [B, T, H·D], given the
// forward's qkv, out and lse. The probabilities of each block are recomputed
// as exp(scores − lse), and the softmax backward's row term rowsum(P ∘ dP) is
// rowsum(dO ∘ O) (FlashAttention-2). As attention_backward, the query heads
// that share a key/value head are one thread's work, in head order, then key
// block, then query block: no two threads write the same element of dqkv, and
// the sums are the same for any thread count. The query blocks of a key block
// start at its first key, so that only its diagonal block is partly masked.
template <class S>
void blockwise_attention_backward(Tag, S* dqkv, const S* dout, const S* qkv, const S* out, const S* lse,
                                  const std::int64_t* lengths, std::int64_t B, std::int64_t T, std::int64_t H,
                                  std::int64_t KV, std::int64_t D, std::int64_t window) {
    constexpr std::int64_t BQ = attention_query_block, BK = attention_key_block;
    const std::int64_t stride = (H + 2 * KV) * D, group = H / KV;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // the scratch, and Eigen's products, may allocate
#pragma omp parallel
    {
        // This thread's scratch, allocated on its first (b, g): one block of probabilities
        // and one of their gradients (then the scores' gradients), and rowsum(dO ∘ O) per row.
        RowMatrix<S> probabilities, gradients;
        Eigen::Array<S, Eigen::Dynamic, 1> row_dot;
#pragma omp for collapse(2) schedule(dynamic)
        for (std::int64_t b = 0; b < B; ++b) {
            for (std::int64_t g = 0; g < KV; ++g) errors.run([&] {
                const std::int64_t n = lengths[b];
                probabilities.resize(BQ, BK);
                gradients.resize(BQ, BK);
                row_dot.resize(T);
                const S* base = qkv + b * T * stride;
                S* dbase = dqkv + b * T * stride;
                for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
                    const S* dy_head = dout + b * T * H * D + h * D;
                    row_dot.head(n) = (matrix(out + b * T * H * D + h * D, n, D, H * D).array() *
                                       matrix(dy_head, n, D, H * D).array()).rowwise().sum();
                    const S* row_lse = lse + (b * H + h) * T;
                    for (std::int64_t key = 0; key < n; key += BK) {
                        const std::int64_t cols = std::min(BK, n - key);
                        const auto k = matrix(base + key * stride + (H + g) * D, cols, D, stride);
                        const auto v = matrix(base + key * stride + (H + KV + g) * D, cols, D, stride);
                        auto dk = matrix(dbase + key * stride + (H + g) * D, cols, D, stride);
                        auto dv = matrix(dbase + key * stride + (H + KV + g) * D, cols, D, stride);
                        const std::int64_t end_query = detail::end_of_seeing_queries(key, cols, window, n);
                        for (std::int64_t query = key; query < end_query; query += BQ) {
                            const std::int64_t rows = std::min(BQ, end_query - query);
                            const auto q = matrix(base + query * stride + h * D, rows, D, stride);
                            const auto dy = matrix(dy_head + query * H * D, rows, D, H * D);
                            auto dq = matrix(dbase + query * stride + h * D, rows, D, stride);
                            auto p = matrix(probabilities.data(), rows, cols, BK);
                            auto dscores = matrix(gradients.data(), rows, cols, BK);
                            p.noalias() = (q * k.transpose()) * scale;
                            dscores.noalias() = dy * v.transpose();
                            for (std::int64_t r = 0; r < rows; ++r) {
                                const auto [begin, end] = detail::visible_keys(query + r, key, cols, window);
                                detail::exp_of_visible(p.row(r).array(), begin, end, row_lse[query + r]);
                                // Softmax backward: dS = P ∘ (dP − rowsum(P ∘ dP)), then the scale.
                                dscores.row(r).array() =
                                    p.row(r).array() * (dscores.row(r).array() - row_dot(query + r)) * scale;
                            }
                            dv.noalias() += p.transpose() * dy;
                            dq.noalias() += dscores * k;
                            dk.noalias() += dscores.transpose() * q;
                        }
                    }
                }
            });
        }
    }
    errors.rethrow();
}

// The trunks' attention (model/gpt.hpp, model/llama.hpp), one interface for
// every backend: the forward leaves a cache of causal_attention_cache_size
// elements for the backward, which also reads the forward's out. On the CPU it
// is the blockwise kernel, and the cache is each query row's log-sum-exp.
inline std::int64_t causal_attention_cache_size(Tag, std::int64_t B, std::int64_t H, std::int64_t T) {
    return B * H * T;
}

template <class S>
void causal_attention_forward(Tag tag, S* out, S* cache, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                              std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D, std::int64_t window) {
    blockwise_attention_forward(tag, out, cache, qkv, lengths, B, T, H, KV, D, window);
}

template <class S>
void causal_attention_backward(Tag tag, S* dqkv, const S* dout, const S* qkv, const S* out, const S* cache,
                               const std::int64_t* lengths, std::int64_t B, std::int64_t T, std::int64_t H,
                               std::int64_t KV, std::int64_t D, std::int64_t window) {
    blockwise_attention_backward(tag, dqkv, dout, qkv, out, cache, lengths, B, T, H, KV, D, window);
}

}  // namespace simnpo::backend::cpu
