// The regular expressions of tokenizer.json (Split and Replace patterns,
// ByteLevel's own), compiled by PCRE2 with Unicode properties and its JIT.
//
// Hugging Face's tokenizers match these patterns with Oniguruma. The two agree
// on the syntax the real patterns use (\p{L}, \p{N}, (?i:...), look-ahead),
// and on \s once it means Unicode's White_Space property, as Oniguruma's does:
// PCRE2's \s also holds U+180E, so \s and \S are spelled out here.
#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "simnpo/core/error.hpp"
#include "simnpo/tokenizer/utf8.hpp"

namespace simnpo::tokenizer {

namespace detail {

// White_Space, as the body of a character class.
inline constexpr std::string_view white_space_class =
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// `pattern` with \s and \S replaced by White_Space classes; `where` names it in errors.
inline std::string spell_out_white_space(std::string_view pattern, const std::string& where) {
    std::string out;
    bool in_class = false;
    std::size_t class_start = 0;  // where the current class's members begin
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        const char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            const char next = pattern[++i];
            if (next == 's') {
                out.append(in_class ? "" : "[").append(white_space_class).append(in_class ? "" : "]");
            } else if (next == 'S') {
                if (in_class) fail(where, ": \\S inside a character class is not supported");
                out.append("[^").append(white_space_class).append("]");
            } else {
                out += c;
                out += next;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            class_start = i + 1;
            if (class_start < pattern.size() && pattern[class_start] == '^') ++class_start;
        } else if (in_class && c == ']' && i != class_start) {
            in_class = false;
        } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
            const std::size_t close = pattern.find(":]", i + 2);  // a POSIX class such as [:alpha:]
            if (close != std::string_view::npos) {
                out.append(pattern.substr(i, close + 2 - i));
                i = close + 1;
                continue;
            }
        }
        out += c;
    }
    return out;
}

}  // namespace detail

class Regex {
public:
    // Compiles `pattern` (UTF-8); Error naming `where` if PCRE2 rejects it.
    Regex(std::string_view pattern, const std::string& where) {
        const std::string spelled = detail::spell_out_white_space(pattern, where);
        int code = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spelled.data()), spelled.size(),
                                             PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
        if (compiled == nullptr) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(code, message, sizeof message);
            fail(where, ": the regular expression ", utf8::json_string(pattern), " does not compile: ",
                 reinterpret_cast<const char*>(message));
        }
        code_.reset(compiled, pcre2_code_free);
        jit_ = pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE) == 0;
        where_ = where;
    }

    // Calls f(begin, end) for each match in well-formed UTF-8 `text`, left to
    // right, not overlapping; after an empty match the search resumes one
    // character on (empty matches themselves are passed on too).
    template <class F>
    void for_each_match(std::string_view text, F&& f) const {
        const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
            pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
        if (!data) fail(where_, ": out of memory for a regular-expression match");
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        for (std::size_t start = 0; start <= text.size();) {
            const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, 0, data.get(), nullptr)
                                : pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                                              data.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) return;
            if (rc < 0) {
                PCRE2_UCHAR message[256];
                pcre2_get_error_message(rc, message, sizeof message);
                fail(where_, ": regular-expression match failed: ", reinterpret_cast<const char*>(message));
            }
            const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
            const std::size_t begin = ovector[0], end = ovector[1];
            f(begin, end);
            if (end > begin) {
                start = end;
            } else if (end < text.size()) {
                start = end + utf8::read(text, end).length;
            } else {
                return;
            }
        }
    }

private:
    std::shared_ptr<pcre2_code> code_;  // immutable once compiled: shared by copies
    bool jit_ = false;
    std::string where_;
};

}  // namespace simnpo::tokenizer
