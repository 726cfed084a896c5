#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <span>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/causal_lm.hpp"
#include "simnpo/loss/reference.hpp"
#include "simnpo/loss/retain.hpp"

namespace simnpo::eval {

// Token-averaged KL divergence of the model from a reference, over the answer
// tokens of `examples`:
//   Σ_i Σ_{t∈y_i} KL(π_ref(·|ctx_t) ‖ π_θ(·|ctx_t)) / Σ_i |y_i|
// the retain loss loss::KL measures, here as an evaluation: how far the model is
// from, say, a model retrained without the forget data. The reference caches
// what it gives (on the CPU its head states, from which the fused head
// computes both models' logits chunk by chunk without holding them;
// elsewhere its distributions), so repeated evaluations on the same examples
// cost one model forward each.
template <class Model>
double mean_token_kl(loss::FrozenReference<Model>& reference, const Model& model, std::span<const data::Example> examples,
                     std::int64_t batch_size = 256) {
    if (examples.empty()) fail("mean_token_kl: no examples");
    if (batch_size < 1) fail("mean_token_kl: batch_size must be at least 1, got ", batch_size);
    if (reference.model().config().vocab_size != model.config().vocab_size)
        fail("mean_token_kl: the reference's vocabulary (", reference.model().config().vocab_size,
             ") is not the model's (", model.config().vocab_size, ")");
    using Scalar = typename Model::scalar_type;
    double sum = 0.0;
    std::int64_t positions = 0;
    const auto step = static_cast<std::size_t>(batch_size);
    for (std::size_t begin = 0; begin < examples.size(); begin += step) {
        const auto chunk = examples.subspan(begin, std::min(step, examples.size() - begin));
        if constexpr (Model::fuses_head) {
            const auto scores = model.score(data::make_batch(chunk));
            const auto states = reference.head_states(chunk);
            for (const double kl : model.token_kl(scores, reference.model(), states.inputs, states.logsumexp))
                sum += kl;
            positions += static_cast<std::int64_t>(scores.logprobs.size());
            continue;
        }
        const auto scores = model.score(data::make_batch(chunk), model::Logits::keep);
        const auto scored = static_cast<std::int64_t>(scores.logprobs.size());
        const std::span<Scalar> ref = reference.distributions(chunk);
        typename Model::template Buffer<double> per_position(static_cast<std::size_t>(scored));
        // The loss's gradient is not wanted; it overwrites the reference's scratch copy.
        const loss::Distributions<Scalar> d{scores.logits.data(), ref.data(), ref.data(), per_position.data(),
                                            scored, model.config().vocab_size};
        sum += loss::KL{}.evaluate(model.backend(), d) * static_cast<double>(scored);
        positions += scored;
    }
    return sum / static_cast<double>(positions);
}

}  // namespace simnpo::eval
