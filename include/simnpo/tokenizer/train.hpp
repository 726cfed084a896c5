#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <queue>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/tokenizer/tokenizer.hpp"
#include "simnpo/tokenizer/utf8.hpp"

namespace simnpo::tokenizer {

struct BpeTrainOptions {
    // Every token counts: the 256 byte tokens, the learned merges and <|endoftext|>.
    std::size_t vocab_size = 4096;
    // A pair that occurs fewer times than this (summed over the corpus) is not
    // merged; 0 acts as 1.
    std::size_t min_frequency = 2;
};

// One distinct pre-tokenised piece of the training text, how often it occurs,
// and the tokens training ended with for it.
struct TrainedPiece {
    std::string text;
    std::uint64_t count = 0;
    std::vector<std::int32_t> ids;
};

// A trained tokenizer and its training pieces (sorted by their bytes), for
// those who want to inspect what training did.
struct BpeTraining {
    Tokenizer tokenizer;
    std::vector<TrainedPiece> pieces;
};

// A corpus is any range of documents that read as std::string_view
// (std::vector<std::string>, std::span<const std::string_view>, a view, ...).
template <class Corpus>
concept TextCorpus =
    std::ranges::input_range<Corpus> && std::convertible_to<std::ranges::range_reference_t<Corpus>, std::string_view>;

namespace detail {

inline constexpr std::string_view trained_end_of_text = "<|endoftext|>";

// Byte-level BPE on the distinct pieces of a corpus and their counts.
//
// Ids: 0..255 are the bytes in byte order, then one id per merge in the order
// learned; <|endoftext|> comes last (added by the caller). A merge joins the
// most frequent adjacent pair of tokens within a piece, at every place in every
// piece where it occurs (left to right, as Tokenizer::encode applies it).
// Ties go to the pair whose left token's bytes are lexicographically smallest,
// then whose right token's bytes are (bytes compared as unsigned values), which
// is the same on every platform and independent of the corpus order.
//
// Why encode reproduces training: a merge creates only pairs that hold the new
// token, so no older rule can match again, and encoding a training piece (the
// lowest-ranked matching rule first) walks through exactly the segmentations
// training went through. This needs every rule to make a new token. It does: a
// span of a piece that stays whole is segmented at every step as its bytes
// alone would be, so once "ab"+"c" made "abc", no span "abc" can still be split
// as "a"+"bc". A pair that would spell an existing token is nonetheless passed
// over (a guard, never taken), as a vocabulary must not hold a token twice.
//
// Incremental: pair counts and, per pair, the pieces that hold it are updated
// only for the pieces a merge touches; a max-heap of (count, pair) is checked
// lazily (a popped entry whose count went down is pushed back with its count).
// Counts of existing pairs only go down, so a popped entry whose count is
// current is the most frequent pair.
inline BpeTraining learn_bpe(std::vector<std::pair<std::string, std::uint64_t>> piece_counts,
                             const BpeTrainOptions& options) {
    using Id = std::int32_t;
    struct Word {
        std::vector<Id> symbols;
        std::uint64_t count;
    };
    struct Candidate {
        std::uint64_t count;
        Id left;
        Id right;
    };
    const auto pair_key = [](Id left, Id right) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    };
    const auto key_left = [](std::uint64_t key) { return static_cast<Id>(key >> 32); };
    const auto key_right = [](std::uint64_t key) { return static_cast<Id>(key & 0xFFFFFFFFu); };

    std::vector<std::string> token_bytes;  // id -> the bytes it stands for
    std::unordered_map<std::string, Id> id_of;
    for (unsigned byte = 0; byte < 256; ++byte) {
        token_bytes.emplace_back(1, static_cast<char>(byte));
        id_of.emplace(token_bytes.back(), static_cast<Id>(byte));
    }
    // Reserved, so that no merge can spell it (pre-tokenisation already splits it).
    id_of.emplace(std::string(trained_end_of_text), -1);

    std::vector<Word> words;
    words.reserve(piece_counts.size());
    for (const auto& [text, count] : piece_counts) {
        Word word{{}, count};
        word.symbols.reserve(text.size());
        for (const char byte : text) word.symbols.push_back(static_cast<unsigned char>(byte));
        words.push_back(std::move(word));
    }

    std::unordered_map<std::uint64_t, std::uint64_t> pair_counts;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> words_with;  // may hold stale entries
    for (std::size_t w = 0; w < words.size(); ++w) {
        const auto& symbols = words[w].symbols;
        for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
            const auto key = pair_key(symbols[i], symbols[i + 1]);
            pair_counts[key] += words[w].count;
            auto& holders = words_with[key];
            if (holders.empty() || holders.back() != w) holders.push_back(static_cast<std::uint32_t>(w));
        }
    }

