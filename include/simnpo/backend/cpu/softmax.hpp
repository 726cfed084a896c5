#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// Log-softmax with target gather, row by row:
//   logsumexp [N] = log Σ_v exp(logits[n, v])
//   logprobs  [N] = logits[n, targets[n]] − logsumexp[n]
// logits [N, V] is left as it is (the backward and a KL term read it).
template <class S>
void logsoftmax_gather(Tag, S* logprobs, S* logsumexp, const S* logits, const std::int32_t* targets,
                       std::int64_t N, std::int64_t V) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> row(logits + n * V, V);
        const S row_max = row.maxCoeff();
        logsumexp[n] = row_max + std::log((row - row_max).exp().sum());
        logprobs[n] = row[targets[n]] - logsumexp[n];
    }
}

// Writes the logit gradient of Σ_n weights[n] · logprobs[n]:
//   dlogits [N, V] = weights[n] · (onehot(targets[n]) − softmax(logits[n]))
// Unlike the other backward kernels it writes rather than accumulates: it is
// always the first term, and that spares zeroing N·V floats each step.
template <class S>
void logprob_backward(Tag, S* dlogits, const S* logits, const S* logsumexp, const std::int32_t* targets,
                      const S* weights, std::int64_t N, std::int64_t V) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        ArrayMap<S> drow(dlogits + n * V, V);
        drow = -weights[n] * (ConstArrayMap<S>(logits + n * V, V) - logsumexp[n]).exp();
        drow[targets[n]] += weights[n];
    }
}

// Row-wise log-softmax: logprobs [N, V] = logits[n, v] − log Σ_u exp(logits[n, u]).
template <class S>
void log_softmax(Tag, S* logprobs, const S* logits, std::int64_t N, std::int64_t V) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> row(logits + n * V, V);
        const S row_max = row.maxCoeff();
        ArrayMap<S>(logprobs + n * V, V) = row - (row_max + std::log((row - row_max).exp().sum()));
    }
}

// KL(p ‖ q) row by row, with p = exp(ref_logprobs) fixed and q = softmax(logits):
//   kl      [N]    = Σ_v p[n, v] · (ref_logprobs[n, v] − log q[n, v])   (summed in double)
//   dlogits [N, V] = scale · (q[n] − p[n]), the gradient of scale · Σ_n kl[n]
// Like logprob_backward it writes dlogits rather than accumulating.
template <class S>
void kl_forward_backward(Tag, S* dlogits, double* kl, const S* logits, const S* ref_logprobs, S scale,
                         std::int64_t N, std::int64_t V) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> row(logits + n * V, V), ref(ref_logprobs + n * V, V);
        const S row_max = row.maxCoeff();
        const S logsumexp = row_max + std::log((row - row_max).exp().sum());
        const auto p = ref.exp();
        // p·(log p − log q), with 0·log 0 = 0 where the reference gives a token no mass.
        kl[n] = (p > S(0)).select(p * (ref - (row - logsumexp)), S(0)).template cast<double>().sum();
        ArrayMap<S>(dlogits + n * V, V) = scale * ((row - logsumexp).exp() - p);
    }
}

}  // namespace simnpo::backend::cpu
