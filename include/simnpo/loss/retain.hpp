#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <span>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/loss/sequence.hpp"

namespace simnpo::loss {

// Retain losses (DESIGN §3): what keeps the model's other knowledge while the
// forget loss removes. Token means over all answer tokens of the retain batch.

// No retain term: the objective is the forget loss alone.
struct NoRetain {
    static constexpr bool needs_reference = false;
};

// Token-mean negative log-likelihood: L = −Σ_i ℓ_θ(i) / Σ_i |y_i|.
// Paired with gradient ascent it makes GradDiff; with NPO or SimNPO, "+GD".
struct NLL {
    static constexpr bool needs_reference = false;
    LossResult evaluate(const SequenceStats& stats) const {
        stats.check("NLL");
        const auto tokens = static_cast<double>(stats.total_length());
        LossResult result{0.0, std::vector<double>(stats.size(), -1.0 / tokens)};
        for (const double l : stats.logprob) result.value -= l / tokens;
        return result;
    }
};

// What a loss over whole next-token distributions reads and writes, at the N
// scored positions of a batch, in backend memory.
template <class Scalar>
struct Distributions {
    const Scalar* logits = nullptr;        // [N, V] the model's logits
    const Scalar* ref_logprobs = nullptr;  // [N, V] log π_ref(· | same context)
    Scalar* dlogits = nullptr;             // [N, V] out: weight · dL/dlogits
    double* per_position = nullptr;        // [N] scratch for per-position terms
    std::int64_t positions = 0;            // N
    std::int64_t vocab = 0;                // V
    double weight = 1.0;                   // the objective's weight on this loss
};

// Token-mean KL divergence from the frozen reference:
//   L = Σ_i Σ_{t∈answer} KL(π_ref(·|ctx_t) ‖ π_θ(·|ctx_t)) / Σ_i |y_i|
//   dL/dlogits[n] = (softmax(logits[n]) − π_ref[n]) / N
struct KL {
    static constexpr bool needs_reference = true;

    // Writes weight · dL/dlogits into d.dlogits and returns L.
    template <class Backend, class Scalar>
    double evaluate(Backend& backend, const Distributions<Scalar>& d) const {
        check_positions(d.positions);
        const auto scale = static_cast<Scalar>(d.weight / static_cast<double>(d.positions));
        kl_forward_backward(backend, d.dlogits, d.per_position, d.logits, d.ref_logprobs, scale, d.positions,
                            d.vocab);
        std::vector<double> terms(static_cast<std::size_t>(d.positions));
        copy_to_host(backend, std::span<double>(terms), d.per_position);
        return token_mean(terms);
    }

    // The same L without either model's logits, where the model runs the fused
    // head (the CPU): after model.forward on `rows` (Logits::drop), stores
    // weight · ∇L into the model's gradients (CausalLM::backward_kl, from the
    // reference's FrozenReference::head_states) and returns L.
    template <class Model, class Reference>
        requires(Model::fuses_head)
    double evaluate_fused(Model& model, Reference& reference, std::span<const data::Example> rows,
                          double weight) const {
        const std::int64_t positions = model.scored_count();
        check_positions(positions);
        const auto ref = reference.head_states(rows);
        const auto scale = static_cast<typename Model::scalar_type>(weight / static_cast<double>(positions));
        return token_mean(model.backward_kl(reference.model(), ref.inputs, ref.logsumexp, scale));
    }

private:
    static void check_positions(std::int64_t positions) {
        if (positions < 1) fail("KL: no scored positions");
    }
    static double token_mean(std::span<const double> terms) {
        double sum = 0.0;
        for (const double term : terms) sum += term;
        return sum / static_cast<double>(terms.size());
    }
};

}  // namespace simnpo::loss
