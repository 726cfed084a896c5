#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// out [N, C] = (inp - mean) · rstd · weight + bias, row by row; caches the
// row mean [N] and reciprocal standard deviation rstd [N] for the backward.
template <class S>
void layernorm_forward(Tag, S* out, S* mean, S* rstd, const S* inp, const S* weight, const S* bias,
                       std::int64_t N, std::int64_t C, double eps) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const S* x = inp + n * C;
        S m = 0;
        for (std::int64_t c = 0; c < C; ++c) m += x[c];
        m /= static_cast<S>(C);
        S variance = 0;  // two passes: no cancellation when |mean| >> spread
        for (std::int64_t c = 0; c < C; ++c) variance += (x[c] - m) * (x[c] - m);
        variance /= static_cast<S>(C);
        const S s = S{1} / std::sqrt(variance + static_cast<S>(eps));
        S* y = out + n * C;
        for (std::int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

// Accumulates dinp [N, C], dweight [C] and dbias [C] from dout [N, C].
template <class S>
void layernorm_backward(Tag, S* dinp, S* dweight, S* dbias, const S* dout, const S* inp,
                        const S* weight, const S* mean, const S* rstd, std::int64_t N, std::int64_t C) {
#pragma omp parallel
    {
        // Per-thread partial sums keep the weight and bias gradients race-free.
        std::vector<S> dweight_part(static_cast<std::size_t>(C), S{0});
        std::vector<S> dbias_part(static_cast<std::size_t>(C), S{0});
#pragma omp for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            const S* x = inp + n * C;
            const S* dy = dout + n * C;
            const S m = mean[n];
            const S s = rstd[n];
            S dnorm_mean = 0;
            S dnorm_xhat_mean = 0;
            for (std::int64_t c = 0; c < C; ++c) {
                const S xhat = (x[c] - m) * s;
                const S dnorm = dy[c] * weight[c];
                dnorm_mean += dnorm;
                dnorm_xhat_mean += dnorm * xhat;
                dweight_part[c] += dy[c] * xhat;
                dbias_part[c] += dy[c];
            }
            dnorm_mean /= static_cast<S>(C);
            dnorm_xhat_mean /= static_cast<S>(C);
            S* dx = dinp + n * C;
            for (std::int64_t c = 0; c < C; ++c) {
                const S xhat = (x[c] - m) * s;
                dx[c] += s * (dy[c] * weight[c] - dnorm_mean - xhat * dnorm_xhat_mean);
            }
        }
#pragma omp critical
        for (std::int64_t c = 0; c < C; ++c) {
            dweight[c] += dweight_part[c];
            dbias[c] += dbias_part[c];
        }
    }
}

}  // namespace simnpo::backend::cpu
