// The stages of a Hugging Face tokenizer.json around its model, each as its
// `tokenizers` library defines it: normalizers (text -> text), pre-tokenizers
// (text -> pieces) and decoders (tokens -> text). A Sequence is read as its
// members in order. A type this file does not implement is an Error naming
// the type and where it stands, never a silent approximation.
#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "simnpo/core/error.hpp"
#include "simnpo/tokenizer/regex.hpp"
#include "simnpo/tokenizer/utf8.hpp"

namespace simnpo::tokenizer {

namespace detail {

// Reads a key of a component object, with type checks; `where` is the file
// and the component's path, as in "tokenizer.json: pre_tokenizer.pretokenizers[0]".
struct ComponentJson {
    const nlohmann::json& value;
    std::string where;

    const nlohmann::json* find(const char* key) const {
        const auto it = value.find(key);
        return it == value.end() || it->is_null() ? nullptr : &*it;
    }
    [[noreturn]] void bad(const char* key, const char* expected) const {
        fail(where, ".", key, ": expected ", expected);
    }
    std::string string(const char* key, std::optional<std::string> fallback = std::nullopt) const {
        const auto* v = find(key);
        if (v == nullptr) {
            if (fallback) return *fallback;
            fail(where, ": missing key \"", key, "\"");
        }
        if (!v->is_string()) bad(key, "a string");
        return v->get<std::string>();
    }
    bool boolean(const char* key, bool fallback) const {
        const auto* v = find(key);
        if (v == nullptr) return fallback;
        if (!v->is_boolean()) bad(key, "true or false");
        return v->get<bool>();
    }
    std::size_t count(const char* key, std::size_t fallback) const {
        const auto* v = find(key);
        if (v == nullptr) return fallback;
        if (!v->is_number_unsigned()) bad(key, "a non-negative integer");
        return v->get<std::size_t>();
    }
    // A key that holds one character (Metaspace's replacement, Strip's content).
    char32_t character(const char* key, char32_t fallback) const {
        if (find(key) == nullptr) return fallback;
        const std::string text = string(key);
        const utf8::Unit unit = text.empty() ? utf8::Unit{} : utf8::read(text, 0);
        if (!unit.point || unit.length != text.size()) bad(key, "one character");
        return *unit.point;
    }
    std::string type() const {
        if (!value.is_object()) fail(where, ": expected a JSON object");
        return string("type");
    }
    [[noreturn]] void unsupported(const std::string& kind) const {
        fail(where, ": the ", kind, " type \"", type(), "\" is not supported");
    }
};

// The members of a Sequence, or the component itself.
template <class ReadOne>
void read_sequence(const ComponentJson& json, const char* members_key, ReadOne&& read_one) {
    if (json.type() == "Sequence") {
        const auto* members = json.find(members_key);
        if (members == nullptr || !members->is_array()) json.bad(members_key, "an array");
        for (std::size_t i = 0; i < members->size(); ++i)
            read_sequence(ComponentJson{(*members)[i], json.where + "." + members_key + "[" + std::to_string(i) + "]"},
                          members_key, read_one);
        return;
    }
    read_one(json);
}

}  // namespace detail

// A Split or Replace pattern: {"String": literal} or {"Regex": pattern}.
class Pattern {
public:
    static Pattern read(const detail::ComponentJson& json, const char* key) {
        const auto* v = json.find(key);
        if (v == nullptr || !v->is_object() || v->size() != 1) json.bad(key, "{\"String\": ...} or {\"Regex\": ...}");
        const auto member = v->begin();
        const std::string& kind = member.key();
        const nlohmann::json& text = member.value();
        if (!text.is_string()) json.bad(key, "a string pattern");
        Pattern pattern;
        pattern.literal_ = text.get<std::string>();
        if (kind == "Regex") {
            pattern.regex_.emplace(pattern.literal_, json.where + "." + key);
        } else if (kind != "String") {
            json.bad(key, "{\"String\": ...} or {\"Regex\": ...}");
        }
        return pattern;
    }

