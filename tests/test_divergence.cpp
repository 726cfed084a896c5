// eval::mean_token_kl: a hand-computed value where the distributions are known
// in closed form, zero against itself, and the token average over sets of
// different lengths and any batch size.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_divergence)

namespace tt = boost::test_tools;
using Model = simnpo::model::Gpt<simnpo::cpu, double>;
using simnpo::data::Example;

namespace {

Model tiny_model(std::uint64_t seed) {
    simnpo::model::Config config;
    config.vocab_size = 5;
    config.n_positions = 12;
    config.n_embd = 4;
    config.n_layer = 1;
    config.n_head = 2;
    Model model(config);
    simnpo::model::init_weights(model, seed);
    // Enough weight that two models' distributions differ visibly.
    for (auto& value : model.params()) value *= 20.0;
    return model;
}

// Answers of lengths 1..n, prompts of one token.
std::vector<Example> examples(std::int32_t n, std::int32_t first) {
    std::vector<Example> result;
    for (std::int32_t i = 0; i < n; ++i) {
        Example e{{(first + i) % 5}, {}};
        for (std::int32_t t = 0; t <= i; ++t) e.answer_ids.push_back((first + 2 * t + i) % 5);
        result.push_back(e);
    }
    return result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(matches_the_closed_form_when_the_final_layernorm_outputs_its_bias) {
    // With ln_f.weight = 0 the final LayerNorm outputs ln_f.bias = b at every
    // position, so the logits are wte·b everywhere: the distributions are known.
    Model reference_model = tiny_model(1), model = tiny_model(2);
    const std::vector<double> b_ref = {0.5, -1.0, 0.25, 2.0}, b = {-0.75, 0.5, 1.5, -0.25};
    const auto pin = [](Model& m, const std::vector<double>& bias) {
        for (auto& w : m.param("ln_f.weight")) w = 0.0;
        const auto ln_bias = m.param("ln_f.bias");
        std::copy(bias.begin(), bias.end(), ln_bias.begin());
    };
    pin(reference_model, b_ref);
    pin(model, b);

    const auto distribution = [](const Model& m, const std::vector<double>& bias) {
        const auto wte = m.param("wte.weight");
        std::vector<double> p(5);
        double total = 0.0;
        for (int v = 0; v < 5; ++v) {
            double z = 0.0;
            for (int c = 0; c < 4; ++c) z += wte[static_cast<std::size_t>(v * 4 + c)] * bias[static_cast<std::size_t>(c)];
            p[static_cast<std::size_t>(v)] = std::exp(z);
            total += p[static_cast<std::size_t>(v)];
        }
        for (auto& x : p) x /= total;
        return p;
    };
    const auto p = distribution(reference_model, b_ref), q = distribution(model, b);
    double expected = 0.0;
    for (std::size_t v = 0; v < 5; ++v) expected += p[v] * std::log(p[v] / q[v]);
    BOOST_TEST_REQUIRE(expected > 0.05);  // the case is not trivial

    simnpo::loss::FrozenReference<Model> reference(reference_model);
    const auto set = examples(6, 0);
    BOOST_TEST(simnpo::eval::mean_token_kl(reference, model, set) == expected, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(is_zero_against_itself_and_positive_against_another_model) {
    Model model = tiny_model(3), other = tiny_model(4);
    simnpo::loss::FrozenReference<Model> itself(model), reference(other);
    const auto set = examples(7, 1);
    BOOST_TEST(std::abs(simnpo::eval::mean_token_kl(itself, model, set)) < 1e-12);
    BOOST_TEST(simnpo::eval::mean_token_kl(reference, model, set) > 0.01);
}

BOOST_AUTO_TEST_CASE(averages_over_tokens_whatever_the_batch_size) {
    // Sets of 1 + 2 + ... tokens: the union's value is the token-weighted mean of
    // the parts', not their plain mean, and no batching changes it.
    Model model = tiny_model(5), other = tiny_model(6);
    simnpo::loss::FrozenReference<Model> reference(other);
    const auto short_set = examples(2, 0), long_set = examples(9, 3);  // 3 and 45 tokens
    std::vector<Example> both = short_set;
    both.insert(both.end(), long_set.begin(), long_set.end());
    const double kl_short = simnpo::eval::mean_token_kl(reference, model, short_set);
    const double kl_long = simnpo::eval::mean_token_kl(reference, model, long_set);
    BOOST_TEST_REQUIRE(std::abs(kl_short - kl_long) > 1e-3);  // so the weighting matters
    const double expected = (3.0 * kl_short + 45.0 * kl_long) / 48.0;
    for (const std::int64_t batch : {1, 2, 5, 256})
        BOOST_TEST(simnpo::eval::mean_token_kl(reference, model, both, batch) == expected, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(rejects_what_it_cannot_measure) {
    Model model = tiny_model(7);
    simnpo::loss::FrozenReference<Model> reference(model);
    BOOST_CHECK_THROW(simnpo::eval::mean_token_kl(reference, model, {}), simnpo::Error);
    const auto set = examples(2, 0);
    BOOST_CHECK_THROW(simnpo::eval::mean_token_kl(reference, model, set, 0), simnpo::Error);
    auto config = model.config();
    config.vocab_size = 6;
    Model wider(config);
    BOOST_CHECK_THROW(simnpo::eval::mean_token_kl(reference, wider, set), simnpo::Error);
}

BOOST_AUTO_TEST_SUITE_END()  // test_divergence
