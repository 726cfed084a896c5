#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/core/read_limits.hpp"
#include "simnpo/tokenizer/unicode.hpp"

namespace simnpo::tokenizer {

namespace detail {

// GPT-2 spells every byte as one printable code point so that vocabulary files
// are text: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
// themselves and the other 68, in byte order, for U+0100, U+0101, ...
inline const std::array<char32_t, 256>& byte_code_points() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> points{};
        char32_t next = 0x100;
        for (unsigned byte = 0; byte < 256; ++byte) {
            const bool printable =
                (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
            points[byte] = printable ? static_cast<char32_t>(byte) : next++;
        }
        return points;
    }();
    return table;
}

inline void append_utf8(std::string& out, char32_t point) {
    if (point < 0x80) {
        out += static_cast<char>(point);
    } else if (point < 0x800) {
        out += static_cast<char>(0xC0 | (point >> 6));
        out += static_cast<char>(0x80 | (point & 0x3F));
    } else if (point < 0x10000) {
        out += static_cast<char>(0xE0 | (point >> 12));
        out += static_cast<char>(0x80 | ((point >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (point & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (point >> 18));
        out += static_cast<char>(0x80 | ((point >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((point >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (point & 0x3F));
    }
}

// The one-byte token for `byte`, as a vocabulary spells it.
inline std::string byte_token(unsigned byte) {
    std::string spelled;
    append_utf8(spelled, byte_code_points()[byte]);
    return spelled;
}

// One code point read from UTF-8; `length` is 1 with no point for a byte that
// does not start a well-formed sequence (overlong forms, surrogates and values
// past U+10FFFF are not well-formed).
struct Utf8Unit {
    std::size_t length = 1;
    std::optional<char32_t> point;
};

inline Utf8Unit read_utf8(std::string_view text, std::size_t at) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(at);
    if (lead < 0x80) return {1, lead};
    std::size_t length = 0;
    char32_t point = 0;
    char32_t lowest = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2, point = lead & 0x1F, lowest = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3, point = lead & 0x0F, lowest = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4, point = lead & 0x07, lowest = 0x10000;
    } else {
        return {};
    }
    if (at + length > text.size()) return {};
    for (std::size_t i = 1; i < length; ++i) {
        if ((byte(at + i) & 0xC0) != 0x80) return {};
        point = (point << 6) | (byte(at + i) & 0x3F);
    }
    if (point < lowest || point > 0x10FFFF || (point >= 0xD800 && point <= 0xDFFF)) return {};
    return {length, point};
}

// The classes GPT-2's pattern tells apart: \p{L}, \p{N}, \s, and the rest.
enum class CharClass : std::uint8_t { letter, number, space, other };

inline bool in_ranges(std::span<const unicode::CodePointRange> ranges, char32_t point) {
    const auto it = std::upper_bound(ranges.begin(), ranges.end(), point,
                                     [](char32_t p, const unicode::CodePointRange& r) { return p < r.first; });
    return it != ranges.begin() && point <= std::prev(it)->last;
}

inline CharClass classify(char32_t point) {
    if (in_ranges(unicode::letter_ranges, point)) return CharClass::letter;
    if (in_ranges(unicode::number_ranges, point)) return CharClass::number;
    if (in_ranges(unicode::space_ranges, point)) return CharClass::space;
    return CharClass::other;
}

// Splits text as GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does (leftmost alternative first, greedy runs), into pieces that together are
// the text. A byte that is not well-formed UTF-8 counts as one character of
// the last class, as the U+FFFD a decoder would put in its place, and is kept
// as it is, so that decoding gives the input back byte for byte.
inline std::vector<std::string_view> pretokenize(std::string_view text) {
    struct Char {
        std::size_t offset;
        CharClass kind;
    };
    std::vector<Char> chars;
    chars.reserve(text.size());
    for (std::size_t at = 0; at < text.size();) {
        const Utf8Unit unit = read_utf8(text, at);
        chars.push_back({at, unit.point ? classify(*unit.point) : CharClass::other});
        at += unit.length;
    }
    const std::size_t n = chars.size();
    const auto offset = [&](std::size_t i) { return i < n ? chars[i].offset : text.size(); };
    const auto run_end = [&](std::size_t i, CharClass kind) {
        while (i < n && chars[i].kind == kind) ++i;
        return i;
    };
    // The ASCII characters the contractions spell are single-byte characters.
    const auto is_char = [&](std::size_t i, char c) { return i < n && text[chars[i].offset] == c; };

    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < n;) {
        std::size_t end = 0;
        if (is_char(i, '\'') && (is_char(i + 1, 's') || is_char(i + 1, 't') || is_char(i + 1, 'm') ||
                                 is_char(i + 1, 'd'))) {
            end = i + 2;
        } else if (is_char(i, '\'') && ((is_char(i + 1, 'r') && is_char(i + 2, 'e')) ||
                                        (is_char(i + 1, 'v') && is_char(i + 2, 'e')) ||
                                        (is_char(i + 1, 'l') && is_char(i + 2, 'l')))) {
            end = i + 3;
        } else if (chars[i].kind != CharClass::space) {
            end = run_end(i, chars[i].kind);
        } else if (is_char(i, ' ') && i + 1 < n && chars[i + 1].kind != CharClass::space) {
            // " ?" joins one plain space to the letters, numbers or symbols after it.
            end = run_end(i + 1, chars[i + 1].kind);
        } else {
            // \s+(?!\S) backs off one character so that the last space of a run
            // can join the word after it; a lone space before a word is \s+.
            end = run_end(i, CharClass::space);
            if (end < n && end - i >= 2) --end;
        }
        pieces.push_back(text.substr(offset(i), offset(end) - offset(i)));
        i = end;
    }
    return pieces;
}

// A JSON string literal for `text`, for messages: UTF-8 kept as it is, a byte
// that is not well-formed UTF-8 shown as U+FFFD.
inline std::string json_string(const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace detail

// GPT-2's byte-level BPE tokenizer: the text is split by GPT-2's pattern, each
// piece's bytes become one token each, and adjacent tokens merge by the rank of
// their merge rule, lowest first, until no rule applies. encode then decode gives
// back any input, well-formed UTF-8 or not. Special tokens such as
// <|endoftext|> are ordinary vocabulary entries: encode never produces them
// from text (as GPT-2's encoder does not); add their ids yourself.
class Gpt2Tokenizer {
public:
    // Reads vocab.json + merges.txt (Hugging Face's names) or encoder.json +
    // vocab.bpe (OpenAI's; the same formats) from `dir`.
    static Gpt2Tokenizer load(const std::filesystem::path& dir) {
        namespace fs = std::filesystem;
        std::error_code ec;
        for (const auto& [vocab, merges] : {std::pair{"vocab.json", "merges.txt"}, std::pair{"encoder.json", "vocab.bpe"}}) {
            const bool has_vocab = fs::exists(dir / vocab, ec);
            const bool has_merges = fs::exists(dir / merges, ec);
            if (has_vocab && !has_merges) fail((dir / merges).string(), ": missing (", vocab, " is there)");
            if (has_merges && !has_vocab) fail((dir / vocab).string(), ": missing (", merges, " is there)");
            if (has_vocab) return from_files(dir / vocab, dir / merges);
        }
        fail(dir.string(), ": no GPT-2 tokenizer (expected vocab.json + merges.txt or encoder.json + vocab.bpe)");
    }

    // A vocabulary file (JSON object: token -> id, ids 0..n-1 each once) and a
    // merges file (an optional "#version" line, then one "left right" rule a
    // line, highest priority first).
    static Gpt2Tokenizer from_files(const std::filesystem::path& vocab_path, const std::filesystem::path& merges_path) {
        const std::string vocab_where = vocab_path.string();
        const nlohmann::json vocab = parse_json(read_file(vocab_path), vocab_where);
        if (!vocab.is_object()) fail(vocab_where, ": expected a JSON object of token -> id");
        // Checked first: a missing byte token leaves a gap in the ids, which would
        // otherwise be reported as another token's id (<|endoftext|>'s) out of range.
        for (unsigned byte = 0; byte < 256; ++byte)
            if (!vocab.contains(detail::byte_token(byte)))
                fail(vocab_where, ": the vocabulary lacks the token ", detail::json_string(detail::byte_token(byte)),
                     " for byte ", byte);
        std::vector<std::string> tokens(vocab.size());
        std::vector<bool> seen(vocab.size(), false);
        for (const auto& [token, id] : vocab.items()) {
            if (!id.is_number_integer())
                fail(vocab_where, ": the id of token ", detail::json_string(token), " is not an integer");
            const auto value = id.get<std::int64_t>();
            if (id.is_number_unsigned() ? id.get<std::uint64_t>() >= vocab.size()
                                        : value < 0 || static_cast<std::uint64_t>(value) >= vocab.size())
                fail(vocab_where, ": the id ", id.dump(), " of token ", detail::json_string(token),
                     " is outside [0, ", vocab.size(), "): ids must be 0..n-1, each once");
            if (seen[value]) fail(vocab_where, ": the id ", value, " is given to two tokens");
            seen[value] = true;
            tokens[value] = token;
        }

        Gpt2Tokenizer tokenizer(std::move(tokens), vocab_where);
        const std::string merges_where = merges_path.string();
        const std::string text = read_text_file(merges_path);
        std::size_t line_number = 0;
        std::size_t rank = 0;
        for (std::size_t begin = 0; begin < text.size();) {
            std::size_t end = text.find('\n', begin);
            if (end == std::string::npos) end = text.size();
            std::string_view line(text.data() + begin, end - begin);
            begin = end + 1;
            ++line_number;
            if (line.ends_with('\r')) line.remove_suffix(1);
            if (line_number == 1 && line.starts_with("#version")) continue;
            // Only the end of the file may be blank (a final newline or two).
            if (line.empty() && text.find_first_not_of("\r\n", begin) == std::string::npos) break;
            const std::string where = merges_where + ":" + std::to_string(line_number);
            const std::size_t space = line.find(' ');
            if (line.empty() || space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
                line.find(' ', space + 1) != std::string_view::npos)
                fail(where, ": expected a merge rule \"left right\" (two tokens and one space), got ",
                     detail::json_string(std::string(line)));
            tokenizer.add_merge(line.substr(0, space), line.substr(space + 1), rank++, where);
        }
        return tokenizer;
    }

    // From tokens in id order and merge rules in priority order (as BPE training
    // makes them); Error if a rule's tokens or result are not in the vocabulary.
    static Gpt2Tokenizer from_parts(std::vector<std::string> tokens,
                                    const std::vector<std::pair<std::string, std::string>>& merges) {
        std::unordered_map<std::string, std::int32_t> unique;
        for (std::size_t id = 0; id < tokens.size(); ++id)
            if (!unique.emplace(tokens[id], static_cast<std::int32_t>(id)).second)
                fail("tokenizer vocabulary: the token ", detail::json_string(tokens[id]), " appears twice");
        Gpt2Tokenizer tokenizer(std::move(tokens), "tokenizer vocabulary");
        for (std::size_t rank = 0; rank < merges.size(); ++rank)
            tokenizer.add_merge(merges[rank].first, merges[rank].second, rank,
                                "tokenizer merge rule " + std::to_string(rank));
        return tokenizer;
    }

    std::vector<std::int32_t> encode(std::string_view text) const {
        return *encode_at_most(text, std::numeric_limits<std::size_t>::max());
    }

    // The ids of `text`, or nullopt as soon as they are known to be more than
    // `max_tokens`: a text of more bytes than that many of the longest token
    // hold is not tokenised at all, so that a huge text costs nothing.
    std::optional<std::vector<std::int32_t>> encode_at_most(std::string_view text, std::size_t max_tokens) const {
        if (text.size() / longest_token_bytes_ > max_tokens) return std::nullopt;
        std::vector<std::int32_t> ids;
        std::vector<std::int32_t> word;
        for (const std::string_view piece : detail::pretokenize(text)) {
            word.clear();
            for (const char byte : piece) word.push_back(byte_ids_[static_cast<unsigned char>(byte)]);
            merge_word(word);
            ids.insert(ids.end(), word.begin(), word.end());
            if (ids.size() > max_tokens) return std::nullopt;
        }
        return ids;
    }

    // The bytes the tokens stand for. Ids that split a character give those
    // bytes as they are (the result is then not well-formed UTF-8).
    std::string decode(std::span<const std::int32_t> ids) const {
        std::string text;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= token_bytes_.size())
                fail(source_, ": cannot decode token id ", ids[i], " at position ", i, ": outside the vocabulary [0, ",
                     token_bytes_.size(), ")");
            text += token_bytes_[ids[i]];
        }
        return text;
    }

    std::size_t vocab_size() const { return tokens_.size(); }
    std::size_t merge_count() const { return merges_.size(); }

    // The id of a token as the vocabulary spells it (byte-level: "Ġthe" for " the").
    std::optional<std::int32_t> token_id(std::string_view token) const {
        const auto it = ids_.find(std::string(token));
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }
    const std::string& token(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
            fail(source_, ": token id ", id, " is outside the vocabulary [0, ", tokens_.size(), ")");
        return tokens_[id];
    }

    // <|endoftext|>, which GPT-2 puts between documents (50256).
    std::int32_t end_of_text_id() const {
        const auto id = token_id(end_of_text);
        if (!id) fail(source_, ": the vocabulary has no ", end_of_text, " token");
        return *id;
    }
    static constexpr std::string_view end_of_text = "<|endoftext|>";

    // Writes vocab.json (in id order) and merges.txt into a directory being
    // written (a model directory, so that the model carries its tokenizer).
    void write_into(DirectoryWriter& out) const {
        std::string merges = "#version: 0.2\n";
        for (const auto& [left, right] : merges_) merges += tokens_[left] + " " + tokens_[right] + "\n";
        std::string vocab = "{";
        for (std::size_t id = 0; id < tokens_.size(); ++id)
            vocab += (id == 0 ? "" : ", ") + detail::json_string(tokens_[id]) + ": " + std::to_string(id);
        vocab += "}\n";
        out.write("merges.txt", merges);
        out.write("vocab.json", vocab);
    }

    // Writes them into `dir` as one step, keeping what else it holds (a model).
    void save(const std::filesystem::path& dir) const {
        DirectoryWriter out(dir);
        write_into(out);
        out.commit();
    }

private:
    struct Merge {
        std::int32_t rank;
        std::int32_t result;
    };

    Gpt2Tokenizer(std::vector<std::string> tokens, std::string source)
        : tokens_(std::move(tokens)), source_(std::move(source)) {
        if (tokens_.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            fail(source_, ": too many tokens for 32-bit ids");
        const auto& points = detail::byte_code_points();
        std::unordered_map<char32_t, unsigned char> byte_of;
        for (unsigned byte = 0; byte < 256; ++byte) byte_of.emplace(points[byte], static_cast<unsigned char>(byte));
        token_bytes_.reserve(tokens_.size());
        ids_.reserve(tokens_.size());
        for (std::size_t id = 0; id < tokens_.size(); ++id) {
            const std::string& token = tokens_[id];
            if (token.empty()) fail(source_, ": token ", id, " is empty");
            std::string bytes;
            for (std::size_t at = 0; at < token.size();) {
                const detail::Utf8Unit unit = detail::read_utf8(token, at);
                const auto it = unit.point ? byte_of.find(*unit.point) : byte_of.end();
                if (it == byte_of.end())
                    fail(source_, ": token ", detail::json_string(token),
                         " is not byte-level (a character stands for no byte)");
                bytes += static_cast<char>(it->second);
                at += unit.length;
            }
            longest_token_bytes_ = std::max(longest_token_bytes_, bytes.size());
            token_bytes_.push_back(std::move(bytes));
            ids_.emplace(token, static_cast<std::int32_t>(id));
        }
        // Every byte needs a token of its own so that any text can be encoded.
        for (unsigned byte = 0; byte < 256; ++byte) {
            const std::string spelled = detail::byte_token(byte);
            const auto it = ids_.find(spelled);
            if (it == ids_.end())
                fail(source_, ": the vocabulary lacks the token ", detail::json_string(spelled), " for byte ", byte);
            byte_ids_[byte] = it->second;
        }
    }

    void add_merge(std::string_view left, std::string_view right, std::size_t rank, const std::string& where) {
        const auto id_of = [&](std::string_view token) {
            const auto id = token_id(token);
            if (!id) fail(where, ": the token ", detail::json_string(std::string(token)), " is not in the vocabulary");
            return *id;
        };
        const std::int32_t left_id = id_of(left);
        const std::int32_t right_id = id_of(right);
        std::string joined = std::string(left) + std::string(right);
        const auto result = token_id(joined);
        if (!result) fail(where, ": the merged token ", detail::json_string(joined), " is not in the vocabulary");
        if (rank > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            fail(where, ": too many merge rules");
        if (!ranks_.emplace(pair_key(left_id, right_id), Merge{static_cast<std::int32_t>(rank), *result}).second)
            fail(where, ": the rule ", detail::json_string(std::string(left) + " " + std::string(right)),
                 " is given twice");
        merges_.emplace_back(left_id, right_id);
    }

    static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    }

    // Applies the lowest-ranked rule that matches an adjacent pair, at every
    // place it matches from left to right, until none matches (GPT-2's loop).
    void merge_word(std::vector<std::int32_t>& word) const {
        while (word.size() > 1) {
            const Merge* best = nullptr;
            std::int32_t left = 0;
            std::int32_t right = 0;
            for (std::size_t i = 0; i + 1 < word.size(); ++i) {
                const auto it = ranks_.find(pair_key(word[i], word[i + 1]));
                if (it != ranks_.end() && (best == nullptr || it->second.rank < best->rank)) {
                    best = &it->second;
                    left = word[i];
                    right = word[i + 1];
                }
            }
            if (best == nullptr) return;
            std::size_t out = 0;
            for (std::size_t i = 0; i < word.size(); ++out) {
                if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
                    word[out] = best->result;
                    i += 2;
                } else {
                    word[out] = word[i];
                    ++i;
                }
            }
            word.resize(out);
        }
    }

    std::vector<std::string> tokens_;                       // id -> token, byte-level spelling
    std::vector<std::string> token_bytes_;                  // id -> the bytes it stands for
    std::unordered_map<std::string, std::int32_t> ids_;     // token -> id
    std::array<std::int32_t, 256> byte_ids_{};              // byte -> its one-byte token
    std::unordered_map<std::uint64_t, Merge> ranks_;        // (left id, right id) -> rule
    std::vector<std::pair<std::int32_t, std::int32_t>> merges_;  // rules in rank order
    std::string source_;                                    // where the vocabulary came from, for errors
    std::size_t longest_token_bytes_ = 1;                   // the most bytes one token stands for
};

}  // namespace simnpo::tokenizer
