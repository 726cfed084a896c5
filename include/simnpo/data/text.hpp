#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/tokenizer/bpe.hpp"

namespace simnpo::data {

// TOFU's prompt: the question, then the cue the answer follows.
inline constexpr std::string_view default_prompt_template = "Question: {question}\nAnswer: ";

// How a text example {"question", "answer"} becomes ids (DESIGN §5): the prompt
// is the template with every "{question}" replaced by the question; the answer
// is the answer's tokens followed by the end-of-text token, which is scored,
// so that a model learns where an answer stops. Prompt and answer are
// tokenised apart, so the boundary never falls inside a token.
class TextFormat {
public:
    explicit TextFormat(const tokenizer::Gpt2Tokenizer& tokenizer,
                        std::string prompt_template = std::string(default_prompt_template))
        : tokenizer_(&tokenizer), template_(std::move(prompt_template)), end_of_text_(tokenizer.end_of_text_id()) {
        if (template_.find(placeholder) == std::string::npos)
            fail("prompt template ", tokenizer::detail::json_string(template_), " has no ", placeholder);
    }

    static constexpr std::string_view placeholder = "{question}";

    const tokenizer::Gpt2Tokenizer& tokenizer() const { return *tokenizer_; }
    const std::string& prompt_template() const { return template_; }
    std::int32_t end_of_text_id() const { return end_of_text_; }

    std::string prompt(std::string_view question) const {
        std::string result;
        std::size_t from = 0;
        for (std::size_t at; (at = template_.find(placeholder, from)) != std::string::npos; from = at + placeholder.size())
            result.append(template_, from, at - from).append(question);
        return result.append(template_, from);
    }

    std::vector<std::int32_t> prompt_ids(std::string_view question) const { return tokenizer_->encode(prompt(question)); }

    std::vector<std::int32_t> answer_ids(std::string_view answer) const {
        return *answer_ids(answer, std::numeric_limits<std::size_t>::max());
    }

    // The answer's ids, or nullopt as soon as they are known to be more than `max_tokens`.
    std::optional<std::vector<std::int32_t>> answer_ids(std::string_view answer, std::size_t max_tokens) const {
        if (max_tokens == 0) return std::nullopt;
        auto ids = tokenizer_->encode_at_most(answer, max_tokens - 1);
        if (ids) ids->push_back(end_of_text_);
        return ids;
    }

    Example example(std::string_view question, std::string_view answer) const {
        return {prompt_ids(question), answer_ids(answer)};
    }

    // The example, or nullopt as soon as prompt and answer are known to be more
    // than `max_tokens` together (a model's n_positions).
    std::optional<Example> example(std::string_view question, std::string_view answer, std::size_t max_tokens) const {
        auto prompt_tokens = tokenizer_->encode_at_most(prompt(question), max_tokens);
        if (!prompt_tokens) return std::nullopt;
        auto answer_tokens = answer_ids(answer, max_tokens - prompt_tokens->size());
        if (!answer_tokens) return std::nullopt;
        return Example{std::move(*prompt_tokens), std::move(*answer_tokens)};
    }

private:
    const tokenizer::Gpt2Tokenizer* tokenizer_;
    std::string template_;
    std::int32_t end_of_text_;
};

}  // namespace simnpo::data
