#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/core/read_limits.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/data/text.hpp"

namespace simnpo::data {

namespace detail {

using nlohmann::json;

// JSON's own whitespace: a line holding only these is blank.
inline constexpr std::string_view json_whitespace = " \t\r\n";

// A value as an error message names it: numbers as written, others by kind.
inline std::string describe(const json& value) {
    if (value.is_number() || value.is_null()) return value.dump();
    const std::string kind = value.type_name();
    return (value.is_object() || value.is_array() ? "an " : "a ") + kind;
}

// Accepts every SAX event, so that sax_parse stops only where the text is not
// JSON, and records that place: json::parse reports no position for a number
// overflow, and reports lines of its own input (one line, in JSON Lines).
struct ErrorLocator final : nlohmann::json_sax<json> {
    std::size_t position = 0;  // 1-based byte offset, as nlohmann counts
    std::string reason;

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t at, const std::string&, const json::exception& error) override {
        position = at;
        reason = error.what();
        return false;
    }
};

// Throws "<where>:<line>:<column>: invalid JSON: <reason>" for `text`, which
// json::parse has just rejected and whose first byte is on line `first_line`.
[[noreturn]] inline void fail_invalid_json(const std::string& where, std::string_view text,
                                           std::size_t first_line) {
    ErrorLocator locator;
    json::sax_parse(text, &locator);
    // An error at the end of the input lies one past the last byte.
    const std::size_t offset = std::min(std::max<std::size_t>(locator.position, 1), text.size()) - 1;
    const std::string_view before = text.substr(0, offset);
    const std::size_t line = first_line + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const std::size_t last_newline = before.rfind('\n');
    const std::size_t column = offset + 1 - (last_newline == std::string_view::npos ? 0 : last_newline + 1);

    // nlohmann's message minus its "[json.exception.parse_error.101] parse
    // error at line 1, column 2: " prefix, whose position is replaced above.
    std::string_view reason = locator.reason;
    if (const auto id_end = reason.find("] "); id_end != std::string_view::npos) reason.remove_prefix(id_end + 2);
    if (reason.starts_with("parse error"))
        if (const auto colon = reason.find(": "); colon != std::string_view::npos) reason.remove_prefix(colon + 2);
    // "last read" quotes the whole bad token, which for an unclosed string is
    // the rest of the file; cut it on a UTF-8 character boundary.
    constexpr std::size_t max_reason = 200;
    std::string shown(reason);
    if (reason.size() > max_reason) {
        std::size_t cut = max_reason;
        while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) --cut;
        shown = std::string(reason.substr(0, cut)) + "...";
    }
    fail(where, ":", line, ":", column, ": invalid JSON: ", shown);
}

// The token ids under `key`; Error unless they are an array of int32 values.
inline std::vector<std::int32_t> token_ids(const json& object, const char* key, const std::string& where) {
    const auto it = object.find(key);
    if (it == object.end()) fail(where, ": missing key '", key, "'");
    if (!it->is_array()) fail(where, ": '", key, "' must be an array of token ids, got ", describe(*it));
    std::vector<std::int32_t> ids;
    ids.reserve(it->size());
    constexpr std::int64_t lowest = std::numeric_limits<std::int32_t>::min();
    constexpr std::int64_t highest = std::numeric_limits<std::int32_t>::max();
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& value = (*it)[i];
        if (!value.is_number_integer())
            fail(where, ": '", key, "'[", i, "] must be an integer token id, got ", describe(value));
        // nlohmann keeps non-negative integers unsigned, up to 2^64 - 1.
        const bool fits = value.is_number_unsigned()
                              ? value.get<std::uint64_t>() <= static_cast<std::uint64_t>(highest)
                              : value.get<std::int64_t>() >= lowest && value.get<std::int64_t>() <= highest;
        if (!fits) fail(where, ": '", key, "'[", i, "] = ", value.dump(), " does not fit a 32-bit token id");
        ids.push_back(static_cast<std::int32_t>(value.get<std::int64_t>()));
    }
    return ids;
}

// The string under `key`; Error unless it is a non-empty string.
inline const std::string& text_field(const json& object, const char* key, const std::string& where) {
    const auto it = object.find(key);
    if (it == object.end()) fail(where, ": missing key '", key, "'");
    if (!it->is_string()) fail(where, ": '", key, "' must be a string, got ", describe(*it));
    const auto& text = it->get_ref<const std::string&>();
    if (text.empty()) fail(where, ": '", key, "' is empty");
    return text;
}

// One example, of the ids form or (given a text format) the text form,
// checked against the model.
inline Example example_from_json(const json& value, const Limits& limits, const std::string& where,
                                 const TextFormat* text) {
    if (!value.is_object())
        fail(where, ": expected a JSON object with 'prompt_ids' and 'answer_ids' or 'question' and 'answer', got ",
             describe(value));
    // Ids, when present, are used as given; text fields beside them are ignored.
    const bool has_ids = value.contains("prompt_ids") || value.contains("answer_ids");
    Example example;
    if (!has_ids && (value.contains("question") || value.contains("answer"))) {
        if (text == nullptr)
            fail(where, ": text examples ('question'/'answer') need a tokenizer; use 'prompt_ids'/'answer_ids'");
        // Tokenising stops as soon as the example is too long: a huge line costs nothing.
        auto tokens = text->example(text_field(value, "question", where), text_field(value, "answer", where),
                                    static_cast<std::size_t>(limits.max_positions));
        if (!tokens) fail(where, ": sequence is longer than ", limits.positions_key, " = ", limits.max_positions, " tokens");
        example = std::move(*tokens);
    } else {
        example = {token_ids(value, "prompt_ids", where), token_ids(value, "answer_ids", where)};
    }
    check_example(example, limits, where);
    return example;
}

}  // namespace detail

