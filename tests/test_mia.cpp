// Membership-inference scores, AUC and PrivLeak: against scikit-learn, PyTorch
// and Python's zlib (fixture from tests/reference/make_mia_fixture.py), by hand,
// and from a model's forwards.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "support/error_message.hpp"

BOOST_AUTO_TEST_SUITE(test_mia)

namespace {

namespace fs = std::filesystem;
namespace ev = simnpo::eval;
using simnpo::testing::message_has;
using Values = std::vector<double>;

const nlohmann::json& fixture() {
    static const nlohmann::json data = simnpo::read_json_file(fs::path(SIMNPO_FIXTURES_DIR) / "mia_cases.json");
    return data;
}

bool close(double actual, double expected, double tolerance) {
    return std::abs(actual - expected) <= tolerance * std::max(1.0, std::abs(expected));
}

}  // namespace

BOOST_AUTO_TEST_CASE(auc_matches_sklearn) {
    for (const auto& c : fixture().at("auc")) {
        const auto members = c.at("members").get<Values>(), nonmembers = c.at("nonmembers").get<Values>();
        BOOST_TEST(close(ev::auc(members, nonmembers), c.at("auc").get<double>(), 1e-14), c.at("name").get<std::string>());
    }
}

BOOST_AUTO_TEST_CASE(auc_by_hand) {
    BOOST_TEST(ev::auc(Values{2, 3}, Values{1}) == 1.0);      // every member above
    BOOST_TEST(ev::auc(Values{0}, Values{1, 2}) == 0.0);      // every member below
    BOOST_TEST(ev::auc(Values{1}, Values{1}) == 0.5);         // a tie counts half
    BOOST_TEST(ev::auc(Values{1, 1}, Values{1, 0}) == 0.75);  // pairs: ½ + 1 + ½ + 1 of 4
    BOOST_TEST(ev::auc(Values(5, 7.0), Values(3, 7.0)) == 0.5);  // all equal
    // Order of input does not matter; a shift of all scores does not either.
    BOOST_TEST(ev::auc(Values{3, 1, 2}, Values{0, 2.5}) == ev::auc(Values{1, 2, 3}, Values{2.5, 0}));
    BOOST_TEST(ev::auc(Values{3, 1, 2}, Values{0, 2.5}) == 4.0 / 6.0);
    BOOST_TEST(ev::auc(Values{-1e300, std::numeric_limits<double>::infinity()}, Values{0}) == 0.5);
}

BOOST_AUTO_TEST_CASE(auc_rejects_an_empty_class_and_nan) {
    BOOST_CHECK_EXCEPTION(ev::auc(Values{}, Values{1}), simnpo::Error, message_has({"no members", "both classes"}));
    BOOST_CHECK_EXCEPTION(ev::auc(Values{1}, Values{}), simnpo::Error, message_has({"no non-members"}));
    BOOST_CHECK_EXCEPTION(ev::auc(Values{1, std::nan("")}, Values{0}), simnpo::Error,
                          message_has({"member's score is NaN"}));
    BOOST_CHECK_EXCEPTION(ev::auc(Values{1}, Values{std::nan("")}), simnpo::Error,
                          message_has({"non-member's score is NaN"}));
}

