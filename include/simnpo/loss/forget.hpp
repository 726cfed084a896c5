#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/loss/concepts.hpp"
#include "simnpo/loss/sequence.hpp"

namespace simnpo::loss {

// --- Reference policies: the reward r_i from normalised log-likelihoods. ---

// NPO's: r_i = N(ℓ_θ(i)) − N(ℓ_ref(i)); needs a frozen reference model.
struct ReferenceBased {
    static constexpr bool needs_reference = true;
    static double reward(double normalized, double normalized_reference) { return normalized - normalized_reference; }
};

// SimNPO's: r_i = N(ℓ_θ(i)); no reference model.
struct ReferenceFree {
    static constexpr bool needs_reference = false;
    static double reward(double normalized, double /*normalized_reference*/) { return normalized; }
};

// --- Normalisation policies: N(ℓ) and dN/dℓ for an answer of |y| tokens. ---

struct SumLogProb {
    static double normalize(double logprob, std::int64_t /*length*/) { return logprob; }
    static double derivative(std::int64_t /*length*/) { return 1.0; }
};

struct LengthNormalized {
    static double normalize(double logprob, std::int64_t length) { return logprob / static_cast<double>(length); }
    static double derivative(std::int64_t length) { return 1.0 / static_cast<double>(length); }
};

// Forget losses (DESIGN §3). Each maps the statistics of a batch to its value
// and dL/dℓ_θ(i); see concepts.hpp for what a user's own loss provides.

// The preference family of DESIGN §3, a forget loss:
//   L = (1/B) Σ_i −(2/β) · log σ(−β·r_i − γ)
//   dL/dℓ_θ(i) = (2/B) · σ(β·r_i + γ) · dN/dℓ
// β > 0 is the inverse temperature, γ the margin. The authors' TOFU code writes
// the margin inside the scale, β·(NLL/|y| − γ'): then γ = β·γ'.
template <ReferencePolicy Reference, NormalizationPolicy Normalization>
class Preference {
public:
    struct Params {
        double beta = 0.1;
        double gamma = 0.0;
    };
    static constexpr bool needs_reference = Reference::needs_reference;

    explicit Preference(Params params = {}) : params_(params) {
        if (!(params_.beta > 0.0) || !std::isfinite(params_.beta))
            fail("Preference loss: beta must be positive and finite, got ", params_.beta);
        if (!std::isfinite(params_.gamma)) fail("Preference loss: gamma must be finite, got ", params_.gamma);
    }

    const Params& params() const { return params_; }

    LossResult evaluate(const SequenceStats& stats) const {
        stats.check("Preference loss");
        if (needs_reference && !stats.has_reference())
            fail("Preference loss: this loss is reference-based but the batch has no reference log-likelihoods");
        const double beta = params_.beta, gamma = params_.gamma;
        const auto B = static_cast<double>(stats.size());
        LossResult result;
        result.dlogprob.resize(stats.size());
        for (std::size_t i = 0; i < stats.size(); ++i) {
            const double normalized = Normalization::normalize(stats.logprob[i], stats.length[i]);
            const double normalized_reference =
                needs_reference ? Normalization::normalize(stats.ref_logprob[i], stats.length[i]) : 0.0;
            const double r = Reference::reward(normalized, normalized_reference);
            result.value += -(2.0 / beta) * log_sigmoid(-beta * r - gamma) / B;
            result.dlogprob[i] = (2.0 / B) * sigmoid(beta * r + gamma) * Normalization::derivative(stats.length[i]);
        }
        return result;
    }

private:
    Params params_;
};

using NPO = Preference<ReferenceBased, SumLogProb>;
using SimNPO = Preference<ReferenceFree, LengthNormalized>;

// Gradient ascent on the forget set: L = +Σ_i ℓ_θ(i) / Σ_i |y_i|.
struct GradAscent {
    static constexpr bool needs_reference = false;
    LossResult evaluate(const SequenceStats& stats) const {
        stats.check("GradAscent");
        const auto tokens = static_cast<double>(stats.total_length());
        LossResult result{0.0, std::vector<double>(stats.size(), 1.0 / tokens)};
        for (const double l : stats.logprob) result.value += l / tokens;
        return result;
    }
};

// DPO with refusal answers (DESIGN §3): each forget example x_i, y_i is paired
// with the same prompt and a refusal answer ("I don't know"), preferred:
//   L = (1/B) Σ_i −(2/β) log σ(β[(ℓ_θ(idk_i) − ℓ_ref(idk_i)) − (ℓ_θ(i) − ℓ_ref(i))])
// The model scores rows(forget): the B forget examples, then their B refusal
// rows in the same order; evaluate() reads its statistics in that layout.
// Example i's refusal is refusals[hash(example) mod n]: fixed for the run, so
// its ℓ_ref is computed once like the forget example's own.
class DPO {
public:
    struct Params {
        double beta = 0.1;
    };
    static constexpr bool needs_reference = true;

    explicit DPO(std::vector<std::vector<std::int32_t>> refusals) : DPO(std::move(refusals), Params{}) {}
    DPO(std::vector<std::vector<std::int32_t>> refusals, Params params)
        : refusals_(std::move(refusals)), params_(params) {
        if (!(params_.beta > 0.0) || !std::isfinite(params_.beta))
            fail("DPO: beta must be positive and finite, got ", params_.beta);
        if (refusals_.empty()) fail("DPO: no refusal answers");
        for (std::size_t k = 0; k < refusals_.size(); ++k)
            if (refusals_[k].empty()) fail("DPO: refusal answer ", k, " is empty");
    }

    const Params& params() const { return params_; }
    const std::vector<std::vector<std::int32_t>>& refusals() const { return refusals_; }

    std::vector<data::Example> rows(std::span<const data::Example> forget) const {
        std::vector<data::Example> rows(forget.begin(), forget.end());
        for (const auto& example : forget)
            rows.push_back({example.prompt_ids, refusals_[data::ExampleHash{}(example) % refusals_.size()]});
        return rows;
    }

    LossResult evaluate(const SequenceStats& stats) const {
        stats.check("DPO");
        if (!stats.has_reference())
            fail("DPO: this loss is reference-based but the batch has no reference log-likelihoods");
        if (stats.size() % 2 != 0)
            fail("DPO: ", stats.size(), " rows; expected B forget rows followed by their B refusal rows");
        const std::size_t B = stats.size() / 2;
        const double beta = params_.beta;
        LossResult result;
        result.dlogprob.resize(stats.size());
        for (std::size_t i = 0; i < B; ++i) {
            const double forget = stats.logprob[i] - stats.ref_logprob[i];
            const double refusal = stats.logprob[B + i] - stats.ref_logprob[B + i];
            const double z = beta * (refusal - forget);
            result.value += -(2.0 / beta) * log_sigmoid(z) / static_cast<double>(B);
            const double weight = (2.0 / static_cast<double>(B)) * sigmoid(-z);
            result.dlogprob[i] = weight;
            result.dlogprob[B + i] = -weight;
        }
        return result;
    }

private:
    std::vector<std::vector<std::int32_t>> refusals_;
    Params params_;
};

}  // namespace simnpo::loss
