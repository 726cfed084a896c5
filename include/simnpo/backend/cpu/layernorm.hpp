#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cpu {

// out [N, C] = (inp - mean) · rstd · weight + bias, row by row; caches the
// row mean [N] and reciprocal standard deviation rstd [N] for the backward.
template <class S>
void layernorm_forward(Tag, S* out, S* mean, S* rstd, const S* inp, const S* weight, const S* bias,
                       std::int64_t N, std::int64_t C, double eps) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> x(inp + n * C, C);
        const S m = x.mean();
        const S variance = (x - m).square().mean();  // two passes: no cancellation when |mean| >> spread
        const S s = S{1} / std::sqrt(variance + static_cast<S>(eps));
        ArrayMap<S>(out + n * C, C) = (x - m) * s * ConstArrayMap<S>(weight, C) + ConstArrayMap<S>(bias, C);
        mean[n] = m;
        rstd[n] = s;
    }
}

// Accumulates dinp [N, C] from dout [N, C]; stores (per `store`) dweight [C] and dbias [C].
template <class S>
void layernorm_backward(Tag, S* dinp, S* dweight, S* dbias, const S* dout, const S* inp, const S* weight,
                        const S* mean, const S* rstd, std::int64_t N, std::int64_t C, GradStore store) {
    if (store == GradStore::overwrite) {
        ArrayMap<S>(dweight, C).setZero();
        ArrayMap<S>(dbias, C).setZero();
    }
#pragma omp parallel
    {
        // Per-thread partial sums keep the weight and bias gradients race-free.
        Eigen::Array<S, Eigen::Dynamic, 1> dweight_part = Eigen::Array<S, Eigen::Dynamic, 1>::Zero(C);
        Eigen::Array<S, Eigen::Dynamic, 1> dbias_part = Eigen::Array<S, Eigen::Dynamic, 1>::Zero(C);
        Eigen::Array<S, Eigen::Dynamic, 1> xhat(C), dnorm(C);
        const ConstArrayMap<S> w(weight, C);
#pragma omp for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            const ConstArrayMap<S> dy(dout + n * C, C);
            xhat = (ConstArrayMap<S>(inp + n * C, C) - mean[n]) * rstd[n];
            dnorm = dy * w;
            const S dnorm_mean = dnorm.mean();
            const S dnorm_xhat_mean = (dnorm * xhat).mean();
            ArrayMap<S>(dinp + n * C, C) += rstd[n] * (dnorm - dnorm_mean - xhat * dnorm_xhat_mean);
            dweight_part += dy * xhat;
            dbias_part += dy;
        }
#pragma omp critical
        {
            ArrayMap<S>(dweight, C) += dweight_part;
            ArrayMap<S>(dbias, C) += dbias_part;
        }
    }
}

}  // namespace simnpo::backend::cpu
