#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cpu {

// out [N, C] = (inp - mean) · rstd · weight + bias, row by row; caches the
// row mean [N] and reciprocal standard deviation rstd [N] for the backward.
template <class S>
void layernorm_forward(Tag, S* out, S* mean, S* rstd, const S* inp, const S* weight, const S* bias,
                       std::int64_t N, std::int64_t C, double eps) {
    bool overflow = false;
#pragma omp parallel for schedule(static) reduction(|| : overflow)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> x(inp + n * C, C);
        const S m = x.mean();
        const S variance = (x - m).square().mean();  // two passes: no cancellation when |mean| >> spread
        // An infinite variance would give rstd 0 and rows of bias alone: finite outputs that mean nothing.
        overflow = overflow || std::isinf(variance);
        const S s = S{1} / std::sqrt(variance + static_cast<S>(eps));
        ArrayMap<S>(out + n * C, C) = (x - m) * s * ConstArrayMap<S>(weight, C) + ConstArrayMap<S>(bias, C);
        mean[n] = m;
        rstd[n] = s;
    }
    if (overflow)
        fail("layer norm: the activations' variance overflows ", sizeof(S) == 4 ? "float" : "double",
             " (weights far out of range?): the outputs would mean nothing");
}

// Accumulates dinp [N, C] from dout [N, C]; stores (per `store`) dweight [C] and dbias [C].
// The weight and bias gradients are summed over fixed blocks of rows whose
// partial sums are added in block order, so the result does not depend on the
// thread count or on which thread finishes first.
template <class S>
void layernorm_backward(Tag, S* dinp, S* dweight, S* dbias, const S* dout, const S* inp, const S* weight,
                        const S* mean, const S* rstd, std::int64_t N, std::int64_t C, GradStore store) {
    constexpr std::int64_t block = 64;
    const std::int64_t blocks = (N + block - 1) / block;
    // Per block: C weight-gradient partials, then C bias-gradient partials.
    Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> parts(2 * C, blocks);
    parallel_chunks(blocks, [&](std::int64_t first, std::int64_t last) {
        Eigen::Array<S, Eigen::Dynamic, 1> xhat(C), dnorm(C);
        const ConstArrayMap<S> w(weight, C);
        for (std::int64_t b = first; b < last; ++b) {
            auto dweight_part = parts.col(b).head(C);
            auto dbias_part = parts.col(b).tail(C);
            dweight_part.setZero();
            dbias_part.setZero();
            for (std::int64_t n = b * block; n < std::min(N, (b + 1) * block); ++n) {
                const ConstArrayMap<S> dy(dout + n * C, C);
                xhat = (ConstArrayMap<S>(inp + n * C, C) - mean[n]) * rstd[n];
                dnorm = dy * w;
                const S dnorm_mean = dnorm.mean();
                const S dnorm_xhat_mean = (dnorm * xhat).mean();
                ArrayMap<S>(dinp + n * C, C) += rstd[n] * (dnorm - dnorm_mean - xhat * dnorm_xhat_mean);
                dweight_part += dy * xhat;
                dbias_part += dy;
            }
        }
    });
    ArrayMap<S> dw(dweight, C), db(dbias, C);
    if (store == GradStore::overwrite) {
        dw.setZero();
        db.setZero();
    }
    for (std::int64_t b = 0; b < blocks; ++b) {
        dw += parts.col(b).head(C);
        db += parts.col(b).tail(C);
    }
}

}  // namespace simnpo::backend::cpu
