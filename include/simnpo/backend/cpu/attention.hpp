#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// The first key that query i sees: keys j <= i with i − j < window (window 0: all of them).
inline std::int64_t first_visible_key(std::int64_t i, std::int64_t window) {
    return window > 0 ? std::max<std::int64_t>(0, i - window + 1) : 0;
}

// Causal grouped-query attention over right-padded rows, scale 1/√D. Each row
// of qkv [B, T, (H + 2·KV)·D] holds H query heads, then KV key heads, then KV
// value heads (GPT-2's packed c_attn output is KV = H); query head h reads
// key/value head h / (H / KV). Query i sees keys j <= i with i − j < window
// (window 0: no limit). For row b only the first lengths[b] positions are
// computed, so padding is never attended to; the padded rows of out are set to
// zero (the projections after it read them, and their gradients multiply them).
// att outside each n x n block is never read.
//   out [B, T, H·D]   attention output, heads side by side
//   att [B, H, T, T]  softmax probabilities (cache for the backward), zero where masked
template <class S>
void attention_forward(Tag, S* out, S* att, const S* qkv, const std::int64_t* lengths, std::int64_t B,
                       std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D, std::int64_t window) {
    const std::int64_t stride = (H + 2 * KV) * D, group = H / KV;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // Eigen's products may allocate a workspace
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t h = 0; h < H; ++h) errors.run([&] {
            const std::int64_t n = lengths[b];
            const S* base = qkv + b * T * stride;
            const auto q = matrix(base + h * D, n, D, stride);
            const auto k = matrix(base + (H + h / group) * D, n, D, stride);
            const auto v = matrix(base + (H + KV + h / group) * D, n, D, stride);
            auto p = matrix(att + (b * H + h) * T * T, n, n, T);
            p.noalias() = (q * k.transpose()) * scale;
            for (std::int64_t i = 0; i < n; ++i) {
                const std::int64_t first = first_visible_key(i, window);
                auto visible = p.row(i).segment(first, i + 1 - first).array();
                visible = (visible - visible.maxCoeff()).exp();
                visible /= visible.sum();
                p.row(i).head(first).setZero();
                p.row(i).tail(n - i - 1).setZero();
            }
            matrix(out + b * T * H * D + h * D, n, D, H * D).noalias() = p * v;
            matrix(out + (b * T + n) * H * D + h * D, T - n, D, H * D).setZero();
        });
    }
    errors.rethrow();
}

// Accumulates dqkv [B, T, (H + 2·KV)·D] from dout [B, T, H·D], given the
// forward's qkv and att. The query heads that share a key/value head are one
// thread's work, in head order: no two threads write the same dk or dv, and
// the sums are the same for any thread count.
template <class S>
void attention_backward(Tag, S* dqkv, const S* dout, const S* qkv, const S* att, const std::int64_t* lengths,
                        std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t KV, std::int64_t D,
                        std::int64_t window) {
    (void)window;  // att is zero outside each query's window, and so are the gradients it gives
    const std::int64_t stride = (H + 2 * KV) * D, group = H / KV;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // Eigen's products may allocate a workspace
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t g = 0; g < KV; ++g) errors.run([&] {
            const std::int64_t n = lengths[b];
            const S* base = qkv + b * T * stride;
            S* dbase = dqkv + b * T * stride;
            const auto k = matrix(base + (H + g) * D, n, D, stride);
            const auto v = matrix(base + (H + KV + g) * D, n, D, stride);
            auto dk = matrix(dbase + (H + g) * D, n, D, stride);
            auto dv = matrix(dbase + (H + KV + g) * D, n, D, stride);
            RowMatrix<S> dscores(n, n);
            for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
                const auto q = matrix(base + h * D, n, D, stride);
                const auto p = matrix(att + (b * H + h) * T * T, n, n, T);
                const auto dy = matrix(dout + b * T * H * D + h * D, n, D, H * D);
                dv.noalias() += p.transpose() * dy;
                // Softmax backward: dS = P ∘ (dP − rowsum(P ∘ dP)), then the scale.
                dscores.noalias() = dy * v.transpose();
                const auto row_dot = (p.array() * dscores.array()).rowwise().sum().eval();
                dscores = (p.array() * (dscores.array().colwise() - row_dot)) * scale;
                matrix(dbase + h * D, n, D, stride).noalias() += dscores * k;
                dk.noalias() += dscores.transpose() * q;
            }
        });
    }
    errors.rethrow();
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

// One query against a cache, for generation: out [H·D] from q [H·D] at position
// n − 1 and keys, values [n, KV·D] (positions 0 .. n − 1), with attention_forward's
// grouping, window and scale.
template <class S>
void attention_decode(Tag, S* out, const S* q, const S* keys, const S* values, std::int64_t n, std::int64_t H,
                      std::int64_t KV, std::int64_t D, std::int64_t window) {
    const std::int64_t group = H / KV, first = first_visible_key(n - 1, window), visible = n - first;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    std::vector<S> scores(static_cast<std::size_t>(H * visible));
    RegionErrors errors;  // Eigen's products may allocate a workspace
#pragma omp parallel for schedule(static)
    for (std::int64_t h = 0; h < H; ++h) errors.run([&] {
        const std::int64_t kv = h / group;
        VectorMap<S> p(scores.data() + h * visible, visible);
        p.noalias() = (matrix(keys + first * KV * D + kv * D, visible, D, KV * D) *
                       ConstVectorMap<S>(q + h * D, D).transpose()).transpose() * scale;
        p.array() = (p.array() - p.maxCoeff()).exp();
        p /= p.sum();
        VectorMap<S>(out + h * D, D).noalias() = p * matrix(values + first * KV * D + kv * D, visible, D, KV * D);
    });
    errors.rethrow();
}

}  // namespace simnpo::backend::cpu
