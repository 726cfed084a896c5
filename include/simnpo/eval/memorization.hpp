#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/jsonl.hpp"
#include "simnpo/data/text.hpp"
#include "simnpo/eval/rouge.hpp"
#include "simnpo/model/generate.hpp"
#include "simnpo/model/gpt.hpp"
#include "simnpo/tokenizer/bpe.hpp"

// MUSE's memorisation metrics (Shi et al., 2024), both ROUGE-L F1 of greedy text:
// VerbMem, of the continuation of a text's first tokens against its true
// continuation (verbatim memorisation); KnowMem, of answers to questions
// against the true answers (knowledge memorisation). Prompts longer than the
// model's n_positions are errors; generation stops at n_positions.
namespace simnpo::eval {

struct Memorization {
    std::vector<double> f1;                // per scored text or question
    std::vector<std::string> generations;  // the greedy text each F1 is of
    double mean = 0.0;                     // the metric: the mean F1
    std::size_t skipped = 0;               // VerbMem: texts with nothing after the prefix
};

struct VerbMemOptions {
    std::size_t prefix_tokens = 32;                         // the prompt: the text's first tokens
    std::int64_t max_new_tokens = 128;                      // the continuation's limit
    std::optional<std::int32_t> stop_token = std::nullopt;  // e.g. end-of-text
};

// The ROUGE-L F1 of each prompt's greedy continuation against its reference
// text, and their mean: what VerbMem and KnowMem both measure.
template <model::CpuModel Model>
Memorization continuation_f1(const Model& model, const tokenizer::Tokenizer& tokenizer,
                             std::span<const std::vector<std::int32_t>> prompts, std::span<const std::string> references,
                             const model::GenerateOptions& options, const char* metric) {
    if (prompts.empty()) fail(metric, ": nothing to score");
    if (prompts.size() != references.size())
        fail(metric, ": ", prompts.size(), " prompts for ", references.size(), " references");
    if (options.max_new_tokens < 1) fail(metric, ": max_new_tokens must be at least 1");
    const auto continuations = model::generate_greedy(model, prompts, options);
    Memorization result;
    double sum = 0.0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        result.generations.push_back(tokenizer.decode(continuations[i]));
        result.f1.push_back(rouge_l(result.generations.back(), references[i]).f1);
        sum += result.f1.back();
    }
    result.mean = sum / static_cast<double>(prompts.size());
    return result;
}

// VerbMem over texts a model was trained on whole (MUSE's books and news):
// each is cut after `prefix_tokens`, and the greedy continuation of the cut is
// compared with the rest (its first max_new_tokens). Texts no longer than the
// prefix are skipped and counted.
template <model::CpuModel Model>
Memorization verbmem(const Model& model, const tokenizer::Tokenizer& tokenizer,
                     std::span<const std::vector<std::int32_t>> texts, const VerbMemOptions& options = {}) {
    if (options.prefix_tokens == 0) fail("verbmem: prefix_tokens must be at least 1");
    if (options.max_new_tokens < 1) fail("verbmem: max_new_tokens must be at least 1");
    const auto max_new = static_cast<std::size_t>(options.max_new_tokens);
    std::vector<std::vector<std::int32_t>> prefixes;
    std::vector<std::string> rests;
    std::size_t skipped = 0;
    for (const auto& text : texts) {
        if (text.size() <= options.prefix_tokens) {
            ++skipped;
            continue;
        }
        prefixes.emplace_back(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(options.prefix_tokens));
        const auto rest = std::span<const std::int32_t>(text).subspan(options.prefix_tokens);
        rests.push_back(tokenizer.decode(rest.first(std::min(rest.size(), max_new))));
    }
    if (prefixes.empty() && skipped > 0)
        fail("verbmem: every text is at most ", options.prefix_tokens, " tokens long: nothing follows the prefix");
    Memorization result = continuation_f1(model, tokenizer, std::span<const std::vector<std::int32_t>>(prefixes), rests,
                                          {.max_new_tokens = options.max_new_tokens, .stop_token = options.stop_token},
                                          "verbmem");
    result.skipped = skipped;
    return result;
}

// VerbMem over question-answer pairs, where only the answers were learned:
// the prompt is the question and the answer's first `prefix_tokens` tokens,
// the reference the rest of the answer; the continuation ends at end-of-text.
// Answers no longer than the prefix are skipped and counted.
template <model::CpuModel Model>
Memorization verbmem(const Model& model, const data::TextFormat& format,
                     std::span<const data::QuestionAnswer> pairs, std::size_t prefix_tokens,
                     std::int64_t max_new_tokens = 200) {
    std::vector<std::vector<std::int32_t>> prompts;
    std::vector<std::string> rests;
    std::size_t skipped = 0;
    for (const auto& pair : pairs) {
        const auto answer = format.tokenizer().encode(pair.answer);
        if (answer.size() <= prefix_tokens) {
            ++skipped;
            continue;
        }
        auto prompt = format.prompt_ids(pair.question);
        prompt.insert(prompt.end(), answer.begin(), answer.begin() + static_cast<std::ptrdiff_t>(prefix_tokens));
        if (static_cast<std::int64_t>(prompt.size()) > model.config().max_positions())
            fail("verbmem: question ", prompts.size() + skipped + 1, ": its prompt is longer than n_positions = ",
                 model.config().max_positions());
        prompts.push_back(std::move(prompt));
        rests.push_back(format.tokenizer().decode(std::span<const std::int32_t>(answer).subspan(prefix_tokens)));
    }
    if (prompts.empty() && skipped > 0)
        fail("verbmem: every answer is at most ", prefix_tokens, " tokens long: nothing follows the prefix");
    Memorization result = continuation_f1(model, format.tokenizer(), std::span<const std::vector<std::int32_t>>(prompts),
                                          rests, {.max_new_tokens = max_new_tokens, .stop_token = format.end_of_answer_id()},
                                          "verbmem");
    result.skipped = skipped;
    return result;
}

// KnowMem: the greedy answer to each question (ending at end-of-text) against its answer.
template <model::CpuModel Model>
Memorization knowmem(const Model& model, const data::TextFormat& format,
                     std::span<const data::QuestionAnswer> pairs, std::int64_t max_new_tokens = 200) {
    std::vector<std::vector<std::int32_t>> prompts;
    std::vector<std::string> answers;
    for (const auto& pair : pairs) {
        prompts.push_back(format.prompt_ids(pair.question));
        if (static_cast<std::int64_t>(prompts.back().size()) > model.config().max_positions())
            fail("knowmem: question ", prompts.size(), ": its prompt is longer than n_positions = ",
                 model.config().max_positions());
        answers.push_back(pair.answer);
    }
    return continuation_f1(model, format.tokenizer(), std::span<const std::vector<std::int32_t>>(prompts), answers,
                           {.max_new_tokens = max_new_tokens, .stop_token = format.end_of_answer_id()}, "knowmem");
}

}  // namespace simnpo::eval
