// The mixture-of-Markov-chains data of the paper's synthetic study: each
// source's probabilities worked out by hand, sampled frequencies against them,
// the example layout, seeding, the train/test split and bad parameters.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_markov)

namespace sd = simnpo::data;
namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(probabilities_follow_the_studys_definition) {
    // Subset {0, 1, 2}, leakage 0.2, 10 states: inside 0.8/3, elsewhere 0.2/7; from outside, uniform 1/10.
    const sd::MarkovSource retain({0, 1, 2});
    BOOST_TEST(retain.initial(0) == 0.8 / 3, tt::tolerance(1e-15));
    BOOST_TEST(retain.initial(9) == 0.2 / 7, tt::tolerance(1e-15));
    BOOST_TEST(retain.transition(1, 2) == 0.8 / 3, tt::tolerance(1e-15));
    BOOST_TEST(retain.transition(1, 1) == 0.8 / 3, tt::tolerance(1e-15));
    BOOST_TEST(retain.transition(2, 7) == 0.2 / 7, tt::tolerance(1e-15));
    BOOST_TEST(retain.transition(5, 0) == 0.1, tt::tolerance(1e-15));
    BOOST_TEST(retain.transition(9, 9) == 0.1, tt::tolerance(1e-15));
    for (std::int32_t from = 0; from < 10; ++from) {
        double row = 0.0, start = 0.0;
        for (std::int32_t to = 0; to < 10; ++to) {
            row += retain.transition(from, to);
            start += retain.initial(to);
        }
        BOOST_TEST(row == 1.0, tt::tolerance(1e-14));
        BOOST_TEST(start == 1.0, tt::tolerance(1e-14));
    }
}

BOOST_AUTO_TEST_CASE(sampled_frequencies_match_the_probabilities) {
    // 20,000 sequences of 11 states: 200,000 transitions. Each observed frequency
    // must lie within 5 binomial standard errors of its probability.
    const sd::MarkovSource forget1({3, 4, 5});
    simnpo::Rng rng(11);
    const auto examples = forget1.sample(20000, 11, rng);
    std::vector<std::vector<double>> counts(10, std::vector<double>(10, 0.0));
    std::vector<double> starts(10, 0.0);
    for (const auto& example : examples) {
        std::int32_t state = example.prompt_ids[0];
        starts[static_cast<std::size_t>(state)] += 1;
        for (const auto next : example.answer_ids) {
            counts[static_cast<std::size_t>(state)][static_cast<std::size_t>(next)] += 1;
            state = next;
        }
    }
    const auto check = [](double hits, double trials, double p) {
        const double error = std::sqrt(p * (1 - p) / trials);
        BOOST_TEST(std::abs(hits / trials - p) <= 5 * error, hits / trials << " vs " << p);
    };
    for (std::int32_t s = 0; s < 10; ++s) check(starts[static_cast<std::size_t>(s)], 20000, forget1.initial(s));
    for (std::int32_t from = 0; from < 10; ++from) {
        double trials = 0.0;
        for (const double c : counts[static_cast<std::size_t>(from)]) trials += c;
        BOOST_TEST_REQUIRE(trials > 1000.0);
        for (std::int32_t to = 0; to < 10; ++to)
            check(counts[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)], trials,
                  forget1.transition(from, to));
    }
}

BOOST_AUTO_TEST_CASE(examples_are_a_first_state_and_the_rest) {
    const sd::MarkovSource forget2({6, 7, 8});
    simnpo::Rng a(5), b(5), c(6);
    const auto examples = forget2.sample(50, 5, a);
    BOOST_TEST(examples.size() == 50u);
    for (const auto& example : examples) {
        BOOST_TEST(example.prompt_ids.size() == 1u);
        BOOST_TEST(example.answer_ids.size() == 4u);
        for (const auto s : example.answer_ids) BOOST_TEST((s >= 0 && s < 10));
    }
    BOOST_TEST((forget2.sample(50, 5, b) == examples));   // the same seed, the same data
    BOOST_TEST(!(forget2.sample(50, 5, c) == examples));  // another seed, other data
}

BOOST_AUTO_TEST_CASE(split_keeps_order_and_fractions) {
    const sd::MarkovSource retain({0, 1, 2});
    simnpo::Rng rng(1);
    const auto examples = retain.sample(10000, 3, rng);
    const auto parts = sd::split(examples, 0.8);
    BOOST_TEST(parts.train.size() == 8000u);
    BOOST_TEST(parts.test.size() == 2000u);
    BOOST_TEST((parts.train.front() == examples.front()));
    BOOST_TEST((parts.test.front() == examples[8000]));
    BOOST_CHECK_THROW(sd::split(examples, 1.5), simnpo::Error);
}

BOOST_AUTO_TEST_CASE(bad_parameters_are_errors) {
    simnpo::Rng rng(1);
    BOOST_CHECK_THROW(sd::MarkovSource({}), simnpo::Error);
    BOOST_CHECK_THROW(sd::MarkovSource({0, 0, 1}), simnpo::Error);
    BOOST_CHECK_THROW(sd::MarkovSource({0, 10}), simnpo::Error);
    BOOST_CHECK_THROW(sd::MarkovSource({0, 1}, 1.5), simnpo::Error);
    BOOST_CHECK_THROW(sd::MarkovSource({0, 1, 2}, 0.2, 3), simnpo::Error);  // the subset is every state
    BOOST_CHECK_THROW(sd::MarkovSource({0, 1, 2}).sample(1, 1, rng), simnpo::Error);
}

BOOST_AUTO_TEST_SUITE_END()  // test_markov
