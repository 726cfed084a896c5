#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/gpt.hpp"

// Membership inference: how well an attacker tells the examples a model was
// trained on (members) from ones it never saw (non-members), from the model's
// token log-probabilities alone.
//
// Every score here is loss-like: higher means "looks less like a member". The
// AUC is MUSE's (Shi et al., 2024): members are the positive class ranked by
// these scores, so a model that remembers its members scores an AUC near 0,
// one that cannot tell them apart 0.5, and an attacker's usual AUC is 1 − it.
namespace simnpo::eval {

enum class Attack { loss, zlib, min_k, min_k_plus_plus };
inline constexpr std::array<Attack, 4> attacks = {Attack::loss, Attack::zlib, Attack::min_k, Attack::min_k_plus_plus};

inline const char* attack_name(Attack attack) {
    switch (attack) {
        case Attack::loss: return "loss";
        case Attack::zlib: return "zlib";
        case Attack::min_k: return "min_k";
        case Attack::min_k_plus_plus: return "min_k++";
    }
    return "";
}

// What the attacks read of each scored token of one example: log π(token),
// and the mean and standard deviation of log π(z) for z drawn from the
// model's own next-token distribution at that position.
struct TokenStatistics {
    std::vector<double> logprob, mean, stddev;
};

// One position's statistics, accumulated over chunks of its logits [V] (the
// whole row at once, or the fused head's chunks) in double. Each chunk c, with
// s = logit − max_c and e = exp(s), gives its weight W_c = Σ e, the mean m_c
// of the logits under e and M_c = Σ e·(logit − m_c)² (two passes: never
// negative); chunks combine by Chan et al.'s pairwise update, rescaled to the
// running maximum. Then log Z = max + log W, μ = m − log Z, σ² = M / W, and
// log π(target) = logit[target] − log Z.
class TokenMoments {
public:
    // The chunk `logits` holds the columns [first, first + logits.size()).
    // `scratch` holds e between the passes.
    template <class Scalar>
    void add(std::span<const Scalar> logits, std::int64_t first, std::int32_t target, std::vector<double>& scratch) {
        if (logits.empty()) return;
        double max = -std::numeric_limits<double>::infinity();
        for (const Scalar x : logits) max = std::max(max, static_cast<double>(x));
        scratch.resize(logits.size());
        double weight = 0.0, weighted = 0.0;
        for (std::size_t v = 0; v < logits.size(); ++v) {
            const double shifted = static_cast<double>(logits[v]) - max;
            scratch[v] = std::exp(shifted);
            weight += scratch[v];
            weighted += scratch[v] * shifted;
        }
        const double mean_shifted = weighted / weight;
        double m2 = 0.0;
        for (std::size_t v = 0; v < logits.size(); ++v) {
            const double d = static_cast<double>(logits[v]) - max - mean_shifted;
            m2 += scratch[v] * d * d;
        }
        const std::int64_t column = target - first;
        if (column >= 0 && column < static_cast<std::int64_t>(logits.size()))
            target_logit_ = static_cast<double>(logits[static_cast<std::size_t>(column)]);
        combine(max, weight, max + mean_shifted, m2);
    }

    // Appends the position's log π(target), μ and σ to `stats`.
    void finish(TokenStatistics& stats) const {
        const double log_z = max_ + std::log(weight_);
        stats.logprob.push_back(target_logit_ - log_z);
        stats.mean.push_back(mean_ - log_z);
        stats.stddev.push_back(std::sqrt(m2_ / weight_));
    }

private:
    void combine(double max, double weight, double mean, double m2) {
        if (weight_ == 0.0) {
            max_ = max, weight_ = weight, mean_ = mean, m2_ = m2;
            return;
        }
        const double top = std::max(max_, max);
        const double a = std::exp(max_ - top), b = std::exp(max - top);
        const double wa = weight_ * a, wb = weight * b, total = wa + wb, delta = mean - mean_;
        mean_ += delta * wb / total;
        m2_ = m2_ * a + m2 * b + delta * delta * wa * wb / total;
        weight_ = total;
        max_ = top;
    }

