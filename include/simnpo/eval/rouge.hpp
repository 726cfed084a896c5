#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simnpo::eval {

namespace detail::porter {

inline bool vowel_letter(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// Porter's consonant: any letter but a, e, i, o, u, and 'y' only where it starts the
// word or follows a vowel ("toy": the y is a consonant; "syzygy": s,z,g consonants).
// Digits count as consonants, as in NLTK.
inline bool consonant(std::string_view w, std::size_t i) {
    bool previous = false;
    for (std::size_t k = 0; k <= i; ++k)
        previous = vowel_letter(w[k]) ? false : (w[k] == 'y' ? (k == 0 || !previous) : true);
    return previous;
}

// m in [C](VC)^m[V]: the number of vowel-to-consonant transitions.
inline int measure(std::string_view w) {
    int m = 0;
    bool previous_consonant = true;  // no transition into position 0
    bool previous_vowel = false;
    for (std::size_t k = 0; k < w.size(); ++k) {
        const bool c = vowel_letter(w[k]) ? false : (w[k] == 'y' ? (k == 0 || !previous_consonant) : true);
        if (c && previous_vowel) ++m;
        previous_consonant = c;
        previous_vowel = !c;
    }
    return m;
}

inline bool has_vowel(std::string_view w) {
    for (std::size_t k = 0; k < w.size(); ++k)
        if (!consonant(w, k)) return true;
    return false;
}

inline bool ends_double_consonant(std::string_view w) {
    const std::size_t n = w.size();
    return n >= 2 && w[n - 1] == w[n - 2] && consonant(w, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a
// two-letter vowel-consonant word, so that "ab" + "ing" keeps no 'e' but "hop" gains one.
inline bool ends_cvc(std::string_view w) {
    const std::size_t n = w.size();
    if (n >= 3 && consonant(w, n - 3) && !consonant(w, n - 2) && consonant(w, n - 1) && w[n - 1] != 'w' &&
        w[n - 1] != 'x' && w[n - 1] != 'y')
        return true;
    return n == 2 && !consonant(w, 0) && consonant(w, 1);
}

// A condition on the stem left when the suffix is removed (and, for 'logi', the word).
using Condition = bool (*)(std::string_view stem, std::string_view word);

struct Rule {
    std::string_view suffix;
    std::string_view replacement;
    Condition condition;  // nullptr: always
};

inline bool m_positive(std::string_view stem, std::string_view) { return measure(stem) > 0; }
inline bool m_above_one(std::string_view stem, std::string_view) { return measure(stem) > 1; }

// The first rule whose suffix ends the word decides: it rewrites the word when its
// condition holds, and otherwise the word stays as it is (no later rule is tried).
inline void apply_first(std::string& w, std::span<const Rule> rules) {
    for (const Rule& rule : rules) {
        if (!w.ends_with(rule.suffix)) continue;
        const std::string_view stem = std::string_view(w).substr(0, w.size() - rule.suffix.size());
        if (rule.condition == nullptr || rule.condition(stem, w)) {
            w.resize(stem.size());
            w += rule.replacement;
        }
        return;
    }
}

inline void replace_tail(std::string& w, std::size_t suffix_size, std::string_view replacement) {
    w.resize(w.size() - suffix_size);
    w += replacement;
}

inline void step1a(std::string& w) {
    if (w.size() == 4 && w.ends_with("ies")) {  // NLTK: "ties" -> "tie", not "ti"
        replace_tail(w, 3, "ie");
        return;
    }
    static constexpr std::array<Rule, 4> rules{{
        {"sses", "ss", nullptr},
        {"ies", "i", nullptr},
        {"ss", "ss", nullptr},
        {"s", "", nullptr},
    }};
    apply_first(w, rules);
}

inline void step1b(std::string& w) {
    if (w.ends_with("ied")) {  // NLTK: "died" -> "die", "cried" -> "cri"
        replace_tail(w, 3, w.size() == 4 ? "ie" : "i");
        return;
    }
    if (w.ends_with("eed")) {
        if (measure(std::string_view(w).substr(0, w.size() - 3)) > 0) w.pop_back();
        return;
    }
    std::size_t cut = 0;
    if (w.ends_with("ed") && has_vowel(std::string_view(w).substr(0, w.size() - 2)))
        cut = 2;
    else if (w.ends_with("ing") && has_vowel(std::string_view(w).substr(0, w.size() - 3)))
        cut = 3;
    if (cut == 0) return;
    w.erase(w.size() - cut);  // not resize: GCC 12 cannot see that size() >= cut and warns of a huge memset
    if (w.ends_with("at") || w.ends_with("bl") || w.ends_with("iz")) {
        w += 'e';
    } else if (ends_double_consonant(w)) {
        const char last = w.back();
        if (last != 'l' && last != 's' && last != 'z') w.pop_back();
    } else if (measure(w) == 1 && ends_cvc(w)) {
        w += 'e';
    }
}

inline void step1c(std::string& w) {
    // NLTK: y -> i after a consonant that is not the first letter ("cry" -> "cri", "say" stays)
    if (w.ends_with('y') && w.size() > 2 && consonant(w, w.size() - 2)) w.back() = 'i';
}

inline void step2(std::string& w) {
    // NLTK takes 'alli' -> 'al' first and runs the result through this step again.
    if (w.ends_with("alli") && measure(std::string_view(w).substr(0, w.size() - 4)) > 0) {
        replace_tail(w, 4, "al");
        step2(w);
        return;
    }
    static constexpr std::array<Rule, 22> rules{{
        {"ational", "ate", m_positive},
        {"tional", "tion", m_positive},
        {"enci", "ence", m_positive},
        {"anci", "ance", m_positive},
        {"izer", "ize", m_positive},
        {"bli", "ble", m_positive},
        {"alli", "al", m_positive},
        {"entli", "ent", m_positive},
        {"eli", "e", m_positive},
        {"ousli", "ous", m_positive},
        {"ization", "ize", m_positive},
        {"ation", "ate", m_positive},
        {"ator", "ate", m_positive},
        {"alism", "al", m_positive},
        {"iveness", "ive", m_positive},
        {"fulness", "ful", m_positive},
        {"ousness", "ous", m_positive},
        {"aliti", "al", m_positive},
        {"iviti", "ive", m_positive},
        {"biliti", "ble", m_positive},
        {"fulli", "ful", m_positive},
        // the 'l' counts with the stem, so that "geologi" -> "geolog" like "archaeologi"
        {"logi", "log", [](std::string_view, std::string_view word) {
             return measure(word.substr(0, word.size() - 3)) > 0;
         }},
    }};
    apply_first(w, rules);
}

inline void step3(std::string& w) {
    static constexpr std::array<Rule, 7> rules{{
        {"icate", "ic", m_positive},
        {"ative", "", m_positive},
        {"alize", "al", m_positive},
        {"iciti", "ic", m_positive},
        {"ical", "ic", m_positive},
        {"ful", "", m_positive},
        {"ness", "", m_positive},
    }};
    apply_first(w, rules);
}

inline void step4(std::string& w) {
    static constexpr std::array<Rule, 19> rules{{
        {"al", "", m_above_one},
        {"ance", "", m_above_one},
        {"ence", "", m_above_one},
        {"er", "", m_above_one},
        {"ic", "", m_above_one},
        {"able", "", m_above_one},
        {"ible", "", m_above_one},
        {"ant", "", m_above_one},
        {"ement", "", m_above_one},
        {"ment", "", m_above_one},
        {"ent", "", m_above_one},
        {"ion", "",
         [](std::string_view stem, std::string_view) {
             return measure(stem) > 1 && (stem.back() == 's' || stem.back() == 't');
         }},
        {"ou", "", m_above_one},
        {"ism", "", m_above_one},
        {"ate", "", m_above_one},
        {"iti", "", m_above_one},
        {"ous", "", m_above_one},
        {"ive", "", m_above_one},
        {"ize", "", m_above_one},
    }};
    apply_first(w, rules);
}

inline void step5(std::string& w) {
    if (w.ends_with('e')) {
        const std::string_view stem = std::string_view(w).substr(0, w.size() - 1);
        const int m = measure(stem);
        if (m > 1 || (m == 1 && !ends_cvc(stem))) w.pop_back();
    }
    if (w.ends_with("ll") && measure(std::string_view(w).substr(0, w.size() - 1)) > 1) w.pop_back();
}

// NLTK's irregular forms, stemmed by table.
inline constexpr std::array<std::pair<std::string_view, std::string_view>, 16> irregular{{
    {"sky", "sky"},
    {"skies", "sky"},
    {"dying", "die"},
    {"lying", "lie"},
    {"tying", "tie"},
    {"news", "news"},
    {"innings", "inning"},
    {"inning", "inning"},
    {"outings", "outing"},
    {"outing", "outing"},
    {"cannings", "canning"},
    {"canning", "canning"},
    {"howe", "howe"},
    {"proceed", "proceed"},
    {"exceed", "exceed"},
    {"succeed", "succeed"},
}};

}  // namespace detail::porter

// The Porter stem of `word` exactly as NLTK 3.8's PorterStemmer() gives it in its
// default mode (NLTK_EXTENSIONS): Porter (1980) plus NLTK's irregular forms, words of one
// or two letters left alone, and its variants of rules 1a, 1b, 1c, 2 and the *o test.
// Meant for lower-case [a-z0-9] words; ASCII capitals are lowered as NLTK does, but, as
// in NLTK, the irregular forms are looked up before lowering ("Sky" -> "ski").
inline std::string porter_stem(std::string_view word) {
    namespace p = detail::porter;
    for (const auto& [form, stem] : p::irregular)
        if (word == form) return std::string(stem);
    std::string w(word);
    for (char& c : w)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (w.size() <= 2) return w;
    p::step1a(w);
    p::step1b(w);
    p::step1c(w);
    p::step2(w);
    p::step3(w);
    p::step4(w);
    p::step5(w);
    return w;
}

// The tokens the rouge_score package scores (its default tokenizer, use_stemmer=True):
// the text lower-cased, every run of characters other than [a-z0-9] a separator, tokens
// longer than three characters Porter-stemmed. Bytes are read as UTF-8; non-ASCII
// characters separate tokens, except the two whose Python lower() is ASCII:
// U+0130 'İ' (-> "i" and a combining dot, which separates) and U+212A KELVIN SIGN (-> "k").
inline std::vector<std::string> rouge_tokens(std::string_view text) {
    std::string normal;
    normal.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            normal += c;
        } else if (c >= 'A' && c <= 'Z') {
            normal += static_cast<char>(c - 'A' + 'a');
        } else if (text.substr(i, 2) == "\xC4\xB0") {
            normal += "i ";
            ++i;
        } else if (text.substr(i, 3) == "\xE2\x84\xAA") {
            normal += 'k';
            i += 2;
        } else {
            normal += ' ';
        }
    }
    std::vector<std::string> tokens;
    std::size_t begin = 0;
    while (begin < normal.size()) {
        if (normal[begin] == ' ') {
            ++begin;
            continue;
        }
        std::size_t end = normal.find(' ', begin);
        if (end == std::string::npos) end = normal.size();
        const std::string_view token = std::string_view(normal).substr(begin, end - begin);
        std::string word = token.size() > 3 ? porter_stem(token) : std::string(token);
        if (!word.empty()) tokens.push_back(std::move(word));
        begin = end;
    }
    return tokens;
}

// Length of the longest common subsequence of two token sequences; O(|a|·|b|) time,
// O(min(|a|, |b|)) memory.
inline std::size_t lcs_length(std::span<const std::string> a, std::span<const std::string> b) {
    if (a.size() < b.size()) std::swap(a, b);  // b is the shorter: one row of it
    std::vector<std::size_t> row(b.size() + 1, 0);
    for (const std::string& x : a) {
        std::size_t diagonal = 0;  // row[j-1] of the previous row
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = x == b[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
            diagonal = above;
        }
    }
    return row.back();
}

struct RougeL {
    double precision = 0.0;  // LCS / |prediction tokens|
    double recall = 0.0;     // LCS / |reference tokens|
    double f1 = 0.0;         // 2PR / (P + R)
};

// ROUGE-L of `prediction` against `reference` over rouge_tokens, as rouge_score's
// RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction) computes it;
// all zero when either side has no tokens. TOFU reports the recall (of the ground-truth
// answer by the generated one), MUSE the F1.
inline RougeL rouge_l(std::string_view prediction, std::string_view reference) {
    const std::vector<std::string> pred = rouge_tokens(prediction);
    const std::vector<std::string> ref = rouge_tokens(reference);
    if (pred.empty() || ref.empty()) return {};
    const auto lcs = static_cast<double>(lcs_length(pred, ref));
    RougeL score;
    score.precision = lcs / static_cast<double>(pred.size());
    score.recall = lcs / static_cast<double>(ref.size());
    const double sum = score.precision + score.recall;
    score.f1 = sum > 0.0 ? 2.0 * score.precision * score.recall / sum : 0.0;
    return score;
}

}  // namespace simnpo::eval
