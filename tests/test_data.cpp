#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "support/error_message.hpp"

BOOST_AUTO_TEST_SUITE(test_data)

namespace {

using simnpo::data::Example;
using simnpo::data::parse_examples;
using Ids = std::vector<std::int32_t>;

simnpo::model::Config small_config() {
    return {.vocab_size = 50, .n_positions = 16, .n_embd = 8, .n_layer = 1, .n_head = 2};
}

std::vector<Example> parse(std::string_view text) { return parse_examples(text, small_config(), "data.jsonl"); }

using simnpo::testing::message_has;

// The text, split into JSON Lines with one bad line at line `bad_line` (1-based)
// among good ones, so that the tests see the line number counted.
std::string with_bad_line(int bad_line, const std::string& bad) {
    std::string text;
    for (int line = 1; line <= 4; ++line)
        text += (line == bad_line ? bad : std::string(R"({"prompt_ids": [1], "answer_ids": [2]})")) + "\n";
    return text;
}

// A file in a fresh temporary directory, removed with it.
struct TempFile {
    std::filesystem::path directory =
        std::filesystem::temp_directory_path() / ("simnpo_test_data_" + std::to_string(::getpid()));
    std::filesystem::path path = directory / "examples.jsonl";

    explicit TempFile(std::string_view content) {
        std::filesystem::create_directories(directory);
        std::ofstream(path, std::ios::binary) << content;
    }
    ~TempFile() {
        std::error_code ec;
        std::filesystem::remove_all(directory, ec);
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(reads_jsonl_in_order_with_exact_ids) {
    const auto examples = parse(
        R"({"prompt_ids": [1, 2, 3], "answer_ids": [4, 5]})"
        "\n"
        R"({"answer_ids": [0], "prompt_ids": [49], "id": "x", "question": "ignored when ids are given"})"
        "\n"
        R"({"prompt_ids": [7, 7, 7, 7, 7, 7, 7, 7], "answer_ids": [8, 9, 10, 11, 12, 13, 14, 15]})"
        "\n");
    BOOST_TEST_REQUIRE(examples.size() == 3u);
    BOOST_TEST(examples[0].prompt_ids == (Ids{1, 2, 3}), boost::test_tools::per_element());
    BOOST_TEST(examples[0].answer_ids == (Ids{4, 5}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].prompt_ids == (Ids{49}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].answer_ids == (Ids{0}), boost::test_tools::per_element());
    // 8 + 8 tokens is exactly n_positions = 16, the longest allowed.
    BOOST_TEST(examples[2].prompt_ids == (Ids{7, 7, 7, 7, 7, 7, 7, 7}), boost::test_tools::per_element());
    BOOST_TEST(examples[2].answer_ids == (Ids{8, 9, 10, 11, 12, 13, 14, 15}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(reads_a_json_array) {
    const auto examples = parse(
        "  \n[\n"
        R"(  {"prompt_ids": [10, 11], "answer_ids": [12]},)"
        "\n"
        R"(  {"prompt_ids": [13], "answer_ids": [14, 15, 16]})"
        "\n]\n");
    BOOST_TEST_REQUIRE(examples.size() == 2u);
    BOOST_TEST(examples[0].prompt_ids == (Ids{10, 11}), boost::test_tools::per_element());
    BOOST_TEST(examples[0].answer_ids == (Ids{12}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].prompt_ids == (Ids{13}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].answer_ids == (Ids{14, 15, 16}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(skips_blank_lines_and_reads_crlf_and_a_last_line_without_newline) {
    const std::string text =
        "\r\n"
        R"({"prompt_ids": [1], "answer_ids": [2]})"
        "\r\n"
        " \t \r\n"
        "\n"
        R"({"prompt_ids": [3, 4], "answer_ids": [5]})";
    const auto examples = parse(text);
    BOOST_TEST_REQUIRE(examples.size() == 2u);
    BOOST_TEST(examples[0].prompt_ids == (Ids{1}), boost::test_tools::per_element());
    BOOST_TEST(examples[0].answer_ids == (Ids{2}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].prompt_ids == (Ids{3, 4}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].answer_ids == (Ids{5}), boost::test_tools::per_element());

    // Blank lines count: the bad last line is physical line 6.
    BOOST_CHECK_EXCEPTION(parse(text + "\r\n" + R"({"prompt_ids": [1], "answer_ids": [50]})"), simnpo::Error,
                          message_has({"data.jsonl:6: token id 50 in 'answer_ids'"}));
}

BOOST_AUTO_TEST_CASE(reads_a_file_and_names_it_in_errors) {
    const TempFile good("{\"prompt_ids\": [1, 2], \"answer_ids\": [3]}\n");
    const auto examples = simnpo::data::read_jsonl(good.path, small_config());
    BOOST_TEST_REQUIRE(examples.size() == 1u);
    BOOST_TEST(examples[0].prompt_ids == (Ids{1, 2}), boost::test_tools::per_element());
    BOOST_TEST(examples[0].answer_ids == (Ids{3}), boost::test_tools::per_element());

    const TempFile bad("\n{\"prompt_ids\": [1, 2], \"answer_ids\": [99]}\n");
    BOOST_CHECK_EXCEPTION(simnpo::data::read_jsonl(bad.path, small_config()), simnpo::Error,
                          message_has({bad.path.string() + ":2: token id 99 in 'answer_ids' is outside the "
                                                           "vocabulary [0, 50)"}));

    const TempFile empty("");
    BOOST_CHECK_EXCEPTION(simnpo::data::read_jsonl(empty.path, small_config()), simnpo::Error,
                          message_has({empty.path.string() + ": no examples"}));

    BOOST_CHECK_EXCEPTION(simnpo::data::read_jsonl(empty.directory / "missing.jsonl", small_config()),
                          simnpo::Error, message_has({"missing.jsonl: cannot open"}));
}

BOOST_AUTO_TEST_CASE(broken_json_names_line_and_column) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [1, 2], "answer_ids": [3,}})")),
                          simnpo::Error, message_has({"data.jsonl:3:41: invalid JSON: syntax error"}));
    // An unclosed object ends at the end of its line, not of the file.
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [1])")), simnpo::Error,
                          message_has({"data.jsonl:2:", "invalid JSON", "unexpected end of input"}));
    // Two objects on one line.
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"({"prompt_ids": [1], "answer_ids": [2]} {})")),
                          simnpo::Error, message_has({"data.jsonl:4:", "invalid JSON", "expected end of input"}));
    // A number too large for a double, which nlohmann reports without a position.
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [1e999], "answer_ids": [2]})")),
                          simnpo::Error, message_has({"data.jsonl:2:", "number overflow parsing '1e999'"}));
    // A raw newline inside a string ends the line in JSON Lines.
    BOOST_CHECK_EXCEPTION(parse("{\"prompt_ids\": [1], \"answer_ids\": [2], \"note\": \"a\nb\"}\n"), simnpo::Error,
                          message_has({"data.jsonl:1:", "invalid JSON"}));
    // A long bad token is cut short.
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(1, "{\"note\": \"" + std::string(5000, 'x'))), simnpo::Error,
                          [](const simnpo::Error& error) {
                              const std::string message = error.what();
                              return message.starts_with("data.jsonl:1:") && message.size() < 400 &&
                                     message.ends_with("...");
                          });
}