    double max_ = 0.0, weight_ = 0.0, mean_ = 0.0, m2_ = 0.0;  // W and M relative to exp(max_)
    double target_logit_ = std::numeric_limits<double>::quiet_NaN();
};

// One position's statistics from its whole row of logits [V] and its target.
template <class Scalar>
void add_token_statistics(TokenStatistics& stats, std::span<const Scalar> logits, std::int32_t target) {
    if (target < 0 || static_cast<std::size_t>(target) >= logits.size())
        fail("token_statistics: target ", target, " is outside the vocabulary of ", logits.size());
    std::vector<double> scratch;
    TokenMoments moments;
    moments.add(logits, 0, target, scratch);
    moments.finish(stats);
}

// Each example's answer-token statistics under `model`, `batch_size` examples
// a forward. On the CPU the logits are never held: the statistics accumulate
// over the fused head's chunks of the vocabulary (CausalLM::visit_logits);
// elsewhere the forward keeps them and each row is one chunk.
template <model::CausalModel Model>
std::vector<TokenStatistics> token_statistics(const Model& model, std::span<const data::Example> examples,
                                              std::size_t batch_size = 16) {
    using Scalar = typename Model::scalar_type;
    constexpr bool fused = requires { requires Model::fuses_head; };
    if (batch_size == 0) fail("token_statistics: batch_size must be at least 1");
    const auto V = static_cast<std::int64_t>(model.config().vocab_size);
    std::vector<TokenStatistics> result(examples.size());
    std::vector<Scalar> logits;
    for (std::size_t first = 0; first < examples.size(); first += batch_size) {
        const auto chunk = examples.subspan(first, std::min(batch_size, examples.size() - first));
        const data::Batch batch = data::make_batch(chunk);
        // The forward checks every target against the vocabulary.
        const auto scores = model.score(batch, fused ? model::Logits::drop : model::Logits::keep);
        const std::span<const std::int64_t> positions = scores.positions;
        const auto N = static_cast<std::int64_t>(positions.size());
        std::vector<TokenMoments> moments(positions.size());
        // Adds the chunk [N, vc] (row stride ld) of columns [v0, v0 + vc) to every position's moments.
        const auto add_chunk = [&](std::int64_t v0, std::int64_t vc, const Scalar* values, std::int64_t ld) {
#pragma omp parallel
            {
                std::vector<double> scratch;
#pragma omp for schedule(static)
                for (std::int64_t n = 0; n < N; ++n)
                    moments[static_cast<std::size_t>(n)].add(
                        std::span<const Scalar>(values + n * ld, static_cast<std::size_t>(vc)), v0,
                        batch.targets.data()[positions[static_cast<std::size_t>(n)]], scratch);
            }
        };
        if constexpr (fused) {
            model.visit_logits(scores, add_chunk);
        } else {
            logits.resize(static_cast<std::size_t>(N * V));
            copy_to_host(model.backend(), std::span<Scalar>(logits), scores.logits.data());
            add_chunk(0, V, logits.data(), V);
        }
        // Scored positions come in row order.
        for (std::size_t n = 0; n < positions.size(); ++n)
            moments[n].finish(result[first + static_cast<std::size_t>(positions[n] / scores.columns)]);
        // A non-finite statistic would become a NaN score, and a NaN AUC.
        for (std::size_t b = 0; b < chunk.size(); ++b) {
            const TokenStatistics& stats = result[first + b];
            for (const auto* values : {&stats.logprob, &stats.mean, &stats.stddev})
                if (!std::all_of(values->begin(), values->end(), [](double x) { return std::isfinite(x); }))
                    fail("token_statistics: example ", first + b + 1, ": the model's log-probabilities are not finite");
        }
    }
    return result;
}

// LOSS (Yeom et al., 2018): the mean NLL of the tokens.
inline double loss_score(std::span<const double> logprobs) {
    if (logprobs.empty()) fail("loss_score: no tokens");
    double sum = 0.0;
    for (const double l : logprobs) sum += l;
    return -sum / static_cast<double>(logprobs.size());
}

// The length of `text` compressed by zlib at its default level, in bytes (as
// Python's len(zlib.compress(text.encode()))).
inline std::size_t zlib_length(std::string_view text) {
    uLongf length = compressBound(static_cast<uLong>(text.size()));
    std::vector<Bytef> out(length);
    const int status = compress2(out.data(), &length, reinterpret_cast<const Bytef*>(text.data()),
                                 static_cast<uLong>(text.size()), Z_DEFAULT_COMPRESSION);
    if (status != Z_OK) fail("zlib_length: compress2 failed (status ", status, ")");
    return length;
}

// zlib (Carlini et al., 2021): the mean NLL over the zlib length of the text:
// text that is cheap to compress is cheap to predict without having seen it.
inline double zlib_score(std::span<const double> logprobs, std::string_view text) {
    return loss_score(logprobs) / static_cast<double>(zlib_length(text));
}

// The number of lowest values Min-K% averages: ⌊n·k⌋ as the reference code
// computes it (int(n * k) in double), at least 1.
inline std::size_t min_k_count(std::size_t n, double k) {
    return std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(n) * k));
}

inline void check_k(double k) {
    if (!(k > 0.0 && k <= 1.0)) fail("Min-K%: k must lie in (0, 1], got ", k);
}

