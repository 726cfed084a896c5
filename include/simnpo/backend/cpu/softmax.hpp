#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

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
        const S* row = logits + n * V;
        S row_max = -std::numeric_limits<S>::infinity();
        for (std::int64_t v = 0; v < V; ++v) row_max = std::max(row_max, row[v]);
        S total = 0;
#pragma omp simd reduction(+ : total)
        for (std::int64_t v = 0; v < V; ++v) total += std::exp(row[v] - row_max);
        logsumexp[n] = row_max + std::log(total);
        logprobs[n] = row[targets[n]] - logsumexp[n];
    }
}

// Accumulates the logit gradient of Σ_n weights[n] · logprobs[n]:
//   dlogits [N, V] += weights[n] · (onehot(targets[n]) − softmax(logits[n]))
template <class S>
void logprob_backward(Tag, S* dlogits, const S* logits, const S* logsumexp, const std::int32_t* targets,
                      const S* weights, std::int64_t N, std::int64_t V) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const S* row = logits + n * V;
        S* drow = dlogits + n * V;
        const S w = weights[n];
        const S lse = logsumexp[n];
#pragma omp simd
        for (std::int64_t v = 0; v < V; ++v) drow[v] -= w * std::exp(row[v] - lse);
        drow[targets[n]] += w;
    }
}

}  // namespace simnpo::backend::cpu
