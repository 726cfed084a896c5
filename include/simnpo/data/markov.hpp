#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/core/rng.hpp"
#include "simnpo/data/example.hpp"

namespace simnpo::data {

// One source of the paper's mixture of Markov chains (Fan et al., 2024,
// synthetic study): a chain over `states` states that favours its own subset.
// From a state inside the subset it moves to each subset state with
// probability (1 − leakage)/|subset| and to each other state with
// leakage/(states − |subset|); from a state outside the subset it moves
// uniformly. It starts in a subset state with probability (1 − leakage)/|subset|
// each, elsewhere with leakage/(states − |subset|) each.
class MarkovSource {
public:
    MarkovSource(std::vector<std::int32_t> subset, double leakage = 0.2, std::int32_t states = 10)
        : subset_(std::move(subset)), leakage_(leakage), states_(states) {
        if (states_ < 2) fail("MarkovSource: at least 2 states, got ", states_);
        if (subset_.empty() || static_cast<std::int32_t>(subset_.size()) >= states_)
            fail("MarkovSource: the subset must hold between 1 and ", states_ - 1, " states, got ", subset_.size());
        std::vector<bool> seen(static_cast<std::size_t>(states_), false);
        for (const auto s : subset_) {
            if (s < 0 || s >= states_) fail("MarkovSource: state ", s, " is outside [0, ", states_, ")");
            if (seen[static_cast<std::size_t>(s)]) fail("MarkovSource: state ", s, " is in the subset twice");
            seen[static_cast<std::size_t>(s)] = true;
        }
        if (!(leakage_ >= 0.0 && leakage_ <= 1.0)) fail("MarkovSource: leakage must be in [0, 1], got ", leakage_);
        in_subset_ = std::move(seen);
    }

    std::int32_t states() const { return states_; }
    bool in_subset(std::int32_t state) const { return in_subset_[static_cast<std::size_t>(state)]; }

    // P(first state = s).
    double initial(std::int32_t s) const { return favoured(s); }

    // P(next = to | current = from).
    double transition(std::int32_t from, std::int32_t to) const {
        return in_subset(from) ? favoured(to) : 1.0 / static_cast<double>(states_);
    }

    // `count` sequences of `length` states; each an Example whose prompt is the
    // first state and whose answer is the rest (every later state is scored).
    std::vector<Example> sample(std::size_t count, std::size_t length, Rng& rng) const {
        if (length < 2) fail("MarkovSource: sequences need at least 2 states (a prompt and an answer), got ", length);
        std::vector<Example> examples(count);
        for (auto& example : examples) {
            std::int32_t state = draw([&](std::int32_t s) { return initial(s); }, rng);
            example.prompt_ids = {state};
            example.answer_ids.reserve(length - 1);
            for (std::size_t t = 1; t < length; ++t) {
                state = draw([&](std::int32_t s) { return transition(state, s); }, rng);
                example.answer_ids.push_back(state);
            }
        }
        return examples;
    }

private:
    double favoured(std::int32_t s) const {
        const auto inside = static_cast<double>(subset_.size());
        return in_subset(s) ? (1.0 - leakage_) / inside : leakage_ / (static_cast<double>(states_) - inside);
    }

    // A state drawn from the distribution `probability` by inversion.
    template <class Probability>
    std::int32_t draw(Probability&& probability, Rng& rng) const {
        const double u = rng.uniform();
        double cumulative = 0.0;
        for (std::int32_t s = 0; s + 1 < states_; ++s) {
            cumulative += probability(s);
            if (u < cumulative) return s;
        }
        return states_ - 1;  // the remainder, whatever rounding left of it
    }

    std::vector<std::int32_t> subset_;
    double leakage_;
    std::int32_t states_;
    std::vector<bool> in_subset_;
};

// The first round(train_fraction · n) examples, and the rest: samples are
// independent draws, so a prefix split is as random as any.
struct Split {
    std::vector<Example> train, test;
};

inline Split split(std::vector<Example> examples, double train_fraction) {
    if (!(train_fraction >= 0.0 && train_fraction <= 1.0))
        fail("split: train_fraction must be in [0, 1], got ", train_fraction);
    const auto cut = static_cast<std::size_t>(static_cast<double>(examples.size()) * train_fraction + 0.5);
    Split result;
    result.test.assign(examples.begin() + static_cast<std::ptrdiff_t>(cut), examples.end());
    examples.resize(cut);
    result.train = std::move(examples);
    return result;
}

}  // namespace simnpo::data