BOOST_AUTO_TEST_CASE(a_line_that_is_not_an_object_is_an_error) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, "[1, 2]")), simnpo::Error,
                          message_has({"data.jsonl:2: expected a JSON object with 'prompt_ids' and 'answer_ids' or "
                                       "'question' and 'answer', got an array"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, "42")), simnpo::Error,
                          message_has({"data.jsonl:3: expected a JSON object", "got 42"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"("text")")), simnpo::Error,
                          message_has({"data.jsonl:4: expected a JSON object", "got a string"}));
}

BOOST_AUTO_TEST_CASE(missing_keys_are_errors) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:2: missing key 'prompt_ids'"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:3: missing key 'answer_ids'"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(1, "{}")), simnpo::Error,
                          message_has({"data.jsonl:1: missing key 'prompt_ids'"}));
}

BOOST_AUTO_TEST_CASE(text_examples_need_a_tokenizer) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"({"question": "Who?", "answer": "Me."})")), simnpo::Error,
                          message_has({"data.jsonl:4: text examples ('question'/'answer') need a tokenizer; "
                                       "use 'prompt_ids'/'answer_ids'"}));
}

BOOST_AUTO_TEST_CASE(ids_that_are_not_an_array_of_integers_are_errors) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": 5, "answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:2: 'prompt_ids' must be an array of token ids, got 5"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [1], "answer_ids": "2"})")), simnpo::Error,
                          message_has({"data.jsonl:3: 'answer_ids' must be an array of token ids, got a string"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(1, R"({"prompt_ids": [1, 2.5], "answer_ids": [2]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:1: 'prompt_ids'[1] must be an integer token id, got 2.5"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [1], "answer_ids": [3, "4"]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:2: 'answer_ids'[1] must be an integer token id, got a string"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [null], "answer_ids": [3]})")), simnpo::Error,
                          message_has({"data.jsonl:3: 'prompt_ids'[0] must be an integer token id, got null"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"({"prompt_ids": [true], "answer_ids": [3]})")), simnpo::Error,
                          message_has({"data.jsonl:4: 'prompt_ids'[0] must be an integer token id, got a boolean"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(1, R"({"prompt_ids": [[1]], "answer_ids": [3]})")), simnpo::Error,
                          message_has({"data.jsonl:1: 'prompt_ids'[0] must be an integer token id, got an array"}));
}