// Min-K% (Shi et al., 2024): minus the mean of the lowest k fraction of the values.
inline double min_k_score(std::span<const double> values, double k) {
    check_k(k);
    if (values.empty()) fail("min_k_score: no tokens");
    std::vector<double> sorted(values.begin(), values.end());
    const std::size_t count = min_k_count(sorted.size(), k);
    std::partial_sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(count), sorted.end());
    double sum = 0.0;
    for (std::size_t i = 0; i < count; ++i) sum += sorted[i];
    return -sum / static_cast<double>(count);
}

// Min-K%++ (Zhang et al., 2024): Min-K% of (log π(token) − μ) / σ, each token
// standardised by its position's distribution. Where σ = 0 (one token takes all
// the mass, or all are equal) log π(token) = μ up to rounding and the value is 0.
inline double min_k_plus_plus_score(const TokenStatistics& stats, double k) {
    std::vector<double> standardised(stats.logprob.size());
    for (std::size_t t = 0; t < standardised.size(); ++t)
        standardised[t] = stats.stddev[t] > 0.0 ? (stats.logprob[t] - stats.mean[t]) / stats.stddev[t] : 0.0;
    return min_k_score(standardised, k);
}

// Each attack's score of each example, indexed by Attack.
using MiaScores = std::array<std::vector<double>, attacks.size()>;

// The four scores of each example; `texts[i]` is what zlib compresses (the
// scored text, e.g. the answer).
inline MiaScores mia_scores(std::span<const TokenStatistics> stats, std::span<const std::string> texts, double k) {
    check_k(k);
    if (texts.size() != stats.size()) fail("mia_scores: ", texts.size(), " texts for ", stats.size(), " examples");
    MiaScores scores;
    for (std::size_t i = 0; i < stats.size(); ++i) {
        scores[static_cast<std::size_t>(Attack::loss)].push_back(loss_score(stats[i].logprob));
        scores[static_cast<std::size_t>(Attack::zlib)].push_back(zlib_score(stats[i].logprob, texts[i]));
        scores[static_cast<std::size_t>(Attack::min_k)].push_back(min_k_score(stats[i].logprob, k));
        scores[static_cast<std::size_t>(Attack::min_k_plus_plus)].push_back(min_k_plus_plus_score(stats[i], k));
    }
    return scores;
}

// The area under the ROC curve with members as the positive class: the chance
// that a random member scores above a random non-member, ties counted as half
// (sklearn.metrics.roc_auc_score). Exact, from the rank sum (Mann-Whitney U).
inline double auc(std::span<const double> members, std::span<const double> nonmembers) {
    if (members.empty()) fail("auc: no members: the AUC needs examples of both classes");
    if (nonmembers.empty()) fail("auc: no non-members: the AUC needs examples of both classes");
    struct Scored {
        double score;
        bool member;
    };
    std::vector<Scored> all;
    all.reserve(members.size() + nonmembers.size());
    for (const double s : members) all.push_back({s, true});
    for (const double s : nonmembers) all.push_back({s, false});
    for (const auto& s : all)
        if (std::isnan(s.score)) fail("auc: a ", s.member ? "member's" : "non-member's", " score is NaN");
    std::sort(all.begin(), all.end(), [](const Scored& a, const Scored& b) { return a.score < b.score; });
    // Twice the members' rank sum, ties sharing their mean rank: integers throughout.
    std::uint64_t twice_rank_sum = 0;
    for (std::size_t begin = 0; begin < all.size();) {
        std::size_t end = begin;
        std::uint64_t tied_members = 0;
        while (end < all.size() && all[end].score == all[begin].score) tied_members += all[end++].member;
        twice_rank_sum += tied_members * (begin + 1 + end);  // ranks begin+1 .. end
        begin = end;
    }
    const auto m = static_cast<std::uint64_t>(members.size()), n = static_cast<std::uint64_t>(nonmembers.size());
    const std::uint64_t twice_u = twice_rank_sum - m * (m + 1);
    return static_cast<double>(twice_u) / (2.0 * static_cast<double>(m) * static_cast<double>(n));
}

// Each attack's AUC, members against non-members.
inline std::array<double, attacks.size()> aucs(const MiaScores& members, const MiaScores& nonmembers) {
    std::array<double, attacks.size()> result{};
    for (std::size_t a = 0; a < attacks.size(); ++a) result[a] = auc(members[a], nonmembers[a]);
    return result;
}

// MUSE's privacy leakage, in percent: (AUC_model − AUC_retain) / AUC_retain × 100,
// AUC_retain the retain model's on the same members and non-members. 0 is
// ideal; a model that still remembers its forget set is strongly negative (the
// model before unlearning near −100), an over-unlearned one positive.
inline double privleak(double auc_model, double auc_retain) {
    if (!(auc_retain > 0.0))
        fail("privleak: the retain model's AUC is ", auc_retain, ": the relative leakage needs it above 0");
    return (auc_model - auc_retain) / auc_retain * 100.0;
}

}  // namespace simnpo::eval
