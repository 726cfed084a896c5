// The scalar loss algebra of DESIGN §3: closed-form values worked out by hand,
// finite-difference checks of dL/dℓ in double, stability, and the paper's properties.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_losses)

namespace sl = simnpo::loss;
namespace tt = boost::test_tools;

namespace {

sl::SequenceStats stats(std::vector<double> logprob, std::vector<std::int64_t> length, std::vector<double> ref = {}) {
    return {std::move(logprob), std::move(length), std::move(ref)};
}

// Central differences of evaluate().value with respect to each ℓ_θ(i).
template <class Loss>
void check_gradient(const Loss& loss, sl::SequenceStats s) {
    const auto exact = loss.evaluate(s).dlogprob;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const double saved = s.logprob[i], step = 1e-6;
        s.logprob[i] = saved + step;
        const double plus = loss.evaluate(s).value;
        s.logprob[i] = saved - step;
        const double minus = loss.evaluate(s).value;
        s.logprob[i] = saved;
        BOOST_TEST(exact[i] == (plus - minus) / (2 * step), tt::tolerance(1e-7));
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(simnpo_closed_form) {
    // β = 2, γ = 0; r = ℓ/|y| = (−2, −0.25):
    // L = ½ [log(1 + e^−4) + log(1 + e^−0.5)] = ½ (0.0181499279 + 0.4740769842)
    // dL/dℓ_i = σ(β r_i)/|y_i| = (σ(−4)/2, σ(−0.5)/4) = (0.0179862100/2, 0.3775406688/4)
    const sl::SimNPO loss({.beta = 2.0, .gamma = 0.0});
    const auto result = loss.evaluate(stats({-4.0, -1.0}, {2, 4}));
    BOOST_TEST(result.value == 0.2461134561, tt::tolerance(1e-9));
    BOOST_TEST(result.dlogprob[0] == 0.0089931050, tt::tolerance(1e-8));
    BOOST_TEST(result.dlogprob[1] == 0.0943851672, tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(simnpo_margin_closed_form) {
    // β = 1, γ = 0.5, ℓ = −2, |y| = 1: L = −2 log σ(2 − 0.5) = 2 log(1 + e^−1.5); dL/dℓ = 2 σ(−1.5).
    const sl::SimNPO loss({.beta = 1.0, .gamma = 0.5});
    const auto result = loss.evaluate(stats({-2.0}, {1}));
    BOOST_TEST(result.value == 0.4028265558, tt::tolerance(1e-9));
    BOOST_TEST(result.dlogprob[0] == 0.3648510476, tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(npo_closed_form) {
    // β = 1, ℓ = −3, ℓ_ref = −2 (sums, the length does not enter): r = −1,
    // L = 2 log(1 + e^−1) = 0.6265233750; dL/dℓ = 2 σ(−1) = 0.5378828427.
    const sl::NPO loss({.beta = 1.0});
    const auto result = loss.evaluate(stats({-3.0}, {5}, {-2.0}));
    BOOST_TEST(result.value == 0.6265233750, tt::tolerance(1e-9));
    BOOST_TEST(result.dlogprob[0] == 0.5378828427, tt::tolerance(1e-9));
    BOOST_CHECK_THROW(loss.evaluate(stats({-3.0}, {5})), simnpo::Error);  // no reference
}

BOOST_AUTO_TEST_CASE(token_mean_losses_closed_form) {
    // ℓ = (−3, −5), |y| = (2, 3): Σℓ/Σ|y| = −8/5.
    const auto s = stats({-3.0, -5.0}, {2, 3});
    const auto ascent = sl::GradAscent{}.evaluate(s);
    BOOST_TEST(ascent.value == -1.6, tt::tolerance(1e-12));
    BOOST_TEST(ascent.dlogprob == std::vector<double>({0.2, 0.2}), tt::per_element());
    const auto nll = sl::NLL{}.evaluate(s);
    BOOST_TEST(nll.value == 1.6, tt::tolerance(1e-12));
    BOOST_TEST(nll.dlogprob == std::vector<double>({-0.2, -0.2}), tt::per_element());
}

BOOST_AUTO_TEST_CASE(dpo_closed_form) {
    // β = 1, B = 2; rows: two forget examples, then their refusals.
    // Pair 1: ℓ_θ − ℓ_ref = −2 − (−3) = 1 (forget), −5 − (−4) = −1 (refusal): z = −1 − 1 = −2,
    //   L₁ = −2 log σ(−2) = 2 log(1 + e²) = 4.2538560221, weight 2σ(2) = 1.7615941560.
    // Pair 2: both differences 0: z = 0, L₂ = 2 log 2 = 1.3862943611, weight 2σ(0) = 1.
    // L = (L₁ + L₂)/2; the forget rows get +weight/B, the refusal rows −weight/B.
    const sl::DPO loss({{1}}, {.beta = 1.0});
    const auto result = loss.evaluate(stats({-2.0, -7.0, -5.0, -1.0}, {2, 3, 1, 4}, {-3.0, -7.0, -4.0, -1.0}));
    BOOST_TEST(result.value == 2.8200751916, tt::tolerance(1e-9));
    const std::vector<double> expected{0.8807970780, 0.5, -0.8807970780, -0.5};
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(result.dlogprob[i] == expected[i], tt::tolerance(1e-9));
    BOOST_CHECK_THROW(loss.evaluate(stats({-2.0, -7.0, -5.0}, {1, 1, 1}, {-3.0, -7.0, -4.0})), simnpo::Error);
    BOOST_CHECK_THROW(loss.evaluate(stats({-2.0, -7.0}, {1, 1})), simnpo::Error);  // no reference
}

BOOST_AUTO_TEST_CASE(dpo_pairs_each_example_with_a_fixed_refusal) {
    const sl::DPO loss({{7, 7}, {8}, {9, 9, 9}});
    const std::vector<simnpo::data::Example> forget{{{1, 2}, {3}}, {{4}, {5, 6}}};
    const auto rows = loss.rows(forget);
    BOOST_TEST_REQUIRE(rows.size() == 4u);
    BOOST_TEST((rows[0] == forget[0]));
    BOOST_TEST((rows[1] == forget[1]));
    for (std::size_t i = 0; i < 2; ++i) {
        BOOST_TEST(rows[2 + i].prompt_ids == forget[i].prompt_ids);
        BOOST_TEST((rows[2 + i].answer_ids == std::vector<std::int32_t>{7, 7} ||
                    rows[2 + i].answer_ids == std::vector<std::int32_t>{8} ||
                    rows[2 + i].answer_ids == std::vector<std::int32_t>{9, 9, 9}));
    }
    // The same pairing every time, whatever the batch: what lets ℓ_ref(idk) be cached.
    const auto again = loss.rows(std::vector<simnpo::data::Example>{forget[1]});
    BOOST_TEST((again[1] == rows[3]));
}

BOOST_AUTO_TEST_CASE(kl_closed_form) {
    // Row 0: logits (0, ln 2) → q = (1/3, 2/3); p = (1/2, 1/2):
    //   KL = ½ ln(½ / ⅓) + ½ ln(½ / ⅔) = ½ ln(9/8) = 0.0588915178; dlogits ∝ q − p = (−1/6, 1/6).
    // Row 1: p = (1, 0), a token the reference gives no mass: KL = ln 3 = 1.0986122887
    //   (0·log 0 = 0); dlogits ∝ (1/3 − 1, 2/3).
    // L = mean over the two positions; dlogits = weight/N · (q − p).
    const double inf = std::numeric_limits<double>::infinity();
    const std::vector<double> logits{0.0, std::log(2.0), 0.0, std::log(2.0)};
    const std::vector<double> ref{std::log(0.5), std::log(0.5), 0.0, -inf};
    std::vector<double> dlogits(4), per_position(2);
    simnpo::cpu backend;
    const sl::Distributions<double> d{logits.data(), ref.data(), dlogits.data(), per_position.data(), 2, 2, 3.0};
    BOOST_TEST(sl::KL{}.evaluate(backend, d) == 0.5787519032, tt::tolerance(1e-9));
    const std::vector<double> expected{-0.25, 0.25, -1.0, 1.0};
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(dlogits[i] == expected[i], tt::tolerance(1e-12));
    // The gradient may overwrite the reference it reads (the objective relies on it).
    std::vector<double> in_place = ref;
    const sl::Distributions<double> aliased{logits.data(), in_place.data(), in_place.data(), per_position.data(),
                                            2, 2, 3.0};
    BOOST_TEST(sl::KL{}.evaluate(backend, aliased) == 0.5787519032, tt::tolerance(1e-9));
    BOOST_TEST(in_place == dlogits, tt::per_element());
}

BOOST_AUTO_TEST_CASE(npo_weight_is_the_papers) {
    // ∇L_NPO = −(1/B) Σ_i w_i ∇ℓ_θ(i)·(−1), w_i = 2π_θ^β / (π_θ^β + π_ref^β) (Zhang et al., 2024).
    const double beta = 0.6;
    const auto s = stats({-3.0, -9.0, -0.2}, {2, 5, 1}, {-4.5, -8.0, -0.2});
    const auto result = sl::NPO({.beta = beta}).evaluate(s);
    for (std::size_t i = 0; i < s.size(); ++i) {
        const double pi = std::exp(beta * s.logprob[i]), pi_ref = std::exp(beta * s.ref_logprob[i]);
        BOOST_TEST(result.dlogprob[i] == 2.0 * pi / (pi + pi_ref) / 3.0, tt::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(gradients_match_central_differences) {
    const auto s = stats({-3.7, -0.4, -12.0}, {3, 1, 9}, {-2.5, -1.1, -11.0});
    check_gradient(sl::SimNPO({.beta = 2.5, .gamma = 0.3}), s);
    check_gradient(sl::NPO({.beta = 0.7}), s);
    check_gradient(sl::Preference<sl::ReferenceBased, sl::LengthNormalized>({.beta = 1.3, .gamma = -0.2}), s);
    check_gradient(sl::Preference<sl::ReferenceFree, sl::SumLogProb>({.beta = 0.4}), s);
    check_gradient(sl::GradAscent{}, s);
    check_gradient(sl::NLL{}, s);
    const auto pairs = stats({-3.7, -0.4, -12.0, -2.0}, {3, 1, 9, 2}, {-2.5, -1.1, -11.0, -2.2});
    check_gradient(sl::DPO({{1}}, {.beta = 0.9}), pairs);
}

BOOST_AUTO_TEST_CASE(extreme_likelihoods_stay_finite) {
    for (const double l : {-1e4, 1e4}) {
        for (const auto& result : {sl::SimNPO({.beta = 1.0}).evaluate(stats({l}, {1})),
                                   sl::NPO({.beta = 1.0}).evaluate(stats({l}, {1}, {-l}))}) {
            BOOST_TEST(std::isfinite(result.value));
            BOOST_TEST(std::isfinite(result.dlogprob[0]));
        }
    }
    // ℓ = −1e4: the sequence is already forgotten, the loss and its gradient vanish.
    const auto forgotten = sl::SimNPO({.beta = 1.0}).evaluate(stats({-1e4}, {1}));
    BOOST_TEST(forgotten.value == 0.0, tt::tolerance(1e-12));
    BOOST_TEST(forgotten.dlogprob[0] == 0.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(bad_parameters_and_statistics_are_errors) {
    BOOST_CHECK_THROW(sl::SimNPO({.beta = 0.0}), simnpo::Error);
    BOOST_CHECK_THROW(sl::SimNPO({.beta = -1.0}), simnpo::Error);
    BOOST_CHECK_THROW(sl::NPO({.beta = NAN}), simnpo::Error);
    BOOST_CHECK_THROW(sl::SimNPO({.beta = 1.0, .gamma = INFINITY}), simnpo::Error);
    BOOST_CHECK_THROW(sl::SimNPO().evaluate(stats({-1.0}, {0})), simnpo::Error);
    BOOST_CHECK_THROW(sl::NLL{}.evaluate(stats({}, {})), simnpo::Error);
    BOOST_CHECK_THROW(sl::GradAscent{}.evaluate(stats({NAN}, {2})), simnpo::Error);
}

BOOST_AUTO_TEST_CASE(npo_tends_to_gradient_ascent_as_beta_vanishes) {
    // As β → 0, NPO's weight (2/B) σ(β r_i) → 1/B for every example: the
    // gradient of the paper's gradient ascent, (1/B) Σ_i ℓ_θ(i), in direction
    // and scale. The library's GradAscent is the token mean of DESIGN §3,
    // Σ_i ℓ_θ(i) / Σ_i |y_i|: the same direction, scaled by B / Σ|y|.
    const auto s = stats({-3.0, -20.0, -0.5}, {2, 7, 1}, {-1.0, -25.0, -4.0});
    const auto ascent = sl::GradAscent{}.evaluate(s).dlogprob;
    const auto npo = sl::NPO({.beta = 1e-6}).evaluate(s).dlogprob;
    const auto npo_large = sl::NPO({.beta = 1.0}).evaluate(s).dlogprob;
    for (std::size_t i = 0; i < s.size(); ++i) {
        BOOST_TEST(npo[i] == 1.0 / 3.0, tt::tolerance(1e-5));
        BOOST_TEST(npo[i] / ascent[i] == npo[0] / ascent[0], tt::tolerance(1e-5));
    }
    // At β = 1 the weights are not uniform: the limit above is not trivially true.
    BOOST_TEST(std::abs(npo_large[0] - npo_large[1]) > 0.1);
}

BOOST_AUTO_TEST_CASE(simnpo_weights_scale_with_inverse_length) {
    // Two answers with the same per-token likelihood: the same σ term, so the
    // weights differ by the factor 1/|y| alone.
    const auto result = sl::SimNPO({.beta = 2.5, .gamma = 0.5}).evaluate(stats({-1.5, -15.0}, {3, 30}));
    BOOST_TEST(result.dlogprob[0] / result.dlogprob[1] == 10.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_SUITE_END()  // test_losses
