#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

BOOST_AUTO_TEST_SUITE(test_rouge)

namespace {

namespace fs = std::filesystem;
using simnpo::eval::lcs_length;
using simnpo::eval::porter_stem;
using simnpo::eval::rouge_l;
using simnpo::eval::rouge_tokens;
using Tokens = std::vector<std::string>;

// What tests/reference/make_rouge_fixture.py wrote: nltk 3.8's stems and ROUGE-L by an
// independent implementation of rouge_score's.
const nlohmann::json& fixture() {
    static const nlohmann::json cases = simnpo::read_json_file(fs::path(SIMNPO_FIXTURES_DIR) / "rouge_cases.json");
    return cases;
}

std::string joined(const Tokens& tokens) {
    std::string out;
    for (const std::string& t : tokens) out += (out.empty() ? "" : " ") + t;
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(porter_stems_match_nltk) {
    const nlohmann::json& stems = fixture().at("stems");
    BOOST_REQUIRE_GT(stems.size(), 5000U);
    std::size_t wrong = 0;
    for (const auto& [word, stem] : stems.items()) {
        const std::string ours = porter_stem(word);
        if (ours != stem.get<std::string>()) {
            ++wrong;
            BOOST_TEST_MESSAGE(word << ": nltk " << stem.get<std::string>() << ", ours " << ours);
        }
    }
    BOOST_TEST(wrong == 0U);
}

BOOST_AUTO_TEST_CASE(porter_stem_extensions) {
    // NLTK's irregular forms, its 'ies'/'ied' rules for four-letter words, and short words.
    BOOST_TEST(porter_stem("skies") == "sky");
    BOOST_TEST(porter_stem("sky") == "sky");
    BOOST_TEST(porter_stem("dying") == "die");
    BOOST_TEST(porter_stem("news") == "news");
    BOOST_TEST(porter_stem("innings") == "inning");
    BOOST_TEST(porter_stem("proceed") == "proceed");
    BOOST_TEST(porter_stem("ties") == "tie");
    BOOST_TEST(porter_stem("ponies") == "poni");
    BOOST_TEST(porter_stem("died") == "die");
    BOOST_TEST(porter_stem("cried") == "cri");
    BOOST_TEST(porter_stem("is") == "is");
    BOOST_TEST(porter_stem("") == "");
    BOOST_TEST(porter_stem("agreed") == "agre");
    BOOST_TEST(porter_stem("feed") == "feed");
    BOOST_TEST(porter_stem("generously") == "gener");
    // NLTK looks the irregular forms up before lowering the word.
    BOOST_TEST(porter_stem("Sky") == "ski");
    BOOST_TEST(porter_stem("Meetings") == "meet");
}

BOOST_AUTO_TEST_CASE(tokens_match_reference) {
    for (const nlohmann::json& c : fixture().at("tokens")) {
        const std::string text = c.at("text").get<std::string>();
        const Tokens expected = c.at("tokens").get<Tokens>();
        const Tokens ours = rouge_tokens(text);
        BOOST_TEST(ours == expected, "text " << nlohmann::json(text).dump() << ": expected [" << joined(expected)
                                             << "], got [" << joined(ours) << "]");
    }
}

BOOST_AUTO_TEST_CASE(tokens_by_hand) {
    BOOST_TEST(rouge_tokens("").empty());
    BOOST_TEST(rouge_tokens(" \t?!--…“”").empty());
    BOOST_TEST(rouge_tokens("The 1990s, in Zürich: 3 cats!") ==
               (Tokens{"the", "1990", "in", "z", "rich", "3", "cat"}));
    BOOST_TEST(rouge_tokens("X1Y2 abc123DEF") == (Tokens{"x1y2", "abc123def"}));
    BOOST_TEST(rouge_tokens("İstanbul") == (Tokens{"i", "stanbul"}));  // Python: "i̇stanbul"
    BOOST_TEST(rouge_tokens("5\u212A") == (Tokens{"5k"}));              // KELVIN SIGN lowers to 'k'
    BOOST_TEST(rouge_tokens("naïve") == (Tokens{"na", "ve"}));
    BOOST_TEST(rouge_tokens("\xff\xfe" "abc\x80") == (Tokens{"abc"}));  // bytes that are not UTF-8
}

BOOST_AUTO_TEST_CASE(rouge_l_matches_reference) {
    const nlohmann::json& cases = fixture().at("rouge");
    BOOST_REQUIRE_GT(cases.size(), 300U);
    for (const nlohmann::json& c : cases) {
        const std::string prediction = c.at("prediction").get<std::string>();
        const std::string reference = c.at("reference").get<std::string>();
        const simnpo::eval::RougeL score = rouge_l(prediction, reference);
        BOOST_TEST_CONTEXT("prediction " << nlohmann::json(prediction).dump() << ", reference "
                                         << nlohmann::json(reference).dump()) {
            BOOST_TEST(score.precision == c.at("precision").get<double>(), boost::test_tools::tolerance(1e-12));
            BOOST_TEST(score.recall == c.at("recall").get<double>(), boost::test_tools::tolerance(1e-12));
            BOOST_TEST(score.f1 == c.at("f1").get<double>(), boost::test_tools::tolerance(1e-12));
        }
    }
}

BOOST_AUTO_TEST_CASE(rouge_l_by_hand) {
    const auto check = [](const char* prediction, const char* reference, double p, double r, double f) {
        const simnpo::eval::RougeL s = rouge_l(prediction, reference);
        BOOST_TEST_CONTEXT(prediction << " | " << reference) {
            BOOST_TEST(s.precision == p, boost::test_tools::tolerance(1e-15));
            BOOST_TEST(s.recall == r, boost::test_tools::tolerance(1e-15));
            BOOST_TEST(s.f1 == f, boost::test_tools::tolerance(1e-15));
        }
    };
    check("", "", 0, 0, 0);
    check("", "a reference", 0, 0, 0);
    check("a prediction", "", 0, 0, 0);
    check("?!", "...", 0, 0, 0);
    check("?! ...", "some words here", 0, 0, 0);
    check("The cat sat on the mat.", "the CAT sat, on the mat", 1, 1, 1);
    check("dogs bark", "the cat sat", 0, 0, 0);
    // Same bag of words, different order: the LCS ("the sat on the") is 4 of 6, not 6.
    check("the mat sat on the cat", "the cat sat on the mat", 4.0 / 6.0, 4.0 / 6.0, 4.0 / 6.0);
    // Stems match across forms: running/runs -> run.
    check("running fast", "he runs fast", 1.0, 2.0 / 3.0, 0.8);
    // Precision and recall differ: 2 common of 4 predicted, 2 of 2 referenced.
    check("one two three four", "two four", 0.5, 1.0, 2.0 * 0.5 * 1.0 / 1.5);
}

BOOST_AUTO_TEST_CASE(lcs_by_hand) {
    const Tokens a{"a", "b", "c", "b", "d", "a", "b"};
    const Tokens b{"b", "d", "c", "a", "b", "a"};
    BOOST_TEST(lcs_length(a, b) == 4U);  // "bcba", the textbook example
    BOOST_TEST(lcs_length(b, a) == 4U);
    BOOST_TEST(lcs_length(a, Tokens{}) == 0U);
    BOOST_TEST(lcs_length(Tokens{}, Tokens{}) == 0U);
    BOOST_TEST(lcs_length(a, a) == a.size());
    BOOST_TEST(lcs_length(Tokens{"x"}, a) == 0U);
}

BOOST_AUTO_TEST_SUITE_END()  // test_rouge