namespace detail {

// Calls record(value, where) for each object of a JSON Lines text, or of a
// JSON array when the first non-blank character is '['. `where` names the
// source: per record "<where>:<line>" with physical 1-based lines (blank ones
// counted), or "<where>: element <n>" for the n-th (1-based) array element.
template <class Record>
void for_each_record(std::string_view text, const std::string& where, Record&& record) {
    // Some Windows editors start a UTF-8 file with a byte order mark.
    constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";
    if (text.starts_with(byte_order_mark)) text.remove_prefix(byte_order_mark.size());
    const auto first = text.find_first_not_of(json_whitespace);
    if (first != std::string_view::npos && text[first] == '[') {
        json array;
        try {
            array = simnpo::detail::parse_json_rejecting_duplicates(text, where);
        } catch (const json::exception&) {
            fail_invalid_json(where, text, 1);
        }
        for (std::size_t i = 0; i < array.size(); ++i) record(array[i], where + ": element " + std::to_string(i + 1));
        return;
    }
    std::size_t line_number = 0;
    for (std::size_t start = 0; start < text.size();) {
        const std::size_t end = std::min(text.find('\n', start), text.size());
        const std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_number;
        // A CRLF line keeps its '\r': JSON whitespace, to nlohmann and to the blank test.
        if (line.find_first_not_of(json_whitespace) == std::string_view::npos) continue;
        if (line.size() > max_line_bytes) fail_long_line(where, line_number);
        const std::string at = where + ":" + std::to_string(line_number);
        json value;
        try {
            value = simnpo::detail::parse_json_rejecting_duplicates(line, at);
        } catch (const json::exception&) {
            fail_invalid_json(where, line, line_number);
        }
        record(value, at);
    }
}

}  // namespace detail

// The examples of a JSON Lines text (DESIGN §5), or of a JSON array of
// objects; errors read "<where>:<line>: ..." or "<where>: element <n>: ...".
// A line may hold at most max_line_bytes (16 MiB), an object each key once.
// Text examples need `format`.
inline std::vector<Example> parse_examples(std::string_view text, const Limits& limits,
                                           const std::string& where, const TextFormat* format = nullptr) {
    std::vector<Example> examples;
    detail::for_each_record(text, where, [&](const detail::json& value, const std::string& at) {
        examples.push_back(detail::example_from_json(value, limits, at, format));
    });
    if (examples.empty()) fail(where, ": no examples");
    return examples;
}

// Refusal answers for DPO ("I don't know" style), one {"answer_ids": [...]}
// or (given a text format) {"answer": "..."} per line, each checked against
// the vocabulary.
inline std::vector<std::vector<std::int32_t>> parse_refusals(std::string_view text, const Limits& limits,
                                                             const std::string& where,
                                                             const TextFormat* format = nullptr) {
    std::vector<std::vector<std::int32_t>> answers;
    detail::for_each_record(text, where, [&](const detail::json& value, const std::string& at) {
        if (!value.is_object()) fail(at, ": expected a JSON object with 'answer_ids', got ", detail::describe(value));
        const bool is_text = !value.contains("answer_ids") && value.contains("answer");
        if (is_text && format == nullptr) fail(at, ": text answers ('answer') need a tokenizer; use 'answer_ids'");
        // A refusal is scored after a forget prompt: check it as an answer to a one-token prompt.
        std::vector<std::int32_t> answer;
        if (is_text) {
            auto ids = format->answer_ids(detail::text_field(value, "answer", at),
                                          static_cast<std::size_t>(limits.max_positions) - 1);
            if (!ids) fail(at, ": sequence is longer than ", limits.positions_key, " = ", limits.max_positions, " tokens");
            answer = std::move(*ids);
        } else {
            answer = detail::token_ids(value, "answer_ids", at);
        }
        Example example{{0}, std::move(answer)};
        check_example(example, limits, at);
        answers.push_back(std::move(example.answer_ids));
    });
    if (answers.empty()) fail(where, ": no refusal answers");
    return answers;
}

inline std::vector<std::vector<std::int32_t>> read_refusals(const std::filesystem::path& path,
                                                            const Limits& limits,
                                                            const TextFormat* format = nullptr) {
    return parse_refusals(read_text_file(path), limits, path.string(), format);
}

// The examples of a JSON Lines (or JSON array) file; errors name the file.
// Text examples need `format`.
inline std::vector<Example> read_jsonl(const std::filesystem::path& path, const Limits& limits,
                                       const TextFormat* format = nullptr) {
    return parse_examples(read_text_file(path), limits, path.string(), format);
}

inline std::vector<Example> read_jsonl(const std::filesystem::path& path, const Limits& limits,
                                       const TextFormat& format) {
    return read_jsonl(path, limits, &format);
}

// A question and its answer, as a text file has them.
struct QuestionAnswer {
    std::string question, answer;
};

// The {"question", "answer"} pairs of a JSON Lines (or JSON array) file, untokenised.
inline std::vector<QuestionAnswer> read_question_answers(const std::filesystem::path& path) {
    std::vector<QuestionAnswer> pairs;
    detail::for_each_record(read_text_file(path), path.string(), [&](const detail::json& value, const std::string& at) {
        if (!value.is_object()) fail(at, ": expected a JSON object, got ", detail::describe(value));
        pairs.push_back({detail::text_field(value, "question", at), detail::text_field(value, "answer", at)});
    });
    if (pairs.empty()) fail(path.string(), ": no questions");
    return pairs;
}

}  // namespace simnpo::data