    // f(begin, end) for each non-empty match, left to right.
    template <class F>
    void for_each_match(std::string_view text, F&& f) const {
        if (regex_) {
            regex_->for_each_match(text, [&](std::size_t begin, std::size_t end) {
                if (end > begin) f(begin, end);
            });
            return;
        }
        if (literal_.empty()) return;
        for (std::size_t at = text.find(literal_); at != std::string_view::npos;
             at = text.find(literal_, at + literal_.size()))
            f(at, at + literal_.size());
    }

    // `text` with every match replaced by `content`.
    std::string replace_all(const std::string& text, const std::string& content) const {
        std::string out;
        std::size_t from = 0;
        for_each_match(text, [&](std::size_t begin, std::size_t end) {
            out.append(text, from, begin - from).append(content);
            from = end;
        });
        return out.append(text, from);
    }

private:
    std::string literal_;
    std::optional<Regex> regex_;
};

// ---------------------------------------------------------------- normalizers

class Normalizer {
public:
    enum class Kind { nfc, nfd, nfkc, nfkd, lowercase, prepend, replace, strip };

    // The normalizers of `json` in order (a Sequence flattened) into `out`.
    static void read(const detail::ComponentJson& json, std::vector<Normalizer>& out) {
        detail::read_sequence(json, "normalizers", [&](const detail::ComponentJson& one) {
            const std::string type = one.type();
            Normalizer n;
            if (type == "NFC") {
                n.kind_ = Kind::nfc;
            } else if (type == "NFD") {
                n.kind_ = Kind::nfd;
            } else if (type == "NFKC") {
                n.kind_ = Kind::nfkc;
            } else if (type == "NFKD") {
                n.kind_ = Kind::nfkd;
            } else if (type == "Lowercase") {
                n.kind_ = Kind::lowercase;
            } else if (type == "Prepend") {
                n.kind_ = Kind::prepend;
                n.content_ = one.string("prepend");
            } else if (type == "Replace") {
                n.kind_ = Kind::replace;
                n.pattern_ = Pattern::read(one, "pattern");
                n.content_ = one.string("content");
            } else if (type == "Strip") {
                n.kind_ = Kind::strip;
                n.left_ = one.boolean("strip_left", true);
                n.right_ = one.boolean("strip_right", true);
            } else {
                one.unsupported("normalizer");
            }
            out.push_back(std::move(n));
        });
    }