    // `a` ranks below `b`: fewer occurrences, or as many and larger bytes.
    const auto ranks_below = [&token_bytes](const Candidate& a, const Candidate& b) {
        if (a.count != b.count) return a.count < b.count;
        const int left = token_bytes[a.left].compare(token_bytes[b.left]);
        if (left != 0) return left > 0;
        return token_bytes[a.right].compare(token_bytes[b.right]) > 0;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(ranks_below)> heap(ranks_below);
    for (const auto& [key, count] : pair_counts) heap.push({count, key_left(key), key_right(key)});

    const std::uint64_t min_count = std::max<std::size_t>(options.min_frequency, 1);
    const std::size_t max_tokens =
        std::min<std::size_t>(options.vocab_size, std::numeric_limits<Id>::max()) - 1;  // room for <|endoftext|>
    std::vector<std::pair<Id, Id>> merges;
    std::vector<Id> merged;
    std::vector<std::uint64_t> fresh;  // pairs holding the new token
    while (token_bytes.size() < max_tokens && !heap.empty()) {
        const Candidate top = heap.top();
        heap.pop();
        const auto key = pair_key(top.left, top.right);
        const auto found = pair_counts.find(key);
        const std::uint64_t count = found == pair_counts.end() ? 0 : found->second;
        if (count != top.count) {
            if (count > 0) heap.push({count, top.left, top.right});
            continue;
        }
        if (count < min_count) break;
        std::string joined = token_bytes[top.left] + token_bytes[top.right];
        if (id_of.contains(joined)) continue;  // the guard above; its count could only fall

        const Id id = static_cast<Id>(token_bytes.size());
        id_of.emplace(joined, id);
        token_bytes.push_back(std::move(joined));
        merges.emplace_back(top.left, top.right);

        const std::vector<std::uint32_t> holders = std::move(words_with[key]);
        words_with.erase(key);
        fresh.clear();
        for (const std::uint32_t w : holders) {
            auto& symbols = words[w].symbols;
            merged.clear();
            for (std::size_t i = 0; i < symbols.size();) {
                if (i + 1 < symbols.size() && symbols[i] == top.left && symbols[i + 1] == top.right) {
                    merged.push_back(id);
                    i += 2;
                } else {
                    merged.push_back(symbols[i++]);
                }
            }
            if (merged.size() == symbols.size()) continue;  // a stale entry: the pair left this word earlier
            const std::uint64_t word_count = words[w].count;
            for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
                pair_counts[pair_key(symbols[i], symbols[i + 1])] -= word_count;
            for (std::size_t i = 0; i + 1 < merged.size(); ++i) {
                const auto next = pair_key(merged[i], merged[i + 1]);
                pair_counts[next] += word_count;
                if (merged[i] == id || merged[i + 1] == id) {
                    auto& next_holders = words_with[next];
                    if (next_holders.empty() || next_holders.back() != w) next_holders.push_back(w);
                    fresh.push_back(next);
                }
            }
            symbols.swap(merged);
        }
        pair_counts.erase(key);
        std::sort(fresh.begin(), fresh.end());
        fresh.erase(std::unique(fresh.begin(), fresh.end()), fresh.end());
        for (const auto next : fresh) heap.push({pair_counts.at(next), key_left(next), key_right(next)});
    }

    // Byte-level spellings, as vocab.json and merges.txt write them.
    const auto& points = utf8::byte_code_points();
    std::vector<std::string> tokens;
    tokens.reserve(token_bytes.size() + 1);
    for (const auto& bytes : token_bytes) {
        std::string spelled;
        for (const char byte : bytes) utf8::append(spelled, points[static_cast<unsigned char>(byte)]);
        tokens.push_back(std::move(spelled));
    }
    std::vector<std::pair<std::string, std::string>> rules;
    rules.reserve(merges.size());
    for (const auto& [left, right] : merges) rules.emplace_back(tokens[left], tokens[right]);
    tokens.emplace_back(trained_end_of_text);

    std::vector<TrainedPiece> pieces;
    pieces.reserve(words.size());
    for (std::size_t w = 0; w < words.size(); ++w)
        pieces.push_back({std::move(piece_counts[w].first), words[w].count, std::move(words[w].symbols)});
    return {Tokenizer::from_parts(std::move(tokens), rules), std::move(pieces)};
}

}  // namespace detail

// Trains GPT-2 style byte-level BPE on `corpus` (see detail::learn_bpe for the
// rules, the tie-break and why encode reproduces training): each document is
// split by GPT-2's pattern (merges never cross pieces), then the most frequent
// adjacent pair is merged until the vocabulary holds options.vocab_size tokens
// or no pair occurs options.min_frequency times. Ids: bytes 0..255 in byte
// order, merges in the order learned, <|endoftext|> last.
template <TextCorpus Corpus>
BpeTraining train_bpe_with_pieces(Corpus&& corpus, const BpeTrainOptions& options = {}) {
    if (options.vocab_size < 257)
        fail("BPE training: vocab_size ", options.vocab_size,
             " is too small: it must be at least 257 (256 byte tokens and <|endoftext|>)");
    std::unordered_map<std::string, std::uint64_t> counts;
    std::size_t documents = 0;
    for (auto&& document : corpus) {
        ++documents;
        // As encode sees it: ill-formed UTF-8 replaced, then GPT-2's pieces.
        const std::string text = utf8::replace_invalid(std::string_view(document));
        for (const std::string_view piece : detail::gpt2_pieces(text)) ++counts[std::string(piece)];
    }
    if (documents == 0) fail("BPE training: the corpus is empty (no documents)");
    if (counts.empty()) fail("BPE training: the corpus is empty (its ", documents, " documents have no text)");
    std::vector<std::pair<std::string, std::uint64_t>> pieces(std::make_move_iterator(counts.begin()),
                                                              std::make_move_iterator(counts.end()));
    counts.clear();
    std::sort(pieces.begin(), pieces.end());
    return detail::learn_bpe(std::move(pieces), options);
}

template <TextCorpus Corpus>
Tokenizer train_bpe(Corpus&& corpus, const BpeTrainOptions& options = {}) {
    return train_bpe_with_pieces(std::forward<Corpus>(corpus), options).tokenizer;
}

// For a braced list of documents: train_bpe({"low", "lower"}).
inline BpeTraining train_bpe_with_pieces(std::initializer_list<std::string_view> corpus,
                                         const BpeTrainOptions& options = {}) {
    return train_bpe_with_pieces(std::span<const std::string_view>(corpus.begin(), corpus.size()), options);
}
inline Tokenizer train_bpe(std::initializer_list<std::string_view> corpus, const BpeTrainOptions& options = {}) {
    return train_bpe_with_pieces(corpus, options).tokenizer;
}

}  // namespace simnpo::tokenizer
