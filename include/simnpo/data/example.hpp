#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "simnpo/core/error.hpp"

namespace simnpo::data {

// What the data layer needs to know of a model: its vocabulary and its longest
// sequence, with the config key that sets it (for error messages). Every
// family's config converts to it.
struct Limits {
    std::int64_t vocab_size = 0;
    std::int64_t max_positions = 0;
    const char* positions_key = "n_positions";
};

// One training or evaluation example: the model reads prompt ++ answer and is
// scored on the answer tokens only (DESIGN §5).
struct Example {
    std::vector<std::int32_t> prompt_ids;
    std::vector<std::int32_t> answer_ids;

    friend bool operator==(const Example&, const Example&) = default;
};

// FNV-1a over the prompt, a separator and the answer: a hash that is the same
// on every platform, so that anything keyed on it (DPO's refusal pairing) is
// reproducible.
struct ExampleHash {
    std::size_t operator()(const Example& example) const {
        std::uint64_t hash = 14695981039346656037ull;
        const auto mix = [&](std::uint32_t word) {
            for (int byte = 0; byte < 4; ++byte) {
                hash ^= (word >> (8 * byte)) & 0xffu;
                hash *= 1099511628211ull;
            }
        };
        for (const auto id : example.prompt_ids) mix(static_cast<std::uint32_t>(id));
        mix(0xffffffffu);  // never a token id: (a, bc) and (ab, c) differ
        for (const auto id : example.answer_ids) mix(static_cast<std::uint32_t>(id));
        return static_cast<std::size_t>(hash);
    }
};

// A right-padded batch. Position t of row b reads tokens(b, t) and, when it is
// scored, predicts targets(b, t) = the next token; unscored positions hold -1.
// Positions at or past lengths[b] are padding: never attended to, never scored.
struct Batch {
    xt::xtensor<std::int32_t, 2> tokens;   // [B, T], padding = 0
    xt::xtensor<std::int32_t, 2> targets;  // [B, T], -1 = not scored
    std::vector<std::int64_t> lengths;     // [B], valid positions of each row

    std::int64_t rows() const { return static_cast<std::int64_t>(tokens.shape()[0]); }
    std::int64_t columns() const { return static_cast<std::int64_t>(tokens.shape()[1]); }
};

// Builds the batch for examples already checked against the model (see
// check_example); the last answer token is predicted but never read.
inline Batch make_batch(std::span<const Example> examples) {
    if (examples.empty()) fail("make_batch: no examples");
    std::size_t width = 0;
    for (const auto& example : examples) {
        if (example.prompt_ids.empty() || example.answer_ids.empty())
            fail("make_batch: an example has an empty prompt or answer");
        width = std::max(width, example.prompt_ids.size() + example.answer_ids.size() - 1);
    }
    Batch batch;
    batch.tokens = xt::zeros<std::int32_t>({examples.size(), width});
    batch.targets = xt::xtensor<std::int32_t, 2>::from_shape({examples.size(), width});
    batch.targets.fill(-1);
    for (std::size_t b = 0; b < examples.size(); ++b) {
        const auto& prompt = examples[b].prompt_ids;
        const auto& answer = examples[b].answer_ids;
        std::vector<std::int32_t> sequence(prompt);
        sequence.insert(sequence.end(), answer.begin(), answer.end());
        const std::size_t length = sequence.size() - 1;
        for (std::size_t t = 0; t < length; ++t) {
            batch.tokens(b, t) = sequence[t];
            if (t + 1 >= prompt.size()) batch.targets(b, t) = sequence[t + 1];
        }
        batch.lengths.push_back(static_cast<std::int64_t>(length));
    }
    return batch;
}

// The checks DESIGN §5 asks of every example against a model; `where` names
// the file and line. Returns normally when the example is usable.
inline void check_example(const Example& example, const Limits& limits, const std::string& where) {
    if (example.prompt_ids.empty())
        fail(where, ": empty prompt (the first answer token needs a token to be predicted from)");
    if (example.answer_ids.empty()) fail(where, ": empty answer (nothing to score)");
    const auto check_ids = [&](const std::vector<std::int32_t>& ids, const char* field) {
        for (const auto id : ids)
            if (id < 0 || id >= limits.vocab_size)
                fail(where, ": token id ", id, " in '", field, "' is outside the vocabulary [0, ",
                     limits.vocab_size, ")");
    };
    check_ids(example.prompt_ids, "prompt_ids");
    check_ids(example.answer_ids, "answer_ids");
    const auto length = static_cast<std::int64_t>(example.prompt_ids.size() + example.answer_ids.size());
    if (length > limits.max_positions)
        fail(where, ": sequence of ", length, " tokens is longer than ", limits.positions_key, " = ",
             limits.max_positions);
}

}  // namespace simnpo::data