    void apply(std::string& text) const {
        switch (kind_) {
            case Kind::nfc: return unicode_map(text, UTF8PROC_COMPOSE);
            case Kind::nfd: return unicode_map(text, UTF8PROC_DECOMPOSE);
            case Kind::nfkc: return unicode_map(text, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
            case Kind::nfkd: return unicode_map(text, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
            case Kind::lowercase: return lowercase(text);
            case Kind::prepend:
                if (!text.empty()) text.insert(0, content_);
                return;
            case Kind::replace:
                text = pattern_->replace_all(text, content_);
                return;
            case Kind::strip: {
                std::size_t begin = 0, end = text.size();
                if (left_) {
                    while (begin < end) {
                        const utf8::Unit unit = utf8::read(text, begin);
                        if (!utf8::is_whitespace(unit.point.value_or(0))) break;
                        begin += unit.length;
                    }
                }
                if (right_) {
                    while (end > begin) {
                        std::size_t start = end - 1;
                        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
                        if (!utf8::is_whitespace(utf8::read(text, start).point.value_or(0))) break;
                        end = start;
                    }
                }
                text = text.substr(begin, end - begin);
                return;
            }
        }
    }

private:
    static void unicode_map(std::string& text, int options) {
        if (text.empty()) return;
        utf8proc_uint8_t* mapped = nullptr;
        const utf8proc_ssize_t length =
            utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                         &mapped, static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
        if (length < 0) fail("Unicode normalization failed: ", utf8proc_errmsg(length));
        text.assign(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(length));
        std::free(mapped);
    }

    // Rust's char::to_lowercase, one character at a time (no final-sigma
    // context, as tokenizers applies it): the simple mapping, and İ's two
    // characters, the one unconditional multi-character lowercase.
    static void lowercase(std::string& text) {
        std::string out;
        out.reserve(text.size());
        utf8::for_each_point(text, [&](char32_t c, std::size_t, std::size_t) {
            if (c == 0x130) {
                out.append("i\xCC\x87");
            } else {
                utf8::append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
            }
        });
        text = std::move(out);
    }

    Kind kind_ = Kind::nfc;
    std::string content_;
    std::optional<Pattern> pattern_;
    bool left_ = true, right_ = true;
};

// ----------------------------------------------------------- pre-tokenizers

// A piece of text on its way to the model; `at_start` when it begins at the
// start of the input (Metaspace's "first" prepend scheme asks).
struct Piece {
    std::string text;
    bool at_start = false;
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

namespace detail {

// Splits `piece` at the matches `for_each_match(text, f(begin, end))` finds,
// keeping them as `behavior` says (tokenizers' NormalizedString::split).
template <class ForEachMatch>
void split_piece(const Piece& piece, SplitBehavior behavior, bool invert, ForEachMatch&& for_each_match,
                 std::vector<Piece>& out) {
    const std::string& text = piece.text;
    struct Span {
        std::size_t begin, end;
        bool is_match;
    };
    std::vector<Span> spans;
    std::size_t previous = 0;
    for_each_match(std::string_view(text), [&](std::size_t begin, std::size_t end) {
        if (previous < begin) spans.push_back({previous, begin, false});
        spans.push_back({begin, end, true});
        previous = end;
    });
    if (previous < text.size()) spans.push_back({previous, text.size(), false});
    if (invert)
        for (auto& span : spans) span.is_match = !span.is_match;

    struct Kept {
        std::size_t begin, end;
    };
    std::vector<Kept> kept;
    bool previous_match = false;
    switch (behavior) {
        case SplitBehavior::removed:
            for (const auto& s : spans)
                if (!s.is_match) kept.push_back({s.begin, s.end});
            break;
        case SplitBehavior::isolated:
            for (const auto& s : spans) kept.push_back({s.begin, s.end});
            break;
        case SplitBehavior::contiguous:
            for (const auto& s : spans) {
                if (!kept.empty() && s.is_match == previous_match) {
                    kept.back().end = s.end;
                } else {
                    kept.push_back({s.begin, s.end});
                }
                previous_match = s.is_match;
            }
            break;
        case SplitBehavior::merged_with_previous:
            for (const auto& s : spans) {
                if (!kept.empty() && s.is_match && !previous_match) {
                    kept.back().end = s.end;
                } else {
                    kept.push_back({s.begin, s.end});
                }
                previous_match = s.is_match;
            }
            break;
        case SplitBehavior::merged_with_next:
            for (auto s = spans.rbegin(); s != spans.rend(); ++s) {
                if (!kept.empty() && s->is_match && !previous_match) {
                    kept.back().begin = s->begin;
                } else {
                    kept.push_back({s->begin, s->end});
                }
                previous_match = s->is_match;
            }
            std::reverse(kept.begin(), kept.end());
            break;
    }
    for (const auto& k : kept)
        if (k.end > k.begin) out.push_back({text.substr(k.begin, k.end - k.begin), piece.at_start && k.begin == 0});
}

// GPT-2's pattern, which ByteLevel applies when use_regex is true.
inline constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

inline const Regex& gpt2_regex() {
    static const Regex regex(gpt2_pattern, "GPT-2's pre-tokenizer pattern");
    return regex;
}

// The pieces GPT-2's pattern splits well-formed `text` into (they are the text).
inline std::vector<std::string_view> gpt2_pieces(std::string_view text) {
    std::vector<std::string_view> pieces;
    gpt2_regex().for_each_match(text, [&](std::size_t begin, std::size_t end) {
        if (end > begin) pieces.push_back(text.substr(begin, end - begin));
    });
    return pieces;
}

inline bool is_numeric(char32_t c) {
    const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    return category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL || category == UTF8PROC_CATEGORY_NO;
}

}  // namespace detail

// Metaspace's (and its decoder's) choice of where the replacement is prepended.
enum class PrependScheme { always, first, never };

class PreTokenizer {
public:
    enum class Kind { byte_level, split, metaspace, digits };

    static void read(const detail::ComponentJson& json, std::vector<PreTokenizer>& out) {
        detail::read_sequence(json, "pretokenizers", [&](const detail::ComponentJson& one) {
            const std::string type = one.type();
            PreTokenizer p;
            if (type == "ByteLevel") {
                p.kind_ = Kind::byte_level;
                p.add_prefix_space_ = one.boolean("add_prefix_space", true);
                p.use_regex_ = one.boolean("use_regex", true);
            } else if (type == "Split") {
                p.kind_ = Kind::split;
                p.pattern_ = Pattern::read(one, "pattern");
                p.behavior_ = read_behavior(one);
                p.invert_ = one.boolean("invert", false);
            } else if (type == "Metaspace") {
                p.kind_ = Kind::metaspace;
                p.replacement_.clear();
                utf8::append(p.replacement_, one.character("replacement", U'\u2581'));
                p.scheme_ = read_prepend_scheme(one);
                p.split_ = one.boolean("split", true);
            } else if (type == "Digits") {
                p.kind_ = Kind::digits;
                p.individual_digits_ = one.boolean("individual_digits", false);
            } else {
                one.unsupported("pre-tokenizer");
            }
            out.push_back(std::move(p));
        });
    }

    bool is_byte_level() const { return kind_ == Kind::byte_level; }

    static PreTokenizer gpt2_byte_level() {
        PreTokenizer p;
        p.kind_ = Kind::byte_level;
        p.add_prefix_space_ = false;
        p.use_regex_ = true;
        return p;
    }

    // Metaspace's legacy add_prefix_space, or its prepend_scheme.
    static PrependScheme read_prepend_scheme(const detail::ComponentJson& json) {
        if (json.find("prepend_scheme") == nullptr)
            return json.boolean("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
        const std::string scheme = json.string("prepend_scheme");
        if (scheme == "always") return PrependScheme::always;
        if (scheme == "first") return PrependScheme::first;
        if (scheme == "never") return PrependScheme::never;
        json.bad("prepend_scheme", "\"always\", \"first\" or \"never\"");
    }

    // Replaces `pieces` by what this pre-tokenizer makes of each.
    void apply(std::vector<Piece>& pieces) const {
        std::vector<Piece> out;
        out.reserve(pieces.size());
        for (auto& piece : pieces) {
            switch (kind_) {
                case Kind::byte_level: {
                    if (add_prefix_space_ && !piece.text.starts_with(' ')) piece.text.insert(0, " ");
                    const std::size_t first = out.size();
                    if (use_regex_) {
                        detail::split_piece(
                            piece, SplitBehavior::isolated, false,
                            [](std::string_view text, auto&& f) { detail::gpt2_regex().for_each_match(text, f); }, out);
                    } else {
                        out.push_back(std::move(piece));
                    }
                    for (std::size_t i = first; i < out.size(); ++i) out[i].text = to_byte_level(out[i].text);
                    break;
                }
                case Kind::split:
                    detail::split_piece(
                        piece, behavior_, invert_,
                        [&](std::string_view text, auto&& f) { pattern_->for_each_match(text, f); }, out);
                    break;
                case Kind::metaspace: {
                    std::string replaced;
                    for (const char c : piece.text) {
                        if (c == ' ') {
                            replaced += replacement_;
                        } else {
                            replaced += c;
                        }
                    }
                    const bool prepend = scheme_ == PrependScheme::always || (scheme_ == PrependScheme::first && piece.at_start);
                    if (prepend && !replaced.starts_with(replacement_)) replaced.insert(0, replacement_);
                    Piece whole{std::move(replaced), piece.at_start};
                    if (!split_) {
                        out.push_back(std::move(whole));
                        break;
                    }
                    detail::split_piece(
                        whole, SplitBehavior::merged_with_next, false,
                        [&](std::string_view text, auto&& f) {
                            for (std::size_t at = text.find(replacement_); at != std::string_view::npos;
                                 at = text.find(replacement_, at + replacement_.size()))
                                f(at, at + replacement_.size());
                        },
                        out);
                    break;
                }
                case Kind::digits:
                    detail::split_piece(
                        piece, individual_digits_ ? SplitBehavior::isolated : SplitBehavior::contiguous, false,
                        [](std::string_view text, auto&& f) {
                            utf8::for_each_point(text, [&](char32_t c, std::size_t at, std::size_t length) {
                                if (detail::is_numeric(c)) f(at, at + length);
                            });
                        },
                        out);
                    break;
            }
        }
        pieces = std::move(out);
    }

    // Each byte of `text` as GPT-2's printable character for it.
    static std::string to_byte_level(std::string_view text) {
        static const auto spelled = [] {
            std::array<std::string, 256> table;
            for (unsigned byte = 0; byte < 256; ++byte) table[byte] = utf8::byte_token(byte);
            return table;
        }();
        std::string out;
        out.reserve(text.size() * 2);
        for (const char byte : text) out += spelled[static_cast<unsigned char>(byte)];
        return out;
    }

private:
    static SplitBehavior read_behavior(const detail::ComponentJson& json) {
        const std::string behavior = json.string("behavior");
        if (behavior == "Removed") return SplitBehavior::removed;
        if (behavior == "Isolated") return SplitBehavior::isolated;
        if (behavior == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
        if (behavior == "MergedWithNext") return SplitBehavior::merged_with_next;
        if (behavior == "Contiguous") return SplitBehavior::contiguous;
        json.bad("behavior", "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
    }

    Kind kind_ = Kind::byte_level;
    bool add_prefix_space_ = false, use_regex_ = true;
    std::optional<Pattern> pattern_;
    SplitBehavior behavior_ = SplitBehavior::isolated;
    bool invert_ = false;
    std::string replacement_ = "\xE2\x96\x81";  // ▁
    PrependScheme scheme_ = PrependScheme::always;
    bool split_ = true;
    bool individual_digits_ = false;
};

// ------------------------------------------------------------------ decoders

class Decoder {
public:
    enum class Kind { byte_level, metaspace, replace, byte_fallback, fuse, strip };

    static void read(const detail::ComponentJson& json, std::vector<Decoder>& out) {
        detail::read_sequence(json, "decoders", [&](const detail::ComponentJson& one) {
            const std::string type = one.type();
            Decoder d;
            if (type == "ByteLevel") {
                d.kind_ = Kind::byte_level;
            } else if (type == "Metaspace") {
                d.kind_ = Kind::metaspace;
                d.character_ = one.character("replacement", U'\u2581');
                d.scheme_ = PreTokenizer::read_prepend_scheme(one);
            } else if (type == "Replace") {
                d.kind_ = Kind::replace;
                d.pattern_ = Pattern::read(one, "pattern");
                d.content_ = one.string("content");
            } else if (type == "ByteFallback") {
                d.kind_ = Kind::byte_fallback;
            } else if (type == "Fuse") {
                d.kind_ = Kind::fuse;
            } else if (type == "Strip") {
                d.kind_ = Kind::strip;
                d.character_ = one.character("content", U' ');
                d.start_ = one.count("start", 0);
                d.stop_ = one.count("stop", 0);
            } else {
                one.unsupported("decoder");
            }
            out.push_back(std::move(d));
        });
    }

    static Decoder byte_level() {
        Decoder d;
        d.kind_ = Kind::byte_level;
        return d;
    }

    // tokenizers' decode_chain: tokens in, tokens out (joined at the end).
    void apply(std::vector<std::string>& tokens) const {
        switch (kind_) {
            case Kind::byte_level: {
                std::string bytes;
                for (const auto& token : tokens) {
                    std::string mapped;
                    bool all_mapped = true;
                    utf8::for_each_point(token, [&](char32_t c, std::size_t, std::size_t) {
                        const auto byte = utf8::byte_of_code_point(c);
                        if (byte) {
                            mapped += static_cast<char>(*byte);
                        } else {
                            all_mapped = false;
                        }
                    });
                    bytes += all_mapped ? mapped : token;  // a token that is not byte-level stays as it is
                }
                tokens.assign(1, utf8::replace_invalid(bytes));
                return;
            }
            case Kind::metaspace:
                for (std::size_t i = 0; i < tokens.size(); ++i) {
                    std::string out;
                    utf8::for_each_point(tokens[i], [&](char32_t c, std::size_t, std::size_t) {
                        if (c != character_) {
                            utf8::append(out, c);
                        } else if (i != 0 || scheme_ == PrependScheme::never) {
                            out += ' ';
                        }
                    });
                    tokens[i] = std::move(out);
                }
                return;
            case Kind::replace:
                for (auto& token : tokens) token = pattern_->replace_all(token, content_);
                return;
            case Kind::byte_fallback: {
                std::vector<std::string> out;
                std::string bytes;
                std::size_t byte_count = 0;
                const auto flush = [&] {
                    if (byte_count == 0) return;
                    if (utf8::is_valid(bytes)) {
                        out.push_back(bytes);
                    } else {
                        for (std::size_t i = 0; i < byte_count; ++i) out.emplace_back(utf8::replacement_character);
                    }
                    bytes.clear();
                    byte_count = 0;
                };
                for (auto& token : tokens) {
                    const auto byte = fallback_byte(token);
                    if (byte) {
                        bytes += static_cast<char>(*byte);
                        ++byte_count;
                    } else {
                        flush();
                        out.push_back(std::move(token));
                    }
                }
                flush();
                tokens = std::move(out);
                return;
            }
            case Kind::fuse: {
                std::string joined;
                for (const auto& token : tokens) joined += token;
                tokens.assign(1, std::move(joined));
                return;
            }
            case Kind::strip:
                for (auto& token : tokens) {
                    std::vector<std::pair<char32_t, std::size_t>> points;  // (character, offset)
                    utf8::for_each_point(token, [&](char32_t c, std::size_t at, std::size_t) { points.emplace_back(c, at); });
                    std::size_t begin = 0, end = points.size();
                    while (begin < std::min(start_, points.size()) && points[begin].first == character_) ++begin;
                    for (std::size_t i = 0; i < stop_ && end > begin && points[end - 1].first == character_; ++i) --end;
                    const std::size_t from = begin < points.size() ? points[begin].second : token.size();
                    const std::size_t to = end < points.size() ? points[end].second : token.size();
                    token = token.substr(from, to - from);
                }
                return;
        }
    }

    // The byte of a "<0xNN>" token.
    static std::optional<unsigned char> fallback_byte(std::string_view token) {
        if (token.size() != 6 || !token.starts_with("<0x") || token.back() != '>') return std::nullopt;
        const auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int high = hex(token[3]), low = hex(token[4]);
        if (high < 0 || low < 0) return std::nullopt;
        return static_cast<unsigned char>(high * 16 + low);
    }

private:
    Kind kind_ = Kind::byte_level;
    char32_t character_ = U' ';
    PrependScheme scheme_ = PrependScheme::always;
    std::optional<Pattern> pattern_;
    std::string content_;
    std::size_t start_ = 0, stop_ = 0;
};

}  // namespace simnpo::tokenizer
