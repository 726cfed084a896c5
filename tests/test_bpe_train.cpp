#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <ranges>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_bpe_train)

namespace {

using simnpo::testing::message_has;
using simnpo::testing::TempDir;
using simnpo::tokenizer::BpeTrainOptions;
using simnpo::tokenizer::Tokenizer;
using simnpo::tokenizer::train_bpe;
using simnpo::tokenizer::train_bpe_with_pieces;
using Ids = std::vector<std::int32_t>;
// Merge rules as merges.txt writes them, "left right", in rank order.
using Rules = std::vector<std::string>;
namespace fs = std::filesystem;

// The byte-level spelling of some bytes ("Ġ" for the space).
std::string spelled(std::string_view bytes) {
    std::string out;
    for (const char byte : bytes)
        simnpo::tokenizer::utf8::append(out,
                                               simnpo::tokenizer::utf8::byte_code_points()[static_cast<unsigned char>(byte)]);
    return out;
}

// The merge rules of a tokenizer, in rank order, as merges.txt spells them.
Rules rules_of(const Tokenizer& tokenizer) {
    TempDir dir;
    tokenizer.save(dir.path);
    const std::string text = simnpo::read_file(dir.path / "merges.txt");
    Rules rules;
    for (std::size_t begin = 0; begin < text.size();) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(begin, end - begin);
        begin = end + 1;
        if (line.starts_with("#version")) continue;
        rules.push_back(line);
    }
    return rules;
}

// The token a rule makes: "low er" -> "lower".
std::string joined(std::string rule) {
    rule.erase(rule.find(' '), 1);
    return rule;
}

// `count` copies of `text`, appended to `corpus`.
void add(std::vector<std::string>& corpus, const std::string& text, int count) {
    for (int i = 0; i < count; ++i) corpus.push_back(text);
}

// The classic example of Sennrich et al. (2016), one word a document.
std::vector<std::string> classic_corpus() {
    std::vector<std::string> corpus;
    add(corpus, "low", 5);
    add(corpus, "lower", 2);
    add(corpus, "newest", 6);
    add(corpus, "widest", 3);
    return corpus;
}

