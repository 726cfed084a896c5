#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/tokenizer/chat_template.hpp"
#include "simnpo/tokenizer/tokenizer.hpp"

namespace simnpo::data {

// TOFU's prompt: the question, then the cue the answer follows.
inline constexpr std::string_view default_prompt_template = "Question: {question}\nAnswer: ";

// How a text example {"question", "answer"} becomes ids (DESIGN §5), in one of
// two modes.
//
// Prompt template: the prompt is the template with every "{question}" replaced
// by the question, after the tokens the tokenizer puts first (a BOS where it
// adds one); the answer is the answer's tokens followed by the EOS token,
// which is scored, so that a model learns where an answer stops. Prompt and
// answer are tokenised apart, so the boundary never falls inside a token.
//
// Chat template: the question is a user message; the prompt is the template
// rendered with the generation prompt, the answer what the template renders
// for an assistant message holding it, up to and with its end-of-turn token
// (<|eot_id|>, <|im_end|>, <|end|>, </s>, ...). The conversation is tokenised
// whole, as the model saw it in training, and cut after the prompt's tokens;
// where a token spans that cut (an answer that begins with whitespace), the
// rest of the rendered text is tokenised apart instead. A template whose
// conversation does not begin with its prompt is an Error. The end-of-turn
// token (the first added token of a rendered answer, or else the EOS) is where
// generation stops.
class TextFormat {
public:
    explicit TextFormat(const tokenizer::Tokenizer& tokenizer,
                        std::string prompt_template = std::string(default_prompt_template))
        : tokenizer_(&tokenizer), template_(std::move(prompt_template)), end_of_answer_(tokenizer.required_eos_id()) {
        if (template_.find(placeholder) == std::string::npos)
            fail("prompt template ", tokenizer::utf8::json_string(template_), " has no ", placeholder);
    }

    static TextFormat chat(const tokenizer::Tokenizer& tokenizer, tokenizer::ChatTemplate chat_template) {
        TextFormat format(tokenizer, std::make_shared<const tokenizer::ChatTemplate>(std::move(chat_template)));
        const auto probe = format.chat_ids("What is the question?", "This is the answer.", std::numeric_limits<std::size_t>::max());
        for (const std::int32_t id : probe->answer_ids)
            if (std::ranges::any_of(tokenizer.added_tokens(), [&](const auto& added) { return added.id == id; })) {
                format.end_of_answer_ = id;
                return format;
            }
        format.end_of_answer_ = tokenizer.required_eos_id();
        return format;
    }

    static constexpr std::string_view placeholder = "{question}";

    const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
    bool is_chat() const { return chat_ != nullptr; }
    const std::string& prompt_template() const { return template_; }
    // The token that ends an answer: where generation stops.
    std::int32_t end_of_answer_id() const { return end_of_answer_; }

    // The prompt's text.
    std::string prompt(std::string_view question) const {
        if (chat_) return render(question, std::nullopt);
        std::string result;
        std::size_t from = 0;
        for (std::size_t at; (at = template_.find(placeholder, from)) != std::string::npos; from = at + placeholder.size())
            result.append(template_, from, at - from).append(question);
        return result.append(template_, from);
    }

    std::vector<std::int32_t> prompt_ids(std::string_view question) const {
        if (chat_) return tokenizer_->encode(prompt(question));
        std::vector<std::int32_t> ids(tokenizer_->special_prefix().begin(), tokenizer_->special_prefix().end());
        const auto text = tokenizer_->encode(prompt(question));
        ids.insert(ids.end(), text.begin(), text.end());
        return ids;
    }

    // An answer's ids alone (DPO's refusals, paired with questions later), or
    // nullopt as soon as they are known to be more than `max_tokens`. In chat
    // mode: what the template renders for the reply (to an empty question).
    std::optional<std::vector<std::int32_t>> answer_ids(std::string_view answer, std::size_t max_tokens) const {
        if (chat_) {
            auto ids = chat_ids("", answer, std::numeric_limits<std::size_t>::max());
            if (ids->answer_ids.size() > max_tokens) return std::nullopt;
            return std::move(ids->answer_ids);
        }
        if (max_tokens == 0) return std::nullopt;
        auto ids = tokenizer_->encode_at_most(answer, max_tokens - 1);
        if (ids) ids->push_back(end_of_answer_);
        return ids;
    }

