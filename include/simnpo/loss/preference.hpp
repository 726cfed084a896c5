#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

#include "simnpo/core/error.hpp"
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

// The preference family of DESIGN §3, a forget loss:
//   L = (1/B) Σ_i −(2/β) · log σ(−β·r_i − γ)
//   dL/dℓ_θ(i) = (2/B) · σ(β·r_i + γ) · dN/dℓ
// β > 0 is the inverse temperature, γ the margin. The authors' TOFU code writes
// the margin inside the scale, β·(NLL/|y| − γ'): then γ = β·γ'.
template <class Reference, class Normalization>
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

// Token-mean negative log-likelihood: L = −Σ_i ℓ_θ(i) / Σ_i |y_i|.
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

}  // namespace simnpo::loss