// Bytes as a JSON string (escaped, invalid UTF-8 as U+FFFD), for messages.
std::string show(const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

// An independent, slow trainer for the same rules: recounts every pair before
// each merge; candidates in (left bytes, right bytes) order, the first of the
// highest count wins; a pair that would spell an existing token is passed over.
// `passed_over` counts the merges where that made a difference.
Rules reference_rules(const std::vector<std::string>& corpus, std::size_t vocab_size, std::size_t min_frequency,
                      int* passed_over = nullptr) {
    std::map<std::string, std::uint64_t> piece_counts;
    for (const auto& document : corpus) {
        const std::string text = simnpo::tokenizer::utf8::replace_invalid(document);  // as encode reads it
        for (const auto piece : simnpo::tokenizer::detail::gpt2_pieces(text)) ++piece_counts[std::string(piece)];
    }
    std::vector<std::pair<std::vector<std::string>, std::uint64_t>> words;
    for (const auto& [piece, count] : piece_counts) {
        std::vector<std::string> symbols;
        for (const char byte : piece) symbols.emplace_back(1, byte);
        words.emplace_back(std::move(symbols), count);
    }
    std::set<std::string> tokens{"<|endoftext|>"};
    for (unsigned byte = 0; byte < 256; ++byte) tokens.insert(std::string(1, static_cast<char>(byte)));
    Rules rules;
    while (tokens.size() < vocab_size) {
        std::map<std::pair<std::string, std::string>, std::uint64_t> pairs;
        for (const auto& [symbols, count] : words)
            for (std::size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += count;
        const std::pair<std::string, std::string>* best = nullptr;
        std::uint64_t best_count = 0;
        std::uint64_t top_count = 0;
        bool top_is_token = false;
        for (const auto& [pair, count] : pairs) {
            const bool is_token = tokens.contains(pair.first + pair.second);
            if (count > best_count && !is_token) best = &pair, best_count = count;
            if (count > top_count) top_count = count, top_is_token = is_token;
        }
        if (best == nullptr || best_count < std::max<std::size_t>(min_frequency, 1)) break;
        if (top_is_token && passed_over != nullptr) ++*passed_over;
        const auto [left, right] = *best;
        for (auto& [symbols, count] : words) {
            std::vector<std::string> merged;
            for (std::size_t i = 0; i < symbols.size();) {
                if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
                    merged.push_back(left + right);
                    i += 2;
                } else {
                    merged.push_back(symbols[i++]);
                }
            }
            symbols = std::move(merged);
        }
        tokens.insert(left + right);
        rules.push_back(spelled(left) + " " + spelled(right));
    }
    return rules;
}

// TOFU's questions and answers, one document each.
const std::vector<std::string>& tofu_documents() {
    static const std::vector<std::string> documents = [] {
        const std::string text = simnpo::read_file(fs::path(SIMNPO_SHARED_DATA_DIR) / "tofu" / "full.jsonl");
        std::vector<std::string> out;
        for (std::size_t begin = 0; begin < text.size();) {
            std::size_t end = text.find('\n', begin);
            if (end == std::string::npos) end = text.size();
            const std::string line = text.substr(begin, end - begin);
            begin = end + 1;
            if (line.empty()) continue;
            const auto record = nlohmann::json::parse(line);
            out.push_back(record.at("question").get<std::string>());
            out.push_back(record.at("answer").get<std::string>());
        }
        return out;
    }();
    return documents;
}

// Byte strings the corpora never saw: non-ASCII, malformed UTF-8, control bytes.
std::vector<std::string> odd_texts() {
    std::vector<std::string> texts{"caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 5 \xF0\x9F\x98\x80!",
                                   "\x80\xFF stray \xC3 bytes \xED\xA0\x80 \xF4\x90\x80\x80",
                                   std::string("nul\0byte\ttab\r\n", 15),
                                   "   leading and trailing   ",
                                   "it's they're we've I'M 'll"};
    std::string all_bytes;
    for (unsigned byte = 0; byte < 256; ++byte) all_bytes += static_cast<char>(byte);
    texts.push_back(all_bytes);
    simnpo::Rng rng(11);
    for (int round = 0; round < 100; ++round) {
        std::string text(rng.next_u64() % 40, '\0');
        for (auto& c : text) c = static_cast<char>(rng.next_u64() % 256);
        texts.push_back(std::move(text));
    }
    return texts;
}

}  // namespace

