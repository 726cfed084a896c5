#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"

namespace simnpo::loss {

// What a loss sees of a batch (DESIGN §3): for each example i its answer's
// log-likelihood ℓ_θ(i), its answer length |y_i| and, for reference-based
// losses, ℓ_ref(i) under the frozen reference model.
struct SequenceStats {
    std::vector<double> logprob;      // ℓ_θ(i)
    std::vector<std::int64_t> length; // |y_i| ≥ 1
    std::vector<double> ref_logprob;  // ℓ_ref(i); empty when there is no reference

    std::size_t size() const { return logprob.size(); }
    bool has_reference() const { return !ref_logprob.empty(); }

    std::int64_t total_length() const {
        std::int64_t total = 0;
        for (const auto n : length) total += n;
        return total;
    }

    // Throws Error when the statistics cannot give a finite loss.
    void check(const char* who) const {
        if (logprob.empty()) fail(who, ": empty batch");
        if (length.size() != logprob.size()) fail(who, ": ", length.size(), " lengths for ", logprob.size(), " examples");
        if (has_reference() && ref_logprob.size() != logprob.size())
            fail(who, ": ", ref_logprob.size(), " reference log-likelihoods for ", logprob.size(), " examples");
        for (std::size_t i = 0; i < size(); ++i) {
            if (length[i] < 1) fail(who, ": example ", i, " has no answer tokens");
            if (!std::isfinite(logprob[i])) fail(who, ": example ", i, " has a non-finite log-likelihood");
            if (has_reference() && !std::isfinite(ref_logprob[i]))
                fail(who, ": example ", i, " has a non-finite reference log-likelihood");
        }
    }
};

// The statistics of rows whose ℓ_θ are `logprob` (Gpt::sequence_logprobs()
// after a forward on data::make_batch(rows)).
inline SequenceStats sequence_stats(std::vector<double> logprob, std::span<const data::Example> rows) {
    if (logprob.size() != rows.size())
        fail("sequence_stats: ", logprob.size(), " log-likelihoods for ", rows.size(), " rows");
    SequenceStats stats;
    stats.logprob = std::move(logprob);
    for (const auto& row : rows) stats.length.push_back(static_cast<std::int64_t>(row.answer_ids.size()));
    return stats;
}

// The way back from dL/dℓ_θ(i) to what Gpt::backward takes: since ℓ_θ(i) sums
// its row's token log-probabilities, each scored token of row i gets weight ·
// dlogprob[i].
template <class Model>
std::vector<typename Model::scalar_type> token_weights(const Model& model, std::span<const double> dlogprob,
                                                       double weight) {
    const auto positions = model.scored_positions();
    const std::int64_t columns = model.batch_columns();
    std::vector<typename Model::scalar_type> weights(positions.size());
    for (std::size_t n = 0; n < positions.size(); ++n)
        weights[n] = static_cast<typename Model::scalar_type>(
            weight * dlogprob[static_cast<std::size_t>(positions[n] / columns)]);
    return weights;
}

// A loss value and its gradient with respect to each example's ℓ_θ(i).
struct LossResult {
    double value = 0.0;
    std::vector<double> dlogprob;  // dL/dℓ_θ(i): the example's weight in the gradient
};

// log σ(z) for any finite z: −softplus(−z), without overflow at ±1e4.
inline double log_sigmoid(double z) { return -(std::max(-z, 0.0) + std::log1p(std::exp(-std::abs(z)))); }

// σ(z) for any finite z, from the side that does not overflow.
inline double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
    const double e = std::exp(z);
    return e / (1.0 + e);
}

}  // namespace simnpo::loss
