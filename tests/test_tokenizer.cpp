#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_tokenizer)

namespace {

using simnpo::tokenizer::Tokenizer;
using Ids = std::vector<std::int32_t>;
namespace fs = std::filesystem;

const fs::path gpt2_dir = fs::path(SIMNPO_SHARED_DATA_DIR) / "gpt2-tokenizer";

const Tokenizer& gpt2() {
    static const Tokenizer tokenizer = Tokenizer::load(gpt2_dir);
    return tokenizer;
}

// Hugging Face's ids for GPT-2 (npm tokenizers, tests/reference/make_hf_tokenizer_fixture.js):
// the text cases of tests/fixtures/hf_tokenizers/gpt-2.jsonl.
std::vector<nlohmann::json> reference_cases() {
    std::vector<nlohmann::json> cases;
    const std::string text = simnpo::read_file(fs::path(SIMNPO_FIXTURES_DIR) / "hf_tokenizers" / "gpt-2.jsonl");
    for (std::size_t begin = 0; begin < text.size();) {
        const std::size_t end = std::min(text.find('\n', begin), text.size());
        const auto record = nlohmann::json::parse(text.substr(begin, end - begin));
        if (record.contains("text")) cases.push_back(record);
        begin = end + 1;
    }
    return cases;
}

using simnpo::testing::message_has;

using simnpo::testing::TempDir;

// The byte-level spelling of one byte ("Ġ" for the space).
std::string spelled(unsigned char byte) {
    std::string out;
    simnpo::tokenizer::utf8::append(out, simnpo::tokenizer::utf8::byte_code_points()[byte]);
    return out;
}

// A small vocabulary as JSON: the 256 bytes, then "ab" and "abc", then `extra`.
std::string small_vocab(const std::string& extra = "") {
    nlohmann::json vocab = nlohmann::json::object();
    for (unsigned byte = 0; byte < 256; ++byte) vocab[spelled(static_cast<unsigned char>(byte))] = byte;
    vocab["ab"] = 256;
    vocab["abc"] = 257;
    std::string text = vocab.dump();
    if (!extra.empty()) text.insert(text.size() - 1, ", " + extra);
    return text;
}

// Bytes as a JSON string (escaped, invalid UTF-8 as U+FFFD), for messages.
std::string show(const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_vocabulary_loads) {
    const auto& tokenizer = gpt2();
    BOOST_TEST(tokenizer.vocab_size() == 50257u);
    BOOST_TEST(tokenizer.merge_count() == 50000u);
    BOOST_TEST(tokenizer.eos_id().value() == 50256);
    BOOST_TEST(tokenizer.token_id("<|endoftext|>").value() == 50256);
    BOOST_TEST(tokenizer.token_id("\xC4\xA0the").value() == 262);  // "Ġthe"
    BOOST_TEST(tokenizer.token_id("!").value() == 0);
    BOOST_TEST(!tokenizer.token_id("no such token").has_value());
    BOOST_TEST(tokenizer.token(262) == "\xC4\xA0the");
    // As in Hugging Face's GPT-2 tokenizer, <|endoftext|> is a special token matched in text.
    BOOST_TEST(tokenizer.encode("a<|endoftext|>b") == (Ids{64, 50256, 65}), boost::test_tools::per_element());
    BOOST_TEST(tokenizer.decode(Ids{50256}) == "<|endoftext|>");
    BOOST_TEST(tokenizer.decode(Ids{64, 50256}, true) == "a");
    BOOST_TEST(tokenizer.special_prefix().empty());  // GPT-2 adds no BOS
}

// GPT-2's own files (encoder.json + vocab.bpe) read as the byte-level
// tokenizer.json they amount to: Hugging Face's ids on every case.
BOOST_AUTO_TEST_CASE(gpt2_files_give_hugging_faces_ids_and_round_trip) {
    const auto& tokenizer = gpt2();
    const auto cases = reference_cases();
    BOOST_TEST_REQUIRE(cases.size() >= 400u);
    for (const auto& record : cases) {
        const std::string text = record.at("text").get<std::string>();
        const Ids expected = record.at("ids").get<Ids>();
        BOOST_TEST_CONTEXT("text " << show(text)) {
            const Ids ids = tokenizer.encode(text);
            BOOST_TEST(ids == expected, boost::test_tools::per_element());
            BOOST_TEST(tokenizer.decode(ids) == text);
        }
    }
}

BOOST_AUTO_TEST_CASE(pretokenizes_as_the_gpt2_pattern) {
    using simnpo::tokenizer::detail::gpt2_pieces;
    const auto pieces = [](std::string_view text) {
        std::vector<std::string> out;
        for (const auto piece : gpt2_pieces(text)) out.emplace_back(piece);
        return out;
    };
    using Pieces = std::vector<std::string>;
    BOOST_TEST(pieces("a  b") == (Pieces{"a", " ", " b"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("a\n b") == (Pieces{"a", "\n", " b"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("x  ") == (Pieces{"x", "  "}), boost::test_tools::per_element());
    BOOST_TEST(pieces("I'm ok") == (Pieces{"I", "'m", " ok"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("I'M") == (Pieces{"I", "'", "M"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("a1 22!?") == (Pieces{"a", "1", " 22", "!?"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("caf\xC3\xA9 \xD9\xA3") == (Pieces{"caf\xC3\xA9", " \xD9\xA3"}),
               boost::test_tools::per_element());
    // \s is Unicode's White_Space: U+0085 is a space, U+180E and U+FEFF are not.
    BOOST_TEST(pieces("a\xC2\x85\xC2\x85" "b") == (Pieces{"a", "\xC2\x85", "\xC2\x85", "b"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("a \xE1\xA0\x8E") == (Pieces{"a", " \xE1\xA0\x8E"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("a \xEF\xBB\xBF") == (Pieces{"a", " \xEF\xBB\xBF"}), boost::test_tools::per_element());
    BOOST_TEST(pieces("").empty());
}

// Ill-formed UTF-8 is read as a decoder of bytes into text reads it: each
// maximal ill-formed subpart becomes one U+FFFD (tests/fixtures/hf_tokenizers
// holds Hugging Face's ids for such input too).
BOOST_AUTO_TEST_CASE(every_byte_encodes_and_ill_formed_utf8_is_read_as_replacement_characters) {
    const auto& tokenizer = gpt2();
    const Ids replacement = tokenizer.encode("\xEF\xBF\xBD");
    for (unsigned byte = 0; byte < 256; ++byte) {
        const std::string text(1, static_cast<char>(byte));
        const Ids ids = tokenizer.encode(text);
        if (byte < 0x80) {
            BOOST_TEST(ids.size() == 1u);
            BOOST_TEST(tokenizer.decode(ids) == text);
        } else {
            BOOST_TEST(ids == replacement, boost::test_tools::per_element());
        }
    }
    using simnpo::tokenizer::utf8::replace_invalid;
    BOOST_TEST(replace_invalid("\xE2\x82x") == "\xEF\xBF\xBDx");                    // a truncated sequence: one
    BOOST_TEST(replace_invalid("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");          // never a lead byte: one each
    BOOST_TEST(replace_invalid("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
    BOOST_TEST(replace_invalid(" \xF0\x9F\x98") == " \xEF\xBF\xBD");
    BOOST_TEST(replace_invalid("caf\xC3\xA9") == "caf\xC3\xA9");
    simnpo::Rng rng(7);
    for (int round = 0; round < 300; ++round) {
        std::string text(rng.next_u64() % 48, '\0');
        for (auto& c : text) c = static_cast<char>(rng.next_u64() % 256);
        BOOST_TEST_CONTEXT("text " << show(text)) {
            BOOST_TEST(tokenizer.decode(tokenizer.encode(text)) == replace_invalid(text));
        }
    }
}

BOOST_AUTO_TEST_CASE(saves_and_loads_hugging_face_names) {
    TempDir dir;
    gpt2().save(dir.path);
    BOOST_TEST(fs::exists(dir.path / "vocab.json"));
    // The merges file is the same text as GPT-2's vocab.bpe.
    BOOST_TEST(simnpo::read_file(dir.path / "merges.txt") == simnpo::read_file(gpt2_dir / "vocab.bpe"));
    const auto loaded = Tokenizer::load(dir.path);
    BOOST_TEST(loaded.vocab_size() == gpt2().vocab_size());
    BOOST_TEST(loaded.merge_count() == gpt2().merge_count());
    for (const auto& record : reference_cases()) {
        const std::string text = record.at("text").get<std::string>();
        BOOST_TEST(loaded.encode(text) == record.at("ids").get<Ids>(), boost::test_tools::per_element());
    }
}

BOOST_AUTO_TEST_CASE(small_vocabulary_from_parts_and_files) {
    TempDir dir;
    dir.write("vocab.json", small_vocab());
    dir.write("merges.txt", "#version: 0.2\na b\r\nab c\n\n");
    const auto tokenizer = Tokenizer::load(dir.path);
    BOOST_TEST(tokenizer.vocab_size() == 258u);
    BOOST_TEST(tokenizer.encode("abcab abc") == (Ids{257, 256, 32, 257}), boost::test_tools::per_element());
    BOOST_TEST(!tokenizer.eos_id().has_value());
    BOOST_CHECK_EXCEPTION(tokenizer.required_eos_id(), simnpo::Error, message_has({"vocab.json", "no EOS token"}));
    // Ids may have gaps, as in Hugging Face's vocabularies; no token has a gap's id.
    dir.write("vocab.json", small_vocab("\"zz\": 300"));
    const auto gappy = Tokenizer::load(dir.path);
    BOOST_TEST(gappy.vocab_size() == 301u);
    BOOST_TEST(gappy.decode(Ids{300}) == "zz");
    BOOST_CHECK_EXCEPTION(gappy.decode(Ids{299}), simnpo::Error, message_has({"vocab.json", "299", "no token has it"}));

    std::vector<std::string> tokens;
    for (unsigned byte = 0; byte < 256; ++byte) tokens.push_back(spelled(static_cast<unsigned char>(byte)));
    tokens.push_back("ab");
    const auto parts = Tokenizer::from_parts(tokens, {{"a", "b"}});
    BOOST_TEST(parts.encode("abab") == (Ids{256, 256}), boost::test_tools::per_element());
    tokens.push_back("ab");
    BOOST_CHECK_EXCEPTION(Tokenizer::from_parts(tokens, {}), simnpo::Error, message_has({"\"ab\"", "twice"}));
}

BOOST_AUTO_TEST_CASE(bad_files_are_one_line_errors_naming_the_file) {
    TempDir dir;
    const std::string vocab = (dir.path / "vocab.json").string();
    const std::string merges = (dir.path / "merges.txt").string();

    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path / "missing"), simnpo::Error,
                          message_has({"missing", "vocab.json + merges.txt"}));
    dir.write("vocab.json", small_vocab());
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({merges, "missing"}));

    dir.write("merges.txt", "#version: 0.2\na b\n");
    dir.write("vocab.json", "{\"a\": 0,");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "not valid JSON"}));
    dir.write("vocab.json", "[1, 2]");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "JSON object"}));
    dir.write("vocab.json", small_vocab("\"zz\": -3"));
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "-3", "outside"}));
    dir.write("vocab.json", small_vocab("\"zz\": 5"));
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "id 5"}));
    dir.write("vocab.json", small_vocab("\"zz\": \"258\""));
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "not an integer"}));
    dir.write("vocab.json", small_vocab("\"\xE2\x82\xAC\": 258"));  // "€" stands for no byte
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "byte-level"}));
    dir.write("vocab.json", R"({"a": 0, "b": 1})");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({vocab, "lacks", "byte 0"}));

    dir.write("vocab.json", small_vocab());
    for (const auto& [text, line] : std::vector<std::pair<std::string, std::string>>{
             {"#version: 0.2\na b\nabc\n", ":3:"},
             {"a b\nab c d\n", ":2:"},
             {"#version: 0.2\n\na b\n", ":2:"},
             {"a b\n ab\n", ":2:"},
             {"a  b\n", ":1:"},
             {"a b\nab \n", ":2:"}}) {
        dir.write("merges.txt", text);
        BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                              message_has({merges + line, "merge rule"}));
    }
    dir.write("merges.txt", "a b\nb c\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({merges + ":2:", "\"bc\"", "not in the vocabulary"}));
    dir.write("merges.txt", "a b\nab x\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({merges + ":2:", "\"abx\""}));
    dir.write("merges.txt", "a b\n\xFF b\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({merges + ":2:", "not in the vocabulary"}));
    dir.write("merges.txt", "a b\na b\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({merges + ":2:", "twice"}));

    const auto& tokenizer = gpt2();
    BOOST_CHECK_EXCEPTION(tokenizer.decode(Ids{1, 50257}), simnpo::Error,
                          message_has({"encoder.json", "50257", "position 1"}));
    BOOST_CHECK_EXCEPTION(tokenizer.decode(Ids{-1}), simnpo::Error, message_has({"encoder.json", "-1"}));
    BOOST_CHECK_EXCEPTION(tokenizer.token(-3), simnpo::Error, message_has({"encoder.json", "-3"}));
}

// Issue 16: a vocabulary lacking a byte token was reported as an
// <|endoftext|> id problem (its id was then past the end).
BOOST_AUTO_TEST_CASE(a_missing_byte_token_is_named_as_such) {
    TempDir dir;
    nlohmann::json vocab = nlohmann::json::object();
    for (unsigned byte = 1; byte < 256; ++byte) vocab[spelled(static_cast<unsigned char>(byte))] = byte - 1;
    vocab["<|endoftext|>"] = 256;
    dir.write("vocab.json", vocab.dump());
    dir.write("merges.txt", "#version: 0.2\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({(dir.path / "vocab.json").string() + ": the vocabulary lacks the token " +
                                       "\"" + spelled(0) + "\" for byte 0"}));
}

// Issue 16: a token given twice in vocab.json was accepted silently (the last id won).
BOOST_AUTO_TEST_CASE(a_token_given_twice_in_the_vocabulary_is_an_error) {
    TempDir dir;
    dir.write("vocab.json", small_vocab("\"ab\": 256"));
    dir.write("merges.txt", "a b\n");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({(dir.path / "vocab.json").string() + ": duplicate key \"ab\""}));
}

// Issue 16: --data /dev/zero read without bound; merges.txt is read a line at a time, 16 MiB at most.
BOOST_AUTO_TEST_CASE(a_merges_file_without_newlines_is_refused_at_the_line_limit) {
    TempDir dir;
    dir.write("vocab.json", small_vocab());
    fs::create_symlink("/dev/zero", dir.path / "merges.txt");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({(dir.path / "merges.txt").string() + ":1: line longer than 16777216 bytes"}));
}

BOOST_AUTO_TEST_SUITE_END()  // test_tokenizer