// Sennrich's corpus, low ×5, lower ×2, newest ×6, widest ×3, worked by hand.
// Ties go to the smallest left token, then the smallest right token (bytes).
//  1. es 9, st 9 (lo 7, ow 7, we 8, ne 6, ew 6, ...)  -> e s    (e < s)
//     newest = n e w es t, widest = w i d es t; st drops to 0, we to 2
//  2. (es,t) 9                                        -> es t
//  3. lo 7, ow 7                                      -> l o    (l < o)
//  4. (lo,w) 7                                        -> lo w   lower = low e r
//  5. ne 6, ew 6, (w,est) 6                           -> e w    (e < n < w)
//  6. (n,ew) 6, (ew,est) 6                            -> ew est (ew < n)
//  7. (n,ewest) 6                                     -> n ewest
//  8. (d,est) 3, id 3, wi 3                           -> d est  (d < i < w)
//  9. (i,dest) 3, wi 3                                -> i dest
// 10. (w,idest) 3                                     -> w idest
// 11. er 2, (low,e) 2                                 -> e r    (e < low)
// 12. (low,er) 2                                      -> low er
// Then every word is one token and no pair is left.
BOOST_AUTO_TEST_CASE(classic_example_by_hand) {
    const Rules expected{"e s",     "es t",  "l o",    "lo w",    "e w", "ew est",
                         "n ewest", "d est", "i dest", "w idest", "e r", "low er"};
    const auto training = train_bpe_with_pieces(classic_corpus(), {.vocab_size = 1000, .min_frequency = 2});
    const auto& tokenizer = training.tokenizer;
    BOOST_TEST(rules_of(tokenizer) == expected, boost::test_tools::per_element());
    BOOST_TEST(tokenizer.vocab_size() == 256u + 12u + 1u);
    BOOST_TEST(tokenizer.merge_count() == 12u);
    for (unsigned byte = 0; byte < 256; ++byte)
        BOOST_TEST(tokenizer.token(static_cast<std::int32_t>(byte)) == spelled(std::string(1, static_cast<char>(byte))));
    for (std::size_t i = 0; i < expected.size(); ++i)
        BOOST_TEST(tokenizer.token(static_cast<std::int32_t>(256 + i)) == joined(expected[i]));
    BOOST_TEST(tokenizer.eos_id().value() == 268);
    BOOST_TEST(tokenizer.token(268) == "<|endoftext|>");

    // The pieces, sorted by bytes, each one token at the end.
    BOOST_TEST_REQUIRE(training.pieces.size() == 4u);
    const std::vector<std::string> texts{"low", "lower", "newest", "widest"};
    const std::vector<std::uint64_t> counts{5, 2, 6, 3};
    const std::vector<Ids> ids{{259}, {267}, {262}, {265}};
    for (std::size_t i = 0; i < 4; ++i) {
        BOOST_TEST(training.pieces[i].text == texts[i]);
        BOOST_TEST(training.pieces[i].count == counts[i]);
        BOOST_TEST(training.pieces[i].ids == ids[i], boost::test_tools::per_element());
    }
    BOOST_TEST(tokenizer.encode("lowest newer") == (Ids{259, 257, ' ', 'n', 260, 266}),
               boost::test_tools::per_element());
    BOOST_TEST(rules_of(tokenizer) == reference_rules(classic_corpus(), 1000, 2), boost::test_tools::per_element());
}

// "aaa aaa" is the pieces "aaa" and " aaa" (Ġ a a a); (a,a) counts 2 in each.
//  1. (a,a) 4, (Ġ,a) 1   -> a a     left to right: aa a, Ġ aa a
//  2. (aa,a) 2, (Ġ,aa) 1 -> aa a
//  3. (Ġ,aaa) 1          -> Ġ aaa
BOOST_AUTO_TEST_CASE(overlapping_pairs_and_spaces_by_hand) {
    const auto tokenizer = train_bpe({"aaa aaa"}, {.vocab_size = 100'000, .min_frequency = 1});
    BOOST_TEST(rules_of(tokenizer) == (Rules{"a a", "aa a", "\xC4\xA0 aaa"}),
               boost::test_tools::per_element());
    BOOST_TEST(tokenizer.encode("aaa aaa") == (Ids{257, 258}), boost::test_tools::per_element());
    BOOST_TEST(tokenizer.encode("aaaaa") == (Ids{256, 257}), boost::test_tools::per_element());
    // With min_frequency 2 only the first two are learned.
    BOOST_TEST(rules_of(train_bpe({"aaa aaa"})) == (Rules{"a a", "aa a"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stops_at_min_frequency) {
    const auto corpus = classic_corpus();
    const auto all = rules_of(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 2}));
    // Merges 11 and 12 occur twice, 8..10 three times, 5..7 six times.
    BOOST_TEST(rules_of(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 3})) == Rules(all.begin(), all.begin() + 10),
               boost::test_tools::per_element());
    BOOST_TEST(rules_of(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 7})) == Rules(all.begin(), all.begin() + 4),
               boost::test_tools::per_element());
    BOOST_TEST(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 10}).merge_count() == 0u);
    // 0 and 1 both mean any pair that occurs.
    BOOST_TEST(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 0}).merge_count() == 12u);
    BOOST_TEST(train_bpe(corpus, {.vocab_size = 1000, .min_frequency = 1}).merge_count() == 12u);
}

