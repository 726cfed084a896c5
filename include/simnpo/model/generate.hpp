#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/model/causal_lm.hpp"

namespace simnpo::model {

// The family's KV-cache decoder for `Model` (Gpt2Decoder, LlamaDecoder): feed(token)
// returns the logits [V] of the token after it.
template <CpuModel Model>
using Decoder = typename Model::family_type::template Decoder<typename Model::scalar_type>;

struct GenerateOptions {
    std::int64_t max_new_tokens = 128;
    std::optional<std::int32_t> stop_token = std::nullopt;  // ends the generation; not part of the result
};

// The greedy continuation of `prompt`: the most probable token at each step
// (the lowest id on a tie), until the stop token, max_new_tokens, or the
// model's maximum sequence length.
template <CpuModel Model>
std::vector<std::int32_t> generate_greedy(const Model& model, std::span<const std::int32_t> prompt,
                                          const GenerateOptions& options = {}) {
    if (prompt.empty()) fail("generate_greedy: empty prompt");
    if (static_cast<std::int64_t>(prompt.size()) > model.config().max_positions())
        fail("generate_greedy: prompt of ", prompt.size(), " tokens is longer than ",
             data::Limits(model.config()).positions_key, " = ", model.config().max_positions());
    Decoder<Model> decoder(model);
    const auto* logits = &decoder.feed(prompt.front());
    for (const auto token : prompt.subspan(1)) logits = &decoder.feed(token);
    std::vector<std::int32_t> generated;
    while (static_cast<std::int64_t>(generated.size()) < options.max_new_tokens) {
        // NaN compares false: maxCoeff would pick token 0 at every step.
        if (!logits->allFinite())
            fail("generate_greedy: the model's logits are not finite after ", decoder.position(), " tokens");
        Eigen::Index best = 0;
        logits->maxCoeff(&best);
        const auto token = static_cast<std::int32_t>(best);
        if (options.stop_token == token) break;
        generated.push_back(token);
        if (decoder.position() == model.config().max_positions()) break;
        logits = &decoder.feed(token);
    }
    return generated;
}

// The greedy continuation of each prompt, the prompts spread over the threads.
template <CpuModel Model>
std::vector<std::vector<std::int32_t>> generate_greedy(const Model& model,
                                                       std::span<const std::vector<std::int32_t>> prompts,
                                                       const GenerateOptions& options = {}) {
    std::vector<std::vector<std::int32_t>> results(prompts.size());
    std::vector<std::string> errors(prompts.size());
    model.parameters();  // rounded here in BF16 mode, not by every thread's decoder
#pragma omp parallel for schedule(dynamic)
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        try {
            results[i] = generate_greedy(model, std::span<const std::int32_t>(prompts[i]), options);
        } catch (const Error& error) {
            errors[i] = error.what();  // an exception must not leave the parallel region
        } catch (const std::bad_alloc&) {
            errors[i] = "out of memory for the decoder's key-value cache";
        }
    }
    for (std::size_t i = 0; i < prompts.size(); ++i)
        if (!errors[i].empty()) fail("prompt ", i + 1, ": ", errors[i]);
    return results;
}

}  // namespace simnpo::model