BOOST_AUTO_TEST_CASE(ids_that_do_not_fit_int32_are_errors) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [1], "answer_ids": [2147483648]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:2: 'answer_ids'[0] = 2147483648 does not fit a 32-bit token id"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [-2147483649], "answer_ids": [2]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:3: 'prompt_ids'[0] = -2147483649 does not fit a 32-bit token id"}));
    BOOST_CHECK_EXCEPTION(
        parse(with_bad_line(1, R"({"prompt_ids": [18446744073709551615], "answer_ids": [2]})")), simnpo::Error,
        message_has({"data.jsonl:1: 'prompt_ids'[0] = 18446744073709551615 does not fit a 32-bit token id"}));
    // The int32 extremes fit, and then fail the vocabulary check instead.
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"({"prompt_ids": [1], "answer_ids": [2147483647]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:4: token id 2147483647 in 'answer_ids' is outside the vocabulary"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(4, R"({"prompt_ids": [-2147483648], "answer_ids": [2]})")),
                          simnpo::Error,
                          message_has({"data.jsonl:4: token id -2147483648 in 'prompt_ids' is outside the "
                                       "vocabulary"}));
}

BOOST_AUTO_TEST_CASE(empty_prompt_or_answer_is_an_error) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [], "answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:2: empty prompt"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [1], "answer_ids": []})")), simnpo::Error,
                          message_has({"data.jsonl:3: empty answer"}));
}

