// Text data on the command line (DESIGN §5): which tokenizer and which prompt
// or chat template turn {"question", "answer"} lines into ids.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <simnpo.hpp>

#include "args.hpp"

namespace simnpo::cli {

constexpr const char* text_flags = R"(
text data ({"question", "answer"} lines; ids lines need none of this):
  --tokenizer DIR          a tokenizer directory: tokenizer.json (+ tokenizer_config.json), or GPT-2's
                           vocab.json + merges.txt (or encoder.json + vocab.bpe) (default: the model
                           directory's)
  --prompt-template T      the prompt, with {question} where the question goes; \n is a newline
                           (default "Question: {question}\nAnswer: ")
  --chat-template C        prompt as a chat instead: the question is a user message, the answer the
                           assistant's reply; C is "model" (tokenizer_config.json's chat_template) or a
                           Jinja template file
)";

// The tokenizer and template of a command, when it has a tokenizer: from
// --tokenizer, else from the model directory.
class TextInput {
public:
    TextInput(const Args& args, const std::filesystem::path& model_dir) {
        if (args.has("--tokenizer")) {
            directory_ = args.required("--tokenizer");
        } else if (tokenizer::Tokenizer::present_in(model_dir)) {
            directory_ = model_dir;
        }
        if (args.has("--prompt-template") && args.has("--chat-template"))
            fail(args.command(), ": --prompt-template and --chat-template exclude each other");
        if (directory_.empty()) {
            for (const char* flag : {"--prompt-template", "--chat-template"})
                if (args.has(flag))
                    fail(args.command(), ": ", flag, " needs a tokenizer (--tokenizer DIR, or tokenizer files in the "
                         "model directory)");
            return;
        }
        tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(directory_));
        try {
            if (args.has("--chat-template")) {
                format_ = std::make_unique<data::TextFormat>(data::TextFormat::chat(*tokenizer_, chat_template(args)));
            } else {
                const std::string prompt_template = args.has("--prompt-template")
                                                        ? unescape(args.required("--prompt-template"))
                                                        : std::string(data::default_prompt_template);
                format_ = std::make_unique<data::TextFormat>(*tokenizer_, prompt_template);
            }
        } catch (const Error& error) {
            const char* flag = args.has("--chat-template") ? "--chat-template: " : args.has("--prompt-template") ? "--prompt-template: " : "";
            fail(args.command(), ": ", flag, error.what());
        }
    }

    // Null when there is no tokenizer: then only ids data can be read.
    const data::TextFormat* format() const { return format_.get(); }

    const data::TextFormat& required(const std::string& command) const {
        if (!format_)
            fail(command, ": needs a tokenizer (--tokenizer DIR, or tokenizer files in the model directory)");
        return *format_;
    }

    // Writes the tokenizer into a model directory being written, so that the model carries it.
    void write_into(DirectoryWriter& out) const {
        if (tokenizer_) tokenizer_->write_into(out);
    }

private:
    // --chat-template model: the tokenizer's own; else a file.
    tokenizer::ChatTemplate chat_template(const Args& args) const {
        const std::string value = args.required("--chat-template");
        if (value == "model") {
            if (!tokenizer_->chat_template())
                fail((directory_ / "tokenizer_config.json").string(), ": has no chat_template");
            return tokenizer::ChatTemplate::parse(*tokenizer_->chat_template(),
                                                  (directory_ / "tokenizer_config.json").string() + ": chat_template");
        }
        return tokenizer::ChatTemplate::parse(read_text_file(value), value);
    }

    // "\n" in a flag stands for a newline, "\\" for a backslash.
    static std::string unescape(const std::string& text) {
        std::string result;
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == 'n' || text[i + 1] == '\\')) {
                result += text[++i] == 'n' ? '\n' : '\\';
            } else {
                result += text[i];
            }
        }
        return result;
    }

    std::filesystem::path directory_;
    std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
    std::unique_ptr<data::TextFormat> format_;
};

}  // namespace simnpo::cli
