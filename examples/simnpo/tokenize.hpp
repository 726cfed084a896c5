// `simnpo tokenize` (issue 7): text to GPT-2 token ids and back, one document a line.
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

constexpr const char* tokenize_usage = R"(usage: simnpo tokenize --tokenizer DIR [--file F] [--decode]

Reads UTF-8 text (the file F, or standard input), one document per line, and
prints each line's token ids as a JSON array on a line of its own. With
--decode, reads one JSON array of ids a line and prints each line's text.

  --tokenizer DIR  vocab.json + merges.txt, or encoder.json + vocab.bpe (GPT-2's byte-level BPE)
  --file F         the input (default: standard input)
  --decode         ids to text
)";

inline int run_tokenize(const std::vector<std::string>& words) {
    const Args args("simnpo tokenize", words, {"--tokenizer", "--file"}, {"--decode"});
    if (args.help()) {
        std::cout << tokenize_usage;
        return 0;
    }
    const auto tokenizer = tokenizer::Gpt2Tokenizer::load(args.required("--tokenizer"));
    const std::string where = args.has("--file") ? args.required("--file") : std::string("<stdin>");
    const std::string input = args.has("--file")
                                  ? read_file(args.required("--file"))
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
            output += nlohmann::json(tokenizer.encode(line)).dump() + '\n';
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
        output += tokenizer.decode(ids) + '\n';
    }
    std::cout << output;
    return 0;
}

}  // namespace simnpo::cli