BOOST_AUTO_TEST_CASE(stops_at_vocab_size_exactly) {
    const auto corpus = classic_corpus();
    const auto all = rules_of(train_bpe(corpus, {.vocab_size = 1000}));
    for (std::size_t vocab_size = 257; vocab_size <= 270; ++vocab_size) {
        BOOST_TEST_CONTEXT("vocab_size " << vocab_size) {
            const auto tokenizer = train_bpe(corpus, {.vocab_size = vocab_size});
            const std::size_t merges = std::min<std::size_t>(vocab_size - 257, 12);
            BOOST_TEST(tokenizer.vocab_size() == 257 + merges);
            BOOST_TEST(tokenizer.merge_count() == merges);
            BOOST_TEST(rules_of(tokenizer) == Rules(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(merges)),
                       boost::test_tools::per_element());
            BOOST_TEST(tokenizer.eos_id().value() == static_cast<std::int32_t>(tokenizer.vocab_size() - 1));
        }
    }
}

BOOST_AUTO_TEST_CASE(ties_are_broken_by_unsigned_bytes_whatever_the_order) {
    const BpeTrainOptions once{.vocab_size = 1000, .min_frequency = 1};
    // "é" (C3 A9) and "ab" each once: 'a' (61) sorts before C3 as an unsigned
    // byte (a signed char would put C3 first).
    for (const auto& corpus : {std::vector<std::string>{"\xC3\xA9", "ab"}, std::vector<std::string>{"ab", "\xC3\xA9"}}) {
        const auto tokenizer = train_bpe(corpus, once);
        BOOST_TEST(rules_of(tokenizer) == (Rules{"a b", "\xC3\x83 \xC2\xA9"}), boost::test_tools::per_element());
        BOOST_TEST(tokenizer.token(257) == "\xC3\x83\xC2\xA9");  // "Ã©"
    }
    // Same left token: the smaller right token first.
    BOOST_TEST(rules_of(train_bpe({"ac", "ab"}, once)) == (Rules{"a b", "a c"}), boost::test_tools::per_element());
    BOOST_TEST(rules_of(train_bpe({"ab", "ac"}, once)) == (Rules{"a b", "a c"}), boost::test_tools::per_element());

    // Any order of the documents gives the same tokenizer, byte for byte.
    auto corpus = classic_corpus();
    add(corpus, "slowest lowly wider", 2);
    const auto reference = rules_of(train_bpe(corpus, once));
    simnpo::Rng rng(5);
    for (int round = 0; round < 10; ++round) {
        for (std::size_t i = corpus.size(); i > 1; --i) std::swap(corpus[i - 1], corpus[rng.next_u64() % i]);
        BOOST_TEST(rules_of(train_bpe(corpus, once)) == reference, boost::test_tools::per_element());
    }
}

