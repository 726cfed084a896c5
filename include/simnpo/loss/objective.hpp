#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/causal_lm.hpp"
#include "simnpo/loss/concepts.hpp"
#include "simnpo/loss/forget.hpp"
#include "simnpo/loss/reference.hpp"
#include "simnpo/loss/retain.hpp"
#include "simnpo/loss/sequence.hpp"

namespace simnpo::loss {

// What one row of the forget batch contributed: the quantities the paper
// analyses. weight is dL_forget/dℓ_θ(i), the row's weight in the gradient
// (NPO: 2σ(β(ℓ_θ − ℓ_ref))/B = (2/B)·π^β/(π^β + π_ref^β); SimNPO:
// 2σ(βℓ_θ/|y| + γ)/(B·|y|); DPO's refusal rows carry negative weights).
struct RowReport {
    double logprob = 0.0;                                          // ℓ_θ(i)
    std::int64_t length = 0;                                       // |y_i|
    double ref_logprob = std::numeric_limits<double>::quiet_NaN();  // ℓ_ref(i), NaN without a reference
    double weight = 0.0;                                           // dL_forget/dℓ_θ(i)
};

// One gradient evaluation of an objective: the losses before weighting and
// the total w_f · L_forget + w_r · L_retain.
struct StepReport {
    double forget_loss = 0.0;
    double retain_loss = 0.0;
    double total = 0.0;
    std::vector<RowReport> forget_rows;  // one per row the forget loss scored
    std::int64_t forget_tokens = 0;      // answer tokens scored on each side
    std::int64_t retain_tokens = 0;
};

// The w_f and w_r of an objective (the same type for every objective).
struct ObjectiveWeights {
    double forget_weight = 1.0;
    double retain_weight = 1.0;
};

// L = w_f · L_forget + w_r · L_retain (DESIGN §3), composed at compile time.
//
// gradient() runs the model on one forget batch and one retain batch (as one
// batch when it can, see fusion_padding_limit) and stores ∇L in the model's
// gradient slab: the losses' dL/dℓ_θ(i) become per-token weights for
// CausalLM::backward; a retain loss on whole distributions (KL) gives
// CausalLM::backward_logits its logit gradient instead, or on the CPU runs
// through the fused head (CausalLM::backward_kl).
template <ForgetLoss Forget, RetainLoss Retain = NoRetain>
class Objective {
public:
    using Weights = ObjectiveWeights;
    static constexpr bool has_retain = !std::same_as<Retain, NoRetain>;
    static constexpr bool needs_reference = Forget::needs_reference || Retain::needs_reference;

    explicit Objective(Forget forget = Forget(), Retain retain = Retain(), Weights weights = Weights())
        : forget_(std::move(forget)), retain_(std::move(retain)), weights_(weights) {
        const auto check = [](double w, const char* name) {
            if (!(w >= 0.0) || !std::isfinite(w)) fail("Objective: ", name, " must be finite and >= 0, got ", w);
        };
        check(weights_.forget_weight, "forget_weight");
        check(weights_.retain_weight, "retain_weight");
    }

    const Forget& forget() const { return forget_; }
    const Retain& retain() const { return retain_; }
    const Weights& weights() const { return weights_; }

    // Stores scale · ∇L into model.grads() (`store` applies to the first
    // backward; the retain term is added to it). scale is for gradient
    // accumulation (1/k over k micro-batches); the report is unscaled.
    // `reference` is a FrozenReference when the objective needs one.
    template <class Model, class Reference>
        requires std::same_as<Reference, NoReference> || ReferenceSource<Reference>
    StepReport gradient(Model& model, std::span<const data::Example> forget, std::span<const data::Example> retain,
                        Reference& reference, GradStore store = GradStore::overwrite, double scale = 1.0) const {
        constexpr bool has_reference = !std::same_as<Reference, NoReference>;
        static_assert(!needs_reference || has_reference,
                      "simnpo: this objective is reference-based (NPO, DPO or KL) and needs the frozen reference "
                      "model: pass a simnpo::loss::FrozenReference built from the model before unlearning");
        if constexpr (!needs_reference || has_reference) return run(model, forget, retain, reference, store, scale);
        else return {};  // unreachable: the assertion above has failed; no further errors
    }