    Example example(std::string_view question, std::string_view answer) const {
        return *example(question, answer, std::numeric_limits<std::size_t>::max());
    }

    // The example, or nullopt as soon as prompt and answer are known to be more
    // than `max_tokens` together (a model's n_positions).
    std::optional<Example> example(std::string_view question, std::string_view answer, std::size_t max_tokens) const {
        if (chat_) return chat_ids(question, answer, max_tokens);
        const auto& prefix = tokenizer_->special_prefix();
        if (prefix.size() > max_tokens) return std::nullopt;
        auto prompt_tokens = tokenizer_->encode_at_most(prompt(question), max_tokens - prefix.size());
        if (!prompt_tokens) return std::nullopt;
        prompt_tokens->insert(prompt_tokens->begin(), prefix.begin(), prefix.end());
        const std::size_t room = max_tokens - prompt_tokens->size();
        if (room == 0) return std::nullopt;
        auto answer_tokens = tokenizer_->encode_at_most(answer, room - 1);
        if (!answer_tokens) return std::nullopt;
        answer_tokens->push_back(end_of_answer_);
        return Example{std::move(*prompt_tokens), std::move(*answer_tokens)};
    }

private:
    TextFormat(const tokenizer::Tokenizer& tokenizer, std::shared_ptr<const tokenizer::ChatTemplate> chat)
        : tokenizer_(&tokenizer), chat_(std::move(chat)) {}

    // The template rendered for the question alone (with the generation
    // prompt) or with the answer as the assistant's reply.
    std::string render(std::string_view question, std::optional<std::string_view> answer) const {
        std::vector<tokenizer::ChatMessage> messages{{"user", std::string(question)}};
        if (answer) messages.push_back({"assistant", std::string(*answer)});
        return chat_->render(messages, {.bos_token = tokenizer_->bos_token().value_or(""),
                                        .eos_token = tokenizer_->eos_token().value_or(""),
                                        .add_generation_prompt = !answer});
    }

    std::optional<Example> chat_ids(std::string_view question, std::string_view answer, std::size_t max_tokens) const {
        const std::string prompt_text = render(question, std::nullopt);
        const std::string whole_text = render(question, answer);
        if (!whole_text.starts_with(prompt_text))
            fail("chat template: the conversation for ", tokenizer::utf8::json_string(question),
                 " does not begin with its generation prompt, so the answer cannot be cut from it");
        auto prompt_tokens = tokenizer_->encode_at_most(prompt_text, max_tokens);
        if (!prompt_tokens) return std::nullopt;
        auto whole = tokenizer_->encode_at_most(whole_text, max_tokens);
        if (!whole) return std::nullopt;
        std::vector<std::int32_t> answer_tokens;
        if (whole->size() > prompt_tokens->size() && std::equal(prompt_tokens->begin(), prompt_tokens->end(), whole->begin())) {
            answer_tokens.assign(whole->begin() + static_cast<std::ptrdiff_t>(prompt_tokens->size()), whole->end());
        } else {
            // A token spans the end of the prompt (an answer that begins with
            // whitespace the prompt ends with): the rest is tokenised apart.
            auto rest = tokenizer_->encode_at_most(std::string_view(whole_text).substr(prompt_text.size()),
                                                   max_tokens - prompt_tokens->size());
            if (!rest) return std::nullopt;
            answer_tokens = std::move(*rest);
        }
        if (answer_tokens.empty()) fail("chat template: renders nothing for the answer to ", tokenizer::utf8::json_string(question));
        return Example{std::move(*prompt_tokens), std::move(answer_tokens)};
    }

    const tokenizer::Tokenizer* tokenizer_;
    std::string template_;
    std::shared_ptr<const tokenizer::ChatTemplate> chat_;  // null in prompt-template mode
    std::int32_t end_of_answer_ = -1;
};

}  // namespace simnpo::data
