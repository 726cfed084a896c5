// The BPE model of a tokenizer: a piece of text (after normalization and
// pre-tokenization) becomes token ids, as Hugging Face's tokenizers does it.
// Each character starts as its own token (or, with byte_fallback, as its
// <0xNN> byte tokens, or as the unknown token); adjacent tokens then merge,
// always the pair with the lowest-ranked rule first and, among equal ranks,
// the leftmost, until no rule applies. With ignore_merges a piece that is
// itself in the vocabulary is that one token (Llama 3).
#pragma once
#include "simnpo/core/internal_check.hpp"

#include <array>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <span>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/tokenizer/utf8.hpp"

namespace simnpo::tokenizer {

namespace detail {

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using TokenIds = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

// The ids of pieces seen before: encoding repeats the same words over and
// over. Bounded; a copy of a model starts with an empty cache.
class PieceCache {
public:
    PieceCache() = default;
    PieceCache(const PieceCache&) {}
    PieceCache& operator=(const PieceCache&) { return *this; }
    PieceCache(PieceCache&&) noexcept {}
    PieceCache& operator=(PieceCache&&) noexcept { return *this; }

    static constexpr std::size_t max_entries = 1 << 17;
    static constexpr std::size_t max_piece_bytes = 64;

    bool find(std::string_view piece, std::vector<std::int32_t>& out) const {
        const std::lock_guard lock(mutex_);
        const auto it = entries_.find(piece);
        if (it == entries_.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }
    void insert(std::string_view piece, std::span<const std::int32_t> ids) const {
        if (piece.size() > max_piece_bytes) return;
        const std::lock_guard lock(mutex_);
        if (entries_.size() < max_entries) entries_.emplace(std::string(piece), std::vector<std::int32_t>(ids.begin(), ids.end()));
    }

private:
    mutable std::mutex mutex_;
    mutable std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>> entries_;
};

}  // namespace detail

struct BpeOptions {
    std::optional<std::string> unk_token;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
    std::string continuing_subword_prefix;
    std::string end_of_word_suffix;
};

class BpeModel {
public:
    // `vocab`: token -> id; `merges`: rules in priority order; `where` names
    // the source in errors, `rule_where(rank)` a rule.
    BpeModel(detail::TokenIds vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
             std::string where, const std::function<std::string(std::size_t)>& rule_where)
        : vocab_(std::move(vocab)), options_(std::move(options)), where_(std::move(where)) {
        std::size_t size = 0;
        for (const auto& [token, id] : vocab_) {
            if (id < 0) fail(where_, ": the id ", id, " of token ", utf8::json_string(token), " is negative");
            size = std::max(size, static_cast<std::size_t>(id) + 1);
        }
        tokens_.resize(size);
        has_id_.assign(size, false);
        for (const auto& [token, id] : vocab_) {
            if (has_id_[id]) fail(where_, ": the id ", id, " is given to two tokens");
            has_id_[id] = true;
            tokens_[id] = token;
        }
        if (options_.unk_token) {
            const auto it = vocab_.find(*options_.unk_token);
            if (it == vocab_.end())
                fail(where_, ": the unknown token ", utf8::json_string(*options_.unk_token), " is not in the vocabulary");
            unk_id_ = it->second;
        }
        if (options_.byte_fallback) {
            for (unsigned byte = 0; byte < 256; ++byte) {
                char name[8];
                std::snprintf(name, sizeof name, "<0x%02X>", byte);
                const auto it = vocab_.find(std::string_view(name));
                byte_ids_[byte] = it == vocab_.end() ? -1 : it->second;
            }
        }
        merges_.reserve(merges.size());
        for (std::size_t rank = 0; rank < merges.size(); ++rank)
            add_merge(merges[rank].first, merges[rank].second, rank, rule_where);
    }

    // Appends the ids of one piece to `out`.
    void tokenize(std::string_view piece, std::vector<std::int32_t>& out) const {
        if (piece.empty()) return;
        if (options_.ignore_merges) {
            const auto it = vocab_.find(piece);
            if (it != vocab_.end()) {
                out.push_back(it->second);
                return;
            }
        }
        if (cache_.find(piece, out)) return;
        const std::size_t first = out.size();
        merge_word(piece, out);
        cache_.insert(piece, std::span<const std::int32_t>(out).subspan(first));
    }

    std::size_t vocab_size() const { return tokens_.size(); }
    std::size_t merge_count() const { return merge_rules_.size(); }
    const std::vector<std::pair<std::int32_t, std::int32_t>>& merge_rules() const { return merge_rules_; }

    std::optional<std::int32_t> token_id(std::string_view token) const {
        const auto it = vocab_.find(token);
        if (it == vocab_.end()) return std::nullopt;
        return it->second;
    }
    // The token of `id`, or nullptr for an id the vocabulary does not give out.
    const std::string* token(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !has_id_[id]) return nullptr;
        return &tokens_[id];
    }

private:
    struct Merge {
        std::int32_t rank;
        std::int32_t result;
    };

    static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    }