// Random corpora over a few letters, with many ties: the fast trainer agrees
// with the slow one, and encoding reproduces every piece's final segmentation.
// The most frequent pair never spells a token that exists already (see
// detail::learn_bpe for why), so the slow trainer never has to pass one over.
BOOST_AUTO_TEST_CASE(matches_a_slow_reference_on_random_corpora) {
    simnpo::Rng rng(3);
    int passed_over = 0;
    for (int round = 0; round < 200; ++round) {
        std::vector<std::string> corpus(1 + rng.next_u64() % 6);
        for (auto& document : corpus) {
            document.resize(rng.next_u64() % 24);
            for (auto& c : document) c = "abc  d\xC3"[rng.next_u64() % 7];
        }
        if (std::all_of(corpus.begin(), corpus.end(), [](const std::string& d) { return d.empty(); })) continue;
        const std::size_t min_frequency = 1 + rng.next_u64() % 2;
        const auto training = train_bpe_with_pieces(corpus, {.vocab_size = 100'000, .min_frequency = min_frequency});
        BOOST_TEST_CONTEXT("round " << round << " corpus " << nlohmann::json(corpus).dump(-1, ' ', true,
                                                                                        nlohmann::json::error_handler_t::replace)) {
            const auto expected = reference_rules(corpus, 100'000, min_frequency, &passed_over);
            BOOST_TEST(training.tokenizer.vocab_size() == 257 + expected.size());
            BOOST_TEST(rules_of(training.tokenizer) == expected, boost::test_tools::per_element());
            for (const auto& piece : training.pieces)
                BOOST_TEST(training.tokenizer.encode(piece.text) == piece.ids, boost::test_tools::per_element());
        }
    }
    BOOST_TEST(passed_over == 0);
}

// On all of TOFU (questions and answers, 8000 documents) at 2048 tokens.
BOOST_AUTO_TEST_CASE(tofu_encoding_reproduces_training) {
    const auto& documents = tofu_documents();
    BOOST_TEST_REQUIRE(documents.size() == 8000u);
    const auto start = std::chrono::steady_clock::now();
    const auto training = train_bpe_with_pieces(documents, {.vocab_size = 2048});
    BOOST_TEST_MESSAGE("trained TOFU to 2048 tokens in "
                       << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s");
    const auto& tokenizer = training.tokenizer;
    BOOST_TEST(tokenizer.vocab_size() == 2048u);
    BOOST_TEST(tokenizer.merge_count() == 2048u - 257u);
    BOOST_TEST(tokenizer.eos_id().value() == 2047);
    BOOST_TEST(tokenizer.token(2047) == "<|endoftext|>");

    // Every distinct piece: encode (merges by rank) gives what training ended with.
    std::map<std::string, const Ids*> segmentation;
    std::uint64_t occurrences = 0;
    std::uint64_t trained_tokens = 0;
    for (const auto& piece : training.pieces) {
        BOOST_TEST_CONTEXT("piece " << show(piece.text)) {
            BOOST_TEST(tokenizer.encode(piece.text) == piece.ids, boost::test_tools::per_element());
        }
        segmentation.emplace(piece.text, &piece.ids);
        occurrences += piece.count;
        trained_tokens += piece.count * piece.ids.size();
    }
    BOOST_TEST(std::is_sorted(training.pieces.begin(), training.pieces.end(),
                              [](const auto& a, const auto& b) { return a.text < b.text; }));
    // Every document: its encoding is its pieces' segmentations, and decodes back.
    std::uint64_t pieces_seen = 0;
    std::uint64_t tokens_seen = 0;
    for (const auto& document : documents) {
        Ids expected;
        for (const auto piece : simnpo::tokenizer::detail::gpt2_pieces(document)) {  // TOFU text: well-formed
            const Ids& ids = *segmentation.at(std::string(piece));
            expected.insert(expected.end(), ids.begin(), ids.end());
            ++pieces_seen;
        }
        const Ids ids = tokenizer.encode(document);
        BOOST_TEST(ids == expected, boost::test_tools::per_element());
        BOOST_TEST(tokenizer.decode(ids) == document);
        tokens_seen += ids.size();
    }
    BOOST_TEST(pieces_seen == occurrences);
    BOOST_TEST(tokens_seen == trained_tokens);

    // Facts of this corpus that do not depend on the machine, confirmed by an
    // independent Python trainer (the `regex` module's GPT-2 pattern, a full
    // recount per merge, the same tie rule on bytes objects).
    BOOST_TEST(training.pieces.size() == 8'892u);
    BOOST_TEST(occurrences == 174'416u);
    BOOST_TEST(trained_tokens == 270'647u);
    const Rules rules = rules_of(tokenizer);
    BOOST_TEST(Rules(rules.begin(), rules.begin() + 8) ==
                   (Rules{"i n", "\xC4\xA0 a", "h e", "\xC4\xA0 t", "r e", "e n", "o n", "e r"}),
               boost::test_tools::per_element());
    BOOST_TEST(Rules(rules.end() - 3, rules.end()) ==
                   (Rules{"\xC4\xA0" "Fren ch", "\xC4\xA0G rim", "\xC4\xA0Green field"}),
               boost::test_tools::per_element());

    // Independent check of the first merges against the slow trainer.
    const std::vector<std::string> head(documents.begin(), documents.begin() + 400);
    BOOST_TEST(rules_of(train_bpe(head, {.vocab_size = 600})) == reference_rules(head, 600, 2),
               boost::test_tools::per_element());
}

// Any bytes round-trip, ill-formed UTF-8 read as U+FFFD (as encode reads it).
BOOST_AUTO_TEST_CASE(round_trips_any_bytes_and_saves_and_loads) {
    const auto tokenizer = train_bpe(tofu_documents(), {.vocab_size = 1024});
    auto texts = odd_texts();
    texts.insert(texts.end(), tofu_documents().begin(), tofu_documents().begin() + 200);
    TempDir dir;
    tokenizer.save(dir.path);
    const auto loaded = Tokenizer::load(dir.path);
    BOOST_TEST(loaded.vocab_size() == 1024u);
    BOOST_TEST(loaded.merge_count() == tokenizer.merge_count());
    BOOST_TEST(loaded.eos_id().value() == 1023);
    for (const auto& text : texts) {
        BOOST_TEST_CONTEXT("text " << show(text)) {
            const Ids ids = tokenizer.encode(text);
            BOOST_TEST(tokenizer.decode(ids) == simnpo::tokenizer::utf8::replace_invalid(text));
            BOOST_TEST(loaded.encode(text) == ids, boost::test_tools::per_element());
        }
    }
    // Saving the loaded copy writes the same files.
    TempDir again;
    loaded.save(again.path);
    BOOST_TEST(simnpo::read_file(again.path / "vocab.json") == simnpo::read_file(dir.path / "vocab.json"));
    BOOST_TEST(simnpo::read_file(again.path / "merges.txt") == simnpo::read_file(dir.path / "merges.txt"));
}

BOOST_AUTO_TEST_CASE(trains_on_malformed_utf8_consistently) {
    std::vector<std::string> corpus = odd_texts();
    add(corpus, "caf\xC3\xA9 caf\xC3\xA9\xFF \xFF\xFE\xFF\xFE", 3);
    const auto training = train_bpe_with_pieces(corpus, {.vocab_size = 400});
    for (const auto& piece : training.pieces)
        BOOST_TEST_CONTEXT("piece " << show(piece.text)) {
            BOOST_TEST(training.tokenizer.encode(piece.text) == piece.ids, boost::test_tools::per_element());
        }
    for (const auto& text : corpus)
        BOOST_TEST(training.tokenizer.decode(training.tokenizer.encode(text)) == simnpo::tokenizer::utf8::replace_invalid(text));
}

BOOST_AUTO_TEST_CASE(accepts_ranges_of_strings_and_views) {
    const std::vector<std::string_view> views{"low", "low", "lower"};
    const std::vector<std::string> strings(views.begin(), views.end());
    const auto expected = rules_of(train_bpe(strings));
    BOOST_TEST(rules_of(train_bpe(views)) == expected, boost::test_tools::per_element());
    BOOST_TEST(rules_of(train_bpe(std::span<const std::string_view>(views))) == expected, boost::test_tools::per_element());
    BOOST_TEST(rules_of(train_bpe(strings | std::views::transform([](const std::string& s) { return s; }))) == expected,
               boost::test_tools::per_element());
    BOOST_TEST(rules_of(train_bpe({"low", "low", "lower"})) == expected, boost::test_tools::per_element());
    BOOST_TEST(expected == (Rules{"l o", "lo w"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_options_and_empty_corpora_are_one_line_errors) {
    const auto corpus = classic_corpus();
    BOOST_CHECK_EXCEPTION(train_bpe(corpus, {.vocab_size = 256}), simnpo::Error, message_has({"vocab_size 256", "257"}));
    BOOST_CHECK_EXCEPTION(train_bpe(corpus, {.vocab_size = 0}), simnpo::Error, message_has({"vocab_size 0", "257"}));
    BOOST_CHECK_EXCEPTION(train_bpe(std::vector<std::string>{}), simnpo::Error, message_has({"corpus is empty"}));
    BOOST_CHECK_EXCEPTION(train_bpe({"", ""}), simnpo::Error, message_has({"corpus is empty", "2 documents"}));
    // The smallest vocabulary: bytes and <|endoftext|>.
    const auto tokenizer = train_bpe(corpus, {.vocab_size = 257});
    BOOST_TEST(tokenizer.vocab_size() == 257u);
    BOOST_TEST(tokenizer.eos_id().value() == 256);
}

BOOST_AUTO_TEST_SUITE_END()  // test_bpe_train