BOOST_AUTO_TEST_CASE(ids_outside_the_vocabulary_are_errors) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [1], "answer_ids": [2, 99]})")), simnpo::Error,
                          message_has({"data.jsonl:3: token id 99 in 'answer_ids' is outside the vocabulary [0, 50)"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(1, R"({"prompt_ids": [50], "answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:1: token id 50 in 'prompt_ids' is outside the vocabulary [0, 50)"}));
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(2, R"({"prompt_ids": [-1], "answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:2: token id -1 in 'prompt_ids' is outside the vocabulary [0, 50)"}));
}

BOOST_AUTO_TEST_CASE(a_sequence_longer_than_n_positions_is_an_error) {
    BOOST_CHECK_EXCEPTION(
        parse(with_bad_line(
            2, R"({"prompt_ids": [1, 1, 1, 1, 1, 1, 1, 1, 1], "answer_ids": [2, 2, 2, 2, 2, 2, 2, 2]})")),
        simnpo::Error, message_has({"data.jsonl:2: sequence of 17 tokens is longer than n_positions = 16"}));
}

BOOST_AUTO_TEST_CASE(no_examples_is_an_error) {
    for (const std::string_view text : {"", "\n", " \r\n\t\n\n", "[]", " [ \n ] \n", "\xEF\xBB\xBF"})
        BOOST_CHECK_EXCEPTION(parse(text), simnpo::Error, message_has({"data.jsonl: no examples"}));
}

BOOST_AUTO_TEST_CASE(a_byte_order_mark_is_skipped) {
    const auto examples = parse("\xEF\xBB\xBF[{\"prompt_ids\": [1], \"answer_ids\": [2]}]");
    BOOST_TEST_REQUIRE(examples.size() == 1u);
    BOOST_TEST(examples[0].answer_ids == (Ids{2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(array_errors_name_the_element) {
    const auto array = [](const std::string& second) {
        return "[\n  {\"prompt_ids\": [1], \"answer_ids\": [2]},\n\n  " + second +
               ",\n  {\"prompt_ids\": [1], \"answer_ids\": [2]}\n]";
    };
    BOOST_CHECK_EXCEPTION(parse(array(R"({"prompt_ids": [1], "answer_ids": [99]})")), simnpo::Error,
                          message_has({"data.jsonl: element 2: token id 99 in 'answer_ids' is outside the "
                                       "vocabulary [0, 50)"}));
    BOOST_CHECK_EXCEPTION(parse(array("7")), simnpo::Error,
                          message_has({"data.jsonl: element 2: expected a JSON object", "got 7"}));
    BOOST_CHECK_EXCEPTION(parse(array(R"({"question": "q", "answer": "a"})")), simnpo::Error,
                          message_has({"data.jsonl: element 2: text examples ('question'/'answer') need a tokenizer"}));
    BOOST_CHECK_EXCEPTION(parse(array(R"({"prompt_ids": [1], "answer_ids": []})")), simnpo::Error,
                          message_has({"data.jsonl: element 2: empty answer"}));
    // Broken JSON has no element; it is placed by its physical line and column.
    BOOST_CHECK_EXCEPTION(parse(array(R"({"prompt_ids": [1], "answer_ids": [2],})")), simnpo::Error,
                          message_has({"data.jsonl:4:41: invalid JSON: syntax error"}));
    BOOST_CHECK_EXCEPTION(parse(array(R"({"prompt_ids": [1e999], "answer_ids": [2]})")), simnpo::Error,
                          message_has({"data.jsonl:4:", "number overflow"}));
    BOOST_CHECK_EXCEPTION(parse("[\n{\"prompt_ids\": [1], \"answer_ids\": [2]}\n"), simnpo::Error,
                          message_has({"data.jsonl:2:", "unexpected end of input"}));
    BOOST_CHECK_EXCEPTION(parse("[{\"prompt_ids\": [1], \"answer_ids\": [2]}]\n{}\n"), simnpo::Error,
                          message_has({"data.jsonl:2:1: invalid JSON", "expected end of input"}));
}

// Rows worked out by hand from make_batch's contract: row b reads
// prompt ++ answer minus its last token, and position t is scored (target =
// token t + 1) from the last prompt token on; padding holds token 0, target -1.
BOOST_AUTO_TEST_CASE(make_batch_pads_and_scores_answer_tokens_only) {
    const auto examples = parse(
        R"({"prompt_ids": [1, 2], "answer_ids": [3, 4, 5]})"
        "\n"
        R"({"prompt_ids": [7, 6, 9], "answer_ids": [8]})"
        "\n");
    const simnpo::data::Batch batch = simnpo::data::make_batch(examples);
    BOOST_TEST_REQUIRE(batch.rows() == 2);
    BOOST_TEST_REQUIRE(batch.columns() == 4);
    const std::vector<std::vector<std::int32_t>> tokens = {{1, 2, 3, 4}, {7, 6, 9, 0}};
    const std::vector<std::vector<std::int32_t>> targets = {{-1, 3, 4, 5}, {-1, -1, 8, -1}};
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t t = 0; t < 4; ++t) {
            BOOST_TEST(batch.tokens(b, t) == tokens[b][t], "tokens(" << b << ", " << t << ")");
            BOOST_TEST(batch.targets(b, t) == targets[b][t], "targets(" << b << ", " << t << ")");
        }
    BOOST_TEST(batch.lengths == (std::vector<std::int64_t>{4, 3}), boost::test_tools::per_element());
}

// Text examples (DESIGN §5) with GPT-2's tokenizer. The expected ids are the
// reference encoder's (node, gpt-3-encoder@1.1.4, as in test_tokenizer):
//   encode("Question: Who wrote Hamlet?\nAnswer: ") and encode("William Shakespeare wrote it.")
namespace {

const simnpo::tokenizer::Tokenizer& gpt2() {
    static const auto tokenizer =
        simnpo::tokenizer::Tokenizer::load(std::filesystem::path(SIMNPO_SHARED_DATA_DIR) / "gpt2-tokenizer");
    return tokenizer;
}

simnpo::model::Config gpt2_config() {
    return {.vocab_size = 50257, .n_positions = 64, .n_embd = 8, .n_layer = 1, .n_head = 2};
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_examples_use_the_prompt_template_and_end_the_answer_with_end_of_text) {
    const simnpo::data::TextFormat format(gpt2());
    const auto examples = parse_examples(
        R"({"question": "Who wrote Hamlet?", "answer": "William Shakespeare wrote it."})"
        "\n"
        R"({"prompt_ids": [1, 2], "answer_ids": [3], "question": "ignored: ids win"})"
        "\n",
        gpt2_config(), "text.jsonl", &format);
    BOOST_TEST_REQUIRE(examples.size() == 2u);
    BOOST_TEST(examples[0].prompt_ids == (Ids{24361, 25, 5338, 2630, 4345, 1616, 30, 198, 33706, 25, 220}),
               boost::test_tools::per_element());
    BOOST_TEST(examples[0].answer_ids == (Ids{17121, 22197, 2630, 340, 13, 50256}), boost::test_tools::per_element());
    BOOST_TEST(examples[1].prompt_ids == (Ids{1, 2}), boost::test_tools::per_element());

    // Every {question} is replaced; here the template's own " Who?" follows it:
    // encode("Q: Who wrote Hamlet? Who?\nA:") by the reference encoder.
    const simnpo::data::TextFormat custom(gpt2(), "Q: {question} Who?\nA:");
    BOOST_TEST(custom.prompt_ids("Who wrote Hamlet?") == (Ids{48, 25, 5338, 2630, 4345, 1616, 30, 5338, 30, 198, 32, 25}),
               boost::test_tools::per_element());
    const simnpo::data::TextFormat twice(gpt2(), "{question}|{question}");
    BOOST_TEST(twice.prompt("ab") == "ab|ab");
    BOOST_CHECK_EXCEPTION(simnpo::data::TextFormat(gpt2(), "Q: {questio}\nA:"), simnpo::Error,
                          message_has({"prompt template \"Q: {questio}\\nA:\" has no {question}"}));
}

BOOST_AUTO_TEST_CASE(bad_text_examples_name_the_file_and_line) {
    const simnpo::data::TextFormat format(gpt2());
    const auto parse_text = [&](const std::string& bad) {
        return parse_examples(R"({"question": "q", "answer": "a"})"
                              "\n" + bad + "\n",
                              gpt2_config(), "text.jsonl", &format);
    };
    BOOST_CHECK_EXCEPTION(parse_text(R"({"question": "q", "answer": ""})"), simnpo::Error,
                          message_has({"text.jsonl:2: 'answer' is empty"}));
    BOOST_CHECK_EXCEPTION(parse_text(R"({"question": 3, "answer": "a"})"), simnpo::Error,
                          message_has({"text.jsonl:2: 'question' must be a string, got 3"}));
    BOOST_CHECK_EXCEPTION(parse_text(R"({"answer": "a"})"), simnpo::Error,
                          message_has({"text.jsonl:2: missing key 'question'"}));
    std::string long_question;
    for (int i = 0; i < 70; ++i) long_question += " word";  // one token each
    BOOST_CHECK_EXCEPTION(parse_text(R"({"question": ")" + long_question + R"(", "answer": "a"})"),
                          simnpo::Error, message_has({"text.jsonl:2: sequence is longer than n_positions = 64 tokens"}));
    // A vocabulary smaller than the tokenizer's: ids out of range, named.
    BOOST_CHECK_EXCEPTION(parse_examples(R"({"question": "q", "answer": "a"})", small_config(), "text.jsonl", &format),
                          simnpo::Error, message_has({"text.jsonl:1: token id", "outside the vocabulary [0, 50)"}));
}

BOOST_AUTO_TEST_CASE(text_refusals_end_with_end_of_text) {
    const simnpo::data::TextFormat format(gpt2());
    const auto refusals = simnpo::data::parse_refusals(R"({"answer": "I don't know."})", gpt2_config(), "idk.jsonl", &format);
    BOOST_TEST_REQUIRE(refusals.size() == 1u);
    BOOST_TEST(refusals[0] == (Ids{40, 836, 470, 760, 13, 50256}), boost::test_tools::per_element());
    BOOST_CHECK_EXCEPTION(simnpo::data::parse_refusals(R"({"answer": "I don't know."})", gpt2_config(), "idk.jsonl"),
                          simnpo::Error, message_has({"idk.jsonl:1: text answers ('answer') need a tokenizer"}));
}

// Issue 16: a 50 MB line was tokenised (1.1-2.2 GB) before its length was
// checked. Tokenising stops as soon as the example is known to be too long,
// and a text of more bytes than n_positions of the longest token hold is not
// tokenised at all.
BOOST_AUTO_TEST_CASE(a_long_text_example_is_refused_as_soon_as_it_is_too_long) {
    const simnpo::data::TextFormat format(gpt2());
    const std::string huge(8u << 20, 'a');
    BOOST_TEST(!gpt2().encode_at_most(huge, 64).has_value());
    BOOST_TEST(!gpt2().encode_at_most(" a b c d e", 4).has_value());
    BOOST_TEST((gpt2().encode_at_most(" a b c d e", 5) == gpt2().encode(" a b c d e")));
    BOOST_TEST(!format.example("q", huge, 64).has_value());
    BOOST_CHECK_EXCEPTION(
        parse_examples(R"({"question": "q", "answer": ")" + huge + "\"}", gpt2_config(), "text.jsonl", &format),
        simnpo::Error, message_has({"text.jsonl:1: sequence is longer than n_positions = 64 tokens"}));
    BOOST_CHECK_EXCEPTION(
        simnpo::data::parse_refusals(R"({"answer": ")" + huge + "\"}", gpt2_config(), "idk.jsonl", &format),
        simnpo::Error, message_has({"idk.jsonl:1: sequence is longer than n_positions = 64 tokens"}));
}

// Issue 16: --data /dev/zero grew to 2-4 GB before std::bad_alloc. A line may
// hold at most 16 MiB; reading stops there.
BOOST_AUTO_TEST_CASE(a_line_longer_than_16_mib_is_an_error_naming_it) {
    std::string text = std::string(R"({"prompt_ids": [1], "answer_ids": [2]})") + "\n";
    text += std::string(R"({"prompt_ids": [1], "answer_ids": [2]})") + std::string(simnpo::max_line_bytes, ' ') + "\n";
    BOOST_CHECK_EXCEPTION(parse(text), simnpo::Error,
                          message_has({"data.jsonl:2: line longer than 16777216 bytes"}));
    const TempFile file(text);
    BOOST_CHECK_EXCEPTION(simnpo::data::read_jsonl(file.path, small_config()), simnpo::Error,
                          message_has({file.path.string() + ":2: line longer than 16777216 bytes"}));
    BOOST_CHECK_EXCEPTION(simnpo::data::read_jsonl("/dev/zero", small_config()), simnpo::Error,
                          message_has({"/dev/zero:1: line longer than 16777216 bytes"}));
    BOOST_CHECK_EXCEPTION(simnpo::data::read_question_answers("/dev/zero"), simnpo::Error,
                          message_has({"/dev/zero:1: line longer than 16777216 bytes"}));
}

// Issue 16: a key given twice was accepted silently (the last won).
BOOST_AUTO_TEST_CASE(a_key_given_twice_is_an_error_naming_it) {
    BOOST_CHECK_EXCEPTION(parse(with_bad_line(3, R"({"prompt_ids": [1], "answer_ids": [2], "answer_ids": [3]})")),
                          simnpo::Error, message_has({"data.jsonl:3: duplicate key \"answer_ids\""}));
    BOOST_CHECK_EXCEPTION(parse(R"([{"prompt_ids": [1], "prompt_ids": [1], "answer_ids": [2]}])"), simnpo::Error,
                          message_has({"data.jsonl: duplicate key \"prompt_ids\""}));
    // The same key in two objects, or nested, is not a duplicate.
    BOOST_TEST(parse(R"({"prompt_ids": [1], "answer_ids": [2], "x": {"prompt_ids": 0}})").size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()  // test_data