    // The same for objectives without a reference model.
    template <class Model>
    StepReport gradient(Model& model, std::span<const data::Example> forget, std::span<const data::Example> retain,
                        GradStore store = GradStore::overwrite, double scale = 1.0) const {
        NoReference none;
        return gradient(model, forget, retain, none, store, scale);
    }

private:
    // Forget and retain rows go through the model in one batch when both losses
    // are on sequences and padding to the longer side's length adds at most
    // this fraction of positions: one pass over bigger matrices made a whole
    // GPT-2 small unlearning step (B = 4 + 4, T = 64) 9% faster, at the cost of
    // holding both batches' activations at once.
    static constexpr double fusion_padding_limit = 1.05;

    template <class Model, class Reference>
    StepReport run(Model& model, std::span<const data::Example> forget, std::span<const data::Example> retain,
                   Reference& reference, GradStore store, double scale) const {
        if (forget.empty()) fail("Objective: empty forget batch");
        if constexpr (has_retain) {
            if (retain.empty()) fail("Objective: the retain loss needs a retain batch, and it is empty");
        } else {
            if (!retain.empty()) fail("Objective: a retain batch was given but the objective has no retain loss");
        }
        std::vector<data::Example> expanded;
        if constexpr (ExpandsRows<Forget>) {
            expanded = forget_.rows(forget);
            forget = expanded;
        }
        const double forget_weight = weights_.forget_weight * scale, retain_weight = weights_.retain_weight * scale;
        StepReport report;
        if constexpr (SequenceLoss<Retain>) {
            if (worth_fusing(forget, retain)) {
                std::vector<data::Example> rows(forget.begin(), forget.end());
                rows.insert(rows.end(), retain.begin(), retain.end());
                model.forward(data::make_batch(rows));
                const std::vector<double> logprob = model.sequence_logprobs();
                const auto split = logprob.begin() + static_cast<std::ptrdiff_t>(forget.size());
                std::vector<double> dlogprob = forget_term(report, forget, {logprob.begin(), split}, reference);
                for (double& d : dlogprob) d *= forget_weight;
                for (const double d : retain_term(report, retain, {split, logprob.end()}, reference))
                    dlogprob.push_back(d * retain_weight);
                const auto weights = token_weights(model, dlogprob, 1.0);
                model.backward(std::span(weights), store);
                return finish(report);
            }
        }
        model.forward(data::make_batch(forget));
        const auto forget_weights =
            token_weights(model, forget_term(report, forget, model.sequence_logprobs(), reference), forget_weight);
        model.backward(std::span(forget_weights), store);
        if constexpr (has_retain) {
            model.forward(data::make_batch(retain),
                          DistributionLoss<Retain> && !fuses_distribution<Model, Reference> ? model::Logits::keep
                                                                                              : model::Logits::drop);
            if constexpr (DistributionLoss<Retain>) {
                distribution_term(report, model, retain, reference, retain_weight);
            } else {
                const auto retain_weights = token_weights(
                    model, retain_term(report, retain, model.sequence_logprobs(), reference), retain_weight);
                model.backward(std::span(retain_weights), GradStore::accumulate);
            }
        }
        return finish(report);
    }

    // Padded positions of the two batches in one, against each padded apart.
    static bool worth_fusing(std::span<const data::Example> forget, std::span<const data::Example> retain) {
        const auto longest = [](std::span<const data::Example> rows) {
            std::size_t length = 0;
            for (const auto& row : rows) length = std::max(length, row.prompt_ids.size() + row.answer_ids.size() - 1);
            return static_cast<double>(length);
        };
        const double f = static_cast<double>(forget.size()), r = static_cast<double>(retain.size());
        const double forget_length = longest(forget), retain_length = longest(retain);
        return (f + r) * std::max(forget_length, retain_length) <=
               fusion_padding_limit * (f * forget_length + r * retain_length);
    }

    StepReport& finish(StepReport& report) const {
        report.total = weights_.forget_weight * report.forget_loss +
                       (has_retain ? weights_.retain_weight * report.retain_loss : 0.0);
        return report;
    }

