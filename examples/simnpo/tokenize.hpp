// `simnpo tokenize` and `simnpo train-tokenizer` (issue 7): text to GPT-2 token
// ids and back, one document a line; a byte-level BPE vocabulary from a corpus.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"

namespace simnpo::cli {

constexpr const char* tokenize_usage = R"(usage: simnpo tokenize --tokenizer DIR [--file F] [--decode] [--add-special-tokens] [--skip-special-tokens]

Reads UTF-8 text (the file F, or standard input), one document per line, and
prints each line's token ids as a JSON array on a line of its own, as Hugging
Face's tokenizers encodes it (ill-formed UTF-8 is read as U+FFFD). With
--decode, reads one JSON array of ids a line and prints each line's text.

  --tokenizer DIR         tokenizer.json (+ tokenizer_config.json), or vocab.json + merges.txt
                          (or encoder.json + vocab.bpe: GPT-2's byte-level BPE)
  --file F                the input (default: standard input)
  --decode                ids to text
  --add-special-tokens    encode: add the tokens the tokenizer puts around a text (a BOS)
  --skip-special-tokens   decode: leave special tokens out
)";

inline int run_tokenize(const std::vector<std::string>& words) {
    const Args args("simnpo tokenize", words, {"--tokenizer", "--file"},
                    {"--decode", "--add-special-tokens", "--skip-special-tokens"});
    if (args.help()) {
        std::cout << tokenize_usage;
        return 0;
    }
    const auto tokenizer = tokenizer::Tokenizer::load(args.required("--tokenizer"));
    if (args.has("--decode") && args.has("--add-special-tokens"))
        fail("simnpo tokenize: --add-special-tokens is for encoding, not with --decode");
    if (!args.has("--decode") && args.has("--skip-special-tokens"))
        fail("simnpo tokenize: --skip-special-tokens is for decoding (with --decode)");
    const std::string where = args.has("--file") ? args.required("--file") : std::string("<stdin>");
    const std::string input = args.has("--file")
                                  ? read_text_file(args.required("--file"))
                                  : std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    // Lines end at '\n'; a last line without one still counts. Nothing is printed
    // until every line has been read: an error leaves no partial output.
    std::string output;
    std::size_t line_number = 0;
    for (std::size_t begin = 0; begin < input.size();) {
        const std::size_t end = std::min(input.find('\n', begin), input.size());
        const std::string_view line(input.data() + begin, end - begin);
        begin = end + 1;
        ++line_number;
        if (!args.has("--decode")) {
            output += nlohmann::json(tokenizer.encode(line, args.has("--add-special-tokens"))).dump() + '\n';
            continue;
        }
        const auto parsed = nlohmann::json::parse(line, nullptr, false);
        if (parsed.is_discarded() || !parsed.is_array())
            fail(where, ":", line_number, ": expected a JSON array of token ids");
        std::vector<std::int32_t> ids;
        for (const auto& value : parsed) {
            if (!value.is_number_integer()) fail(where, ":", line_number, ": token ids must be integers, got ", value.dump());
            const auto id = value.get<std::int64_t>();
            if (id < 0 || id >= static_cast<std::int64_t>(tokenizer.vocab_size()))
                fail(where, ":", line_number, ": token id ", id, " is outside the vocabulary of ", tokenizer.vocab_size());
            ids.push_back(static_cast<std::int32_t>(id));
        }
        try {
            output += tokenizer.decode(ids, args.has("--skip-special-tokens")) + '\n';
        } catch (const Error& error) {
            fail(where, ":", line_number, ": ", error.what());
        }
    }
    std::cout << output;
    return 0;
}

constexpr const char* train_tokenizer_usage = R"(usage: simnpo train-tokenizer --corpus F --vocab-size N --out DIR [--min-frequency K]

Trains a byte-level BPE vocabulary (GPT-2's pre-tokenisation; ids: the 256
bytes, the merges in the order learned, <|endoftext|> last) and writes
DIR/vocab.json + DIR/merges.txt, the files a model directory carries.

  --corpus F          UTF-8 text, one document a line; or, for a .jsonl file,
                      {"question", "answer"} lines, each question and answer a document
  --vocab-size N      tokens in all, at least 257
  --min-frequency K   merge only pairs seen at least K times (default 2)
  --out DIR           where the two files go (created if needed)
)";

inline int run_train_tokenizer(const std::vector<std::string>& words) {
    const Args args("simnpo train-tokenizer", words, {"--corpus", "--vocab-size", "--min-frequency", "--out"});
    if (args.help()) {
        std::cout << train_tokenizer_usage;
        return 0;
    }
    const std::filesystem::path corpus_path = args.required("--corpus");
    const auto vocab_size = static_cast<std::size_t>(args.integer("--vocab-size", 0, 257, 1 << 24));
    args.required("--vocab-size");
    const auto min_frequency = static_cast<std::size_t>(args.integer("--min-frequency", 2, 1, 1LL << 40));
    const std::filesystem::path out = args.required("--out");
    check_output_directory(out, "--out");
    const std::string text = read_text_file(corpus_path);
    std::vector<std::string> documents;
    if (corpus_path.extension() == ".jsonl") {
        data::detail::for_each_record(text, corpus_path.string(), [&](const nlohmann::json& value, const std::string& at) {
            if (!value.is_object()) fail(at, ": expected a JSON object with 'question' and 'answer'");
            documents.push_back(data::detail::text_field(value, "question", at));
            documents.push_back(data::detail::text_field(value, "answer", at));
        });
    } else {
        for (std::size_t begin = 0; begin < text.size();) {
            const std::size_t end = std::min(text.find('\n', begin), text.size());
            documents.push_back(text.substr(begin, end - begin));
            begin = end + 1;
        }
    }
    const auto tokenizer = tokenizer::train_bpe(documents, {.vocab_size = vocab_size, .min_frequency = min_frequency});
    tokenizer.save(out);
    std::cout << "wrote " << (out / "vocab.json").string() << " and merges.txt (" << tokenizer.vocab_size()
              << " tokens, " << tokenizer.merge_count() << " merges)\n";
    return 0;
}

}  // namespace simnpo::cli
