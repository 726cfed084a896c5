// Text data on the command line (DESIGN §5): which tokenizer and prompt
// template turn {"question", "answer"} lines into ids.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <simnpo.hpp>

#include "args.hpp"

namespace simnpo::cli {

constexpr const char* text_flags = R"(
text data ({"question", "answer"} lines; ids lines need none of this):
  --tokenizer DIR          GPT-2 byte-level BPE files (vocab.json + merges.txt, or encoder.json +
                           vocab.bpe) (default: the model directory's vocab.json + merges.txt)
  --prompt-template T      the prompt, with {question} where the question goes; \n is a newline
                           (default "Question: {question}\nAnswer: ")
)";

// The tokenizer and template of a command, when it has a tokenizer: from
// --tokenizer, else from the model directory.
class TextInput {
public:
    TextInput(const Args& args, const std::filesystem::path& model_dir) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (args.has("--tokenizer")) {
            directory_ = args.required("--tokenizer");
        } else if (fs::exists(model_dir / "vocab.json", ec) || fs::exists(model_dir / "merges.txt", ec)) {
            directory_ = model_dir;
        }
        if (directory_.empty()) {
            if (args.has("--prompt-template"))
                fail(args.command(), ": --prompt-template needs a tokenizer (--tokenizer DIR, or vocab.json + "
                     "merges.txt in the model directory)");
            return;
        }
        tokenizer_ = std::make_unique<tokenizer::Gpt2Tokenizer>(tokenizer::Gpt2Tokenizer::load(directory_));
        const std::string prompt_template =
            args.has("--prompt-template") ? unescape(args.required("--prompt-template"))
                                          : std::string(data::default_prompt_template);
        try {
            format_ = std::make_unique<data::TextFormat>(*tokenizer_, prompt_template);
        } catch (const Error& error) {
            fail(args.command(), ": ", args.has("--prompt-template") ? "--prompt-template: " : "", error.what());
        }
    }

    // Null when there is no tokenizer: then only ids data can be read.
    const data::TextFormat* format() const { return format_.get(); }

    const data::TextFormat& required(const std::string& command) const {
        if (!format_)
            fail(command, ": needs a tokenizer (--tokenizer DIR, or vocab.json + merges.txt in the model directory)");
        return *format_;
    }

    // Writes the tokenizer into a model directory being written, so that the model carries it.
    void write_into(DirectoryWriter& out) const {
        if (tokenizer_) tokenizer_->write_into(out);
    }

private:
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
    std::unique_ptr<tokenizer::Gpt2Tokenizer> tokenizer_;
    std::unique_ptr<data::TextFormat> format_;
};

}  // namespace simnpo::cli
