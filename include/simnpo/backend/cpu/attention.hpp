#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// Causal multi-head attention over right-padded rows. For row b only the first
// lengths[b] positions are computed, so padding is never attended to; the
// padded rows of out are set to zero (the projections after it read them, and
// their gradients multiply them). att outside each n x n block is never read.
//   out [B, T, C]     attention output, heads side by side
//   att [B, H, T, T]  softmax probabilities (cache for the backward)
//   qkv [B, T, 3C]    queries, keys, values from c_attn
template <class S>
void attention_forward(Tag, S* out, S* att, const S* qkv, const std::int64_t* lengths,
                       std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t H) {
    const std::int64_t D = C / H;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // Eigen's products may allocate a workspace
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t h = 0; h < H; ++h) errors.run([&] {
            const std::int64_t n = lengths[b];
            const S* base = qkv + b * T * 3 * C + h * D;
            const auto q = matrix(base, n, D, 3 * C);
            const auto k = matrix(base + C, n, D, 3 * C);
            const auto v = matrix(base + 2 * C, n, D, 3 * C);
            auto p = matrix(att + (b * H + h) * T * T, n, n, T);
            p.noalias() = (q * k.transpose()) * scale;
            for (std::int64_t i = 0; i < n; ++i) {
                auto visible = p.row(i).head(i + 1).array();  // causal: keys j <= i
                visible = (visible - visible.maxCoeff()).exp();
                visible /= visible.sum();
                p.row(i).tail(n - i - 1).setZero();
            }
            matrix(out + b * T * C + h * D, n, D, C).noalias() = p * v;
            matrix(out + (b * T + n) * C + h * D, T - n, D, C).setZero();
        });
    }
    errors.rethrow();
}

// Accumulates dqkv [B, T, 3C] from dout [B, T, C], given the forward's qkv and att.
template <class S>
void attention_backward(Tag, S* dqkv, const S* dout, const S* qkv, const S* att,
                        const std::int64_t* lengths, std::int64_t B, std::int64_t T, std::int64_t C,
                        std::int64_t H) {
    const std::int64_t D = C / H;
    const S scale = S{1} / std::sqrt(static_cast<S>(D));
    RegionErrors errors;  // Eigen's products may allocate a workspace
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t h = 0; h < H; ++h) errors.run([&] {
            const std::int64_t n = lengths[b];
            const S* base = qkv + b * T * 3 * C + h * D;
            S* dbase = dqkv + b * T * 3 * C + h * D;
            const auto q = matrix(base, n, D, 3 * C);
            const auto k = matrix(base + C, n, D, 3 * C);
            const auto v = matrix(base + 2 * C, n, D, 3 * C);
            const auto p = matrix(att + (b * H + h) * T * T, n, n, T);
            const auto dy = matrix(dout + b * T * C + h * D, n, D, C);
            matrix(dbase + 2 * C, n, D, 3 * C).noalias() += p.transpose() * dy;
            // Softmax backward: dS = P ∘ (dP − rowsum(P ∘ dP)), then the scale.
            RowMatrix<S> dscores = dy * v.transpose();
            const auto row_dot = (p.array() * dscores.array()).rowwise().sum().eval();
            dscores = (p.array() * (dscores.array().colwise() - row_dot)) * scale;
            matrix(dbase, n, D, 3 * C).noalias() += dscores * k;
            matrix(dbase + C, n, D, 3 * C).noalias() += dscores.transpose() * q;
        });
    }
    errors.rethrow();
}

}  // namespace simnpo::backend::cpu
