#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cpu {

// LlamaRMSNorm, in S: out [N, C] = (inp · rstd) · weight row by row, with
// rstd [N] = 1/√(mean(inp²) + eps) cached for the backward.
template <class S>
void rmsnorm_forward(Tag, S* out, S* rstd, const S* inp, const S* weight, std::int64_t N, std::int64_t C,
                     double eps) {
    bool overflow = false;
#pragma omp parallel for schedule(static) reduction(|| : overflow)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> x(inp + n * C, C);
        const S mean_square = x.square().mean();
        // As in layer norm: an infinite mean square would give rstd 0 and rows of zeros that mean nothing.
        overflow = overflow || std::isinf(mean_square);
        const S s = S{1} / std::sqrt(mean_square + static_cast<S>(eps));
        ArrayMap<S>(out + n * C, C) = (x * s) * ConstArrayMap<S>(weight, C);
        rstd[n] = s;
    }
    if (overflow)
        fail("RMS norm: the activations' mean square overflows ", sizeof(S) == 4 ? "float" : "double",
             " (weights far out of range?): the outputs would mean nothing");
}

// Accumulates dinp [N, C] += rstd · (dnorm − x̂ · mean(dnorm · x̂)), x̂ = inp · rstd,
// dnorm = dout · weight; stores (per `store`) dweight [C] = Σ_n dout · x̂. As in
// layernorm_backward, dweight is summed over fixed blocks of rows whose partial
// sums are added in block order: the same bits for any thread count.
template <class S>
void rmsnorm_backward(Tag, S* dinp, S* dweight, const S* dout, const S* inp, const S* weight, const S* rstd,
                      std::int64_t N, std::int64_t C, GradStore store) {
    constexpr std::int64_t block = 64;
    const std::int64_t blocks = (N + block - 1) / block;
    Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> parts(C, blocks);
    parallel_chunks(blocks, [&](std::int64_t first, std::int64_t last) {
        Eigen::Array<S, Eigen::Dynamic, 1> xhat(C), dnorm(C);
        const ConstArrayMap<S> w(weight, C);
        for (std::int64_t b = first; b < last; ++b) {
            auto part = parts.col(b);
            part.setZero();
            for (std::int64_t n = b * block; n < std::min(N, (b + 1) * block); ++n) {
                const ConstArrayMap<S> dy(dout + n * C, C);
                xhat = ConstArrayMap<S>(inp + n * C, C) * rstd[n];
                dnorm = dy * w;
                const S dnorm_xhat_mean = (dnorm * xhat).mean();
                ArrayMap<S>(dinp + n * C, C) += rstd[n] * (dnorm - xhat * dnorm_xhat_mean);
                part += dy * xhat;
            }
        }
    });
    ArrayMap<S> dw(dweight, C);
    if (store == GradStore::overwrite) dw.setZero();
    for (std::int64_t b = 0; b < blocks; ++b) dw += parts.col(b);
}

}  // namespace simnpo::backend::cpu