BOOST_AUTO_TEST_CASE(token_statistics_and_min_k_match_pytorch) {
    const auto ks = fixture().at("ks").get<Values>();
    for (const auto& c : fixture().at("tokens")) {
        const auto logits = c.at("logits").get<std::vector<std::vector<float>>>();
        const auto targets = c.at("targets").get<std::vector<std::int32_t>>();
        ev::TokenStatistics stats, chunked;
        std::vector<double> scratch;
        for (std::size_t t = 0; t < logits.size(); ++t) {
            ev::add_token_statistics(stats, std::span<const float>(logits[t]), targets[t]);
            // The same row in chunks of 3 columns (the last one shorter), as the fused head visits
            // them, from the last chunk to the first: a wrong combination would not agree.
            const std::span<const float> row(logits[t]);
            ev::TokenMoments moments;
            for (std::size_t v0 = (row.size() - 1) / 3 * 3;; v0 -= 3) {
                moments.add(row.subspan(v0, std::min<std::size_t>(3, row.size() - v0)),
                            static_cast<std::int64_t>(v0), targets[t], scratch);
                if (v0 == 0) break;
            }
            moments.finish(chunked);
        }
        const auto logprob = c.at("logprob").get<Values>(), mean = c.at("mean").get<Values>(),
                   stddev = c.at("stddev").get<Values>();
        for (std::size_t t = 0; t < logits.size(); ++t) {
            for (const auto* s : {&stats, &chunked}) {
                BOOST_TEST(close(s->logprob[t], logprob[t], 1e-12));
                BOOST_TEST(close(s->mean[t], mean[t], 1e-12));
                BOOST_TEST(close(s->stddev[t], stddev[t], 1e-9));  // the reference's E[x²]−μ² loses digits
            }
        }
        for (const double k : ks) {
            const auto key = nlohmann::json(k).dump();
            BOOST_TEST_CONTEXT("n " << logits.size() << " k " << key) {
                BOOST_TEST(close(ev::min_k_score(stats.logprob, k), c.at("min_k").at(key).get<double>(), 1e-12));
                BOOST_TEST(close(ev::min_k_plus_plus_score(stats, k), c.at("min_k_plus_plus").at(key).get<double>(), 1e-8));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(zlib_length_matches_python) {
    for (const auto& c : fixture().at("zlib"))
        BOOST_TEST(ev::zlib_length(c.at("text").get<std::string>()) == c.at("length").get<std::size_t>(),
                   c.at("text").get<std::string>());
}

BOOST_AUTO_TEST_CASE(scores_by_hand) {
    const Values logprobs = {-1.0, -2.0, -3.0, -6.0, -0.5};
    BOOST_TEST(ev::loss_score(logprobs) == 2.5);
    const std::string text = "Hello, world!";  // 21 bytes compressed (Python's zlib)
    BOOST_TEST(ev::zlib_score(logprobs, text) == 2.5 / 21.0);
    BOOST_TEST(ev::min_k_count(5, 0.4) == 2u);
    BOOST_TEST(ev::min_k_count(3, 0.4) == 1u);   // int(1.2)
    BOOST_TEST(ev::min_k_count(2, 0.2) == 1u);   // int(0.4) = 0, raised to 1
    BOOST_TEST(ev::min_k_count(10, 1.0) == 10u);
    BOOST_TEST(ev::min_k_score(logprobs, 0.4) == 4.5);  // -(-6 + -3) / 2
    BOOST_TEST(ev::min_k_score(logprobs, 1.0) == 2.5);
    // A position whose distribution is uniform has σ = 0: its standardised value is 0.
    ev::TokenStatistics stats{{-1.0, std::log(0.25)}, {-2.0, std::log(0.25)}, {0.5, 0.0}};
    BOOST_TEST(ev::min_k_plus_plus_score(stats, 1.0) == -1.0);  // -(2 + 0) / 2
    BOOST_TEST(ev::min_k_plus_plus_score(stats, 0.5) == -0.0);
    BOOST_CHECK_EXCEPTION(ev::min_k_score(logprobs, 0.0), simnpo::Error, message_has({"k must lie in (0, 1]"}));
    BOOST_CHECK_EXCEPTION(ev::min_k_score(logprobs, 1.5), simnpo::Error, message_has({"got 1.5"}));
    BOOST_CHECK_EXCEPTION(ev::loss_score(Values{}), simnpo::Error, message_has({"no tokens"}));
    const std::vector<ev::TokenStatistics> two(2, stats);
    const std::vector<std::string> one_text = {"x"};
    BOOST_CHECK_EXCEPTION(ev::mia_scores(two, one_text, 0.4), simnpo::Error, message_has({"1 texts for 2 examples"}));
}

BOOST_AUTO_TEST_CASE(privleak_follows_muse) {
    BOOST_TEST(ev::privleak(0.0, 0.5) == -100.0);  // remembers every member
    BOOST_TEST(ev::privleak(0.5, 0.5) == 0.0);
    BOOST_TEST(ev::privleak(0.75, 0.5) == 50.0);   // over-unlearned
    BOOST_TEST(close(ev::privleak(0.3, 0.6), -50.0, 1e-15));
    BOOST_CHECK_EXCEPTION(ev::privleak(0.4, 0.0), simnpo::Error, message_has({"retain model's AUC is 0"}));
}

// Statistics from a model: the same whatever the batching, the log-probabilities
// the forward's, and mean and σ those of the position's softmax.
BOOST_AUTO_TEST_CASE(token_statistics_from_a_model) {
    simnpo::model::Gpt<simnpo::cpu, double> model({.vocab_size = 23, .n_positions = 16, .n_embd = 8, .n_layer = 1, .n_head = 2});
    simnpo::Rng rng(3);
    for (auto& value : model.params()) value = rng.normal(0.0, 0.5);
    const std::vector<simnpo::data::Example> examples = {
        {{1, 2, 3}, {4, 5}}, {{7}, {8, 9, 10, 11, 12}}, {{3, 3, 3, 3}, {22}}, {{0, 1}, {2, 3, 4}}};
    const auto one_by_one = ev::token_statistics(model, std::span(examples), 1);
    const auto together = ev::token_statistics(model, std::span(examples), 3);
    BOOST_TEST_REQUIRE(one_by_one.size() == examples.size());
    for (std::size_t i = 0; i < examples.size(); ++i) {
        BOOST_TEST_REQUIRE(one_by_one[i].logprob.size() == examples[i].answer_ids.size());
        BOOST_TEST_REQUIRE(together[i].logprob.size() == examples[i].answer_ids.size());
        model.forward(simnpo::data::make_batch(std::span(examples).subspan(i, 1)), simnpo::model::Logits::keep);
        const auto logprobs = model.logprobs();
        const auto& logits = model.logits();
        for (std::size_t t = 0; t < logprobs.size(); ++t) {
            BOOST_TEST(close(one_by_one[i].logprob[t], logprobs[t], 1e-12));
            BOOST_TEST(close(together[i].logprob[t], logprobs[t], 1e-12));
            BOOST_TEST(close(together[i].mean[t], one_by_one[i].mean[t], 1e-12));
            BOOST_TEST(close(together[i].stddev[t], one_by_one[i].stddev[t], 1e-12));
            // μ and σ of log p under p, by the textbook two-moment formula.
            double z = 0, m1 = 0, m2 = 0;
            for (std::size_t v = 0; v < 23; ++v) z += std::exp(logits[t * 23 + v]);
            for (std::size_t v = 0; v < 23; ++v) {
                const double logp = logits[t * 23 + v] - std::log(z);
                m1 += std::exp(logp) * logp;
                m2 += std::exp(logp) * logp * logp;
            }
            BOOST_TEST(close(one_by_one[i].mean[t], m1, 1e-12));
            BOOST_TEST(close(one_by_one[i].stddev[t], std::sqrt(m2 - m1 * m1), 1e-9));
        }
    }
    BOOST_CHECK_EXCEPTION(ev::token_statistics(model, std::span(examples), 0), simnpo::Error,
                          message_has({"batch_size must be at least 1"}));
}

BOOST_AUTO_TEST_SUITE_END()  // test_mia
