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

}  // namespace simnpo::backend::cpu
