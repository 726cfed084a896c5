// UTF-8 as the tokenizers read and write it: code points in and out, the
// replacement of ill-formed bytes (as WHATWG's decoder and Rust's
// from_utf8_lossy do it), and GPT-2's byte-to-character table.
#pragma once
#include "simnpo/core/internal_check.hpp"

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace simnpo::tokenizer::utf8 {

inline void append(std::string& out, char32_t point) {
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

// One code point read at `at`. An ill-formed sequence gives no point and, as
// `length`, its maximal subpart: the longest prefix that could still have
// become well-formed, or 1 (Unicode's "U+FFFD substitution of maximal
// subparts", which WHATWG's decoder and Rust's from_utf8_lossy follow).
struct Unit {
    std::size_t length = 1;
    std::optional<char32_t> point;
};

inline Unit read(std::string_view text, std::size_t at) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(at);
    if (lead < 0x80) return {1, lead};
    std::size_t length = 0;
    unsigned char second_low = 0x80, second_high = 0xBF;
    char32_t point = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2, point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3, point = lead & 0x0F;
        if (lead == 0xE0) second_low = 0xA0;   // no overlong forms
        if (lead == 0xED) second_high = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4, point = lead & 0x07;
        if (lead == 0xF0) second_low = 0x90;
        if (lead == 0xF4) second_high = 0x8F;  // nothing past U+10FFFF
    } else {
        return {};
    }
    for (std::size_t i = 1; i < length; ++i) {
        const bool fits = at + i < text.size() && (i == 1 ? byte(at + i) >= second_low && byte(at + i) <= second_high
                                                           : (byte(at + i) & 0xC0) == 0x80);
        if (!fits) return {i, std::nullopt};
        point = (point << 6) | (byte(at + i) & 0x3F);
    }
    return {length, point};
}

inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";  // U+FFFD

// `text` with every maximal ill-formed subpart replaced by U+FFFD.
inline std::string replace_invalid(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t at = 0; at < text.size();) {
        const Unit unit = read(text, at);
        out.append(unit.point ? text.substr(at, unit.length) : replacement_character);
        at += unit.length;
    }
    return out;
}

inline bool is_valid(std::string_view text) {
    for (std::size_t at = 0; at < text.size();) {
        const Unit unit = read(text, at);
        if (!unit.point) return false;
        at += unit.length;
    }
    return true;
}

// Calls f(point, offset, length) for each code point of well-formed `text`.
template <class F>
void for_each_point(std::string_view text, F&& f) {
    for (std::size_t at = 0; at < text.size();) {
        const Unit unit = read(text, at);
        f(unit.point.value_or(0xFFFD), at, unit.length);
        at += unit.length;
    }
}

// The offset of the code point that ends at `end` (> 0) in well-formed text.
inline std::size_t previous_point(std::string_view text, std::size_t end) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    return start;
}

// Unicode's White_Space property (Rust's char::is_whitespace, Oniguruma's \s).
inline bool is_whitespace(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// A JSON string literal for `text`, for messages: UTF-8 kept as it is, an
// ill-formed byte shown as U+FFFD.
inline std::string json_string(std::string_view text) {
    return nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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

// The one-byte token for `byte`, as a byte-level vocabulary spells it.
inline std::string byte_token(unsigned byte) {
    std::string spelled;
    append(spelled, byte_code_points()[byte]);
    return spelled;
}

// The byte a byte-level character stands for, or nullopt.
inline std::optional<unsigned char> byte_of_code_point(char32_t point) {
    static const std::array<int, 0x144> table = [] {
        std::array<int, 0x144> bytes{};
        bytes.fill(-1);
        for (unsigned byte = 0; byte < 256; ++byte) bytes[byte_code_points()[byte]] = static_cast<int>(byte);
        return bytes;
    }();
    if (point >= table.size() || table[point] < 0) return std::nullopt;
    return static_cast<unsigned char>(table[point]);
}

}  // namespace simnpo::tokenizer::utf8