    // `loss` on rows whose ℓ_θ are `logprob`, with their ℓ_ref when it needs them.
    template <class Loss, class Reference>
    static std::pair<SequenceStats, LossResult> evaluate_rows(const Loss& loss, std::span<const data::Example> rows,
                                                              std::vector<double> logprob, Reference& reference,
                                                              const char* side) {
        SequenceStats stats = sequence_stats(std::move(logprob), rows);
        if constexpr (Loss::needs_reference) stats.ref_logprob = reference.sequence_logprobs(rows);
        LossResult result = loss.evaluate(stats);
        check_result(result, stats.size(), side);
        return {std::move(stats), std::move(result)};
    }

    // The forget loss of rows whose ℓ_θ are `logprob`, into the report; returns dL/dℓ_θ.
    template <class Reference>
    std::vector<double> forget_term(StepReport& report, std::span<const data::Example> rows, std::vector<double> logprob,
                                    Reference& reference) const {
        auto [stats, result] = evaluate_rows(forget_, rows, std::move(logprob), reference, "forget");
        report.forget_loss = result.value;
        report.forget_tokens = stats.total_length();
        for (std::size_t i = 0; i < stats.size(); ++i)
            report.forget_rows.push_back({stats.logprob[i], stats.length[i],
                                          stats.has_reference() ? stats.ref_logprob[i] : RowReport{}.ref_logprob,
                                          result.dlogprob[i]});
        return std::move(result.dlogprob);
    }

    // The same for a retain loss on sequences.
    template <class Reference>
    std::vector<double> retain_term(StepReport& report, std::span<const data::Example> rows, std::vector<double> logprob,
                                    Reference& reference) const {
        auto [stats, result] = evaluate_rows(retain_, rows, std::move(logprob), reference, "retain");
        report.retain_loss = result.value;
        report.retain_tokens = stats.total_length();
        return std::move(result.dlogprob);
    }

    // Whether the distribution loss runs on `Model`'s fused head without the
    // logits (KL::evaluate_fused, on the CPU); else it takes the kept logits.
    template <class Model, class Reference>
    static constexpr bool fuses_distribution =
        requires(const Retain& loss, Model& model, Reference& reference, std::span<const data::Example> rows) {
            { loss.evaluate_fused(model, reference, rows, 1.0) } -> std::same_as<double>;
        };

    // A retain loss on whole distributions (KL), after the model's forward on
    // the retain rows: through the fused head, or with the kept logits, whose
    // gradient then goes straight to the backward.
    template <class Model, class Reference>
    void distribution_term(StepReport& report, Model& model, std::span<const data::Example> rows, Reference& reference,
                           double weight) const {
        using Scalar = typename Model::scalar_type;
        report.retain_tokens = model.scored_count();
        if constexpr (fuses_distribution<Model, Reference>) {
            report.retain_loss = retain_.evaluate_fused(model, reference, rows, weight);
            if (!std::isfinite(report.retain_loss)) fail("Objective: the retain loss is not finite");
        } else {
            const std::span<Scalar> ref = reference.distributions(rows);
            typename Model::template Buffer<double> per_position(static_cast<std::size_t>(model.scored_count()));
            // The gradient overwrites the reference distributions it is computed from.
            const Distributions<Scalar> d{model.logits().data(), ref.data(),           ref.data(), per_position.data(),
                                          model.scored_count(),  model.config().vocab_size, weight};
            report.retain_loss = retain_.evaluate(model.backend(), d);
            if (!std::isfinite(report.retain_loss)) fail("Objective: the retain loss is not finite");
            model.backward_logits(std::span<const Scalar>(ref), GradStore::accumulate);
        }
    }

    // A user's loss can be wrong: catch it before it reaches the model.
    static void check_result(const LossResult& result, std::size_t rows, const char* side) {
        if (result.dlogprob.size() != rows)
            fail("Objective: the ", side, " loss returned ", result.dlogprob.size(), " weights for ", rows, " rows");
        if (!std::isfinite(result.value)) fail("Objective: the ", side, " loss is not finite");
        for (const double w : result.dlogprob)
            if (!std::isfinite(w)) fail("Objective: the ", side, " loss has a non-finite gradient");
    }

    Forget forget_;
    Retain retain_;
    Weights weights_;
};

// The usual recipes, by the names the literature uses.
using GradDiff = Objective<GradAscent, NLL>;
using NPO_GD = Objective<NPO, NLL>;
using NPO_KL = Objective<NPO, KL>;
using SimNPO_GD = Objective<SimNPO, NLL>;
using SimNPO_KL = Objective<SimNPO, KL>;

}  // namespace simnpo::loss