    void add_merge(const std::string& left, const std::string& right, std::size_t rank,
                   const std::function<std::string(std::size_t)>& rule_where) {
        const auto id_of = [&](std::string_view token) {
            const auto id = token_id(token);
            if (!id) fail(rule_where(rank), ": the token ", utf8::json_string(token), " is not in the vocabulary");
            return *id;
        };
        const std::int32_t left_id = id_of(left);
        const std::int32_t right_id = id_of(right);
        const std::size_t prefix = options_.continuing_subword_prefix.size();
        if (right.size() < prefix)
            fail(rule_where(rank), ": the token ", utf8::json_string(right), " is shorter than the continuing-subword prefix");
        std::string joined = left;
        joined.append(right, prefix);
        const std::int32_t result = id_of(joined);
        if (rank > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) fail(rule_where(rank), ": too many merge rules");
        if (!merges_.emplace(pair_key(left_id, right_id), Merge{static_cast<std::int32_t>(rank), result}).second)
            fail(rule_where(rank), ": the rule ", utf8::json_string(left + " " + right), " is given twice");
        merge_rules_.emplace_back(left_id, right_id);
    }

    // The characters of `word` as their starting tokens, then merged.
    void merge_word(std::string_view word, std::vector<std::int32_t>& out) const {
        struct Symbol {
            std::int32_t id;
            std::int32_t prev, next;  // neighbours' indices, -1 at the ends
            bool removed;
        };
        std::vector<Symbol> symbols;
        symbols.reserve(word.size());
        const auto add = [&](std::int32_t id) {
            const auto index = static_cast<std::int32_t>(symbols.size());
            symbols.push_back({id, index - 1, index + 1, false});
        };
        std::int32_t pending_unk = -1;  // the unknown token not yet added (fuse_unk joins a run), or -1
        std::string spelled;
        for (std::size_t at = 0; at < word.size();) {
            const std::size_t length = utf8::read(word, at).length;
            spelled.assign(at == 0 ? "" : options_.continuing_subword_prefix);
            spelled.append(word.substr(at, length));
            if (at + length == word.size()) spelled.append(options_.end_of_word_suffix);
            at += length;
            if (const auto it = vocab_.find(std::string_view(spelled)); it != vocab_.end()) {
                if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
                add(it->second);
                continue;
            }
            if (options_.byte_fallback) {
                bool all = true;
                for (const char byte : spelled) all = all && byte_ids_[static_cast<unsigned char>(byte)] >= 0;
                if (all) {
                    // As tokenizers does, a pending unknown token is added after these bytes.
                    for (const char byte : spelled) add(byte_ids_[static_cast<unsigned char>(byte)]);
                    continue;
                }
            }
            if (unk_id_) {
                if (pending_unk >= 0 && !options_.fuse_unk) add(pending_unk);
                pending_unk = *unk_id_;
            }
            // With no unknown token, tokenizers drops a character it cannot spell.
        }
        if (pending_unk >= 0) add(pending_unk);
        if (symbols.empty()) return;
        symbols.back().next = -1;

        struct Candidate {
            std::int32_t rank, pos, result;
            bool operator<(const Candidate& other) const {  // the lowest rank, then the leftmost, on top
                return rank != other.rank ? rank > other.rank : pos > other.pos;
            }
        };
        std::priority_queue<Candidate> queue;
        const auto rule = [&](std::int32_t left, std::int32_t right) -> const Merge* {
            const auto it = merges_.find(pair_key(left, right));
            return it == merges_.end() ? nullptr : &it->second;
        };
        for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
            if (const Merge* m = rule(symbols[i].id, symbols[i + 1].id))
                queue.push({m->rank, static_cast<std::int32_t>(i), m->result});
        while (!queue.empty()) {
            const Candidate top = queue.top();
            queue.pop();
            Symbol& left = symbols[top.pos];
            if (left.removed || left.next < 0) continue;
            Symbol& right = symbols[left.next];
            const Merge* current = rule(left.id, right.id);
            if (current == nullptr || current->result != top.result) continue;  // a stale entry
            left.id = top.result;
            right.removed = true;
            left.next = right.next;
            if (right.next >= 0) symbols[right.next].prev = top.pos;
            if (left.prev >= 0)
                if (const Merge* m = rule(symbols[left.prev].id, left.id)) queue.push({m->rank, left.prev, m->result});
            if (left.next >= 0)
                if (const Merge* m = rule(left.id, symbols[left.next].id)) queue.push({m->rank, top.pos, m->result});
        }
        for (const auto& symbol : symbols)
            if (!symbol.removed) out.push_back(symbol.id);
    }

    detail::TokenIds vocab_;
    std::vector<std::string> tokens_;  // id -> token
    std::vector<bool> has_id_;         // whether a token has the id (ids may have gaps)
    BpeOptions options_;
    std::string where_;
    std::optional<std::int32_t> unk_id_;
    std::array<std::int32_t, 256> byte_ids_{};  // byte -> its <0xNN> token, -1 if none
    std::unordered_map<std::uint64_t, Merge> merges_;  // (left, right) -> rule
    std::vector<std::pair<std::int32_t, std::int32_t>> merge_rules_;  // rules in rank order
    detail::PieceCache cache_;
};

}  // namespace simnpo::tokenizer
