// Golden parity with an independent PyTorch GPT-2 (tests/reference/make_fixtures.py):
// logits, per-token log-probabilities and every parameter gradient, in double
// (to rounding) and in float (to float tolerance).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_gpt_reference)

namespace {

const std::string fixtures = SIMNPO_FIXTURES_DIR;

struct Reference {
    nlohmann::json json = nlohmann::json::parse(simnpo::read_file(fixtures + "/gpt_tiny/reference.json"));
    std::vector<simnpo::data::Example> examples() const {
        std::vector<simnpo::data::Example> list;
        for (const auto& item : json.at("examples"))
            list.push_back({item.at("prompt_ids").get<std::vector<std::int32_t>>(),
                            item.at("answer_ids").get<std::vector<std::int32_t>>()});
        return list;
    }
    std::vector<double> values(const std::string& key) const { return json.at(key).get<std::vector<double>>(); }
};

double max_abs(const std::vector<double>& values) {
    double largest = 0.0;
    for (const double value : values) largest = std::max(largest, std::abs(value));
    return largest;
}

// Largest |actual − expected| relative to the largest |expected| of the tensor.
template <class Actual>
double relative_error(const Actual& actual, const std::vector<double>& expected) {
    BOOST_REQUIRE_EQUAL(static_cast<std::size_t>(actual.size()), expected.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i)
        worst = std::max(worst, std::abs(static_cast<double>(actual[i]) - expected[i]));
    return worst / std::max(max_abs(expected), 1e-30);
}

template <class Scalar>
void check_parity(double tolerance) {
    const Reference reference;
    auto model = simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, Scalar>>(fixtures + "/gpt_tiny");
    const auto examples = reference.examples();
    const auto batch = simnpo::data::make_batch(examples);
    BOOST_REQUIRE_EQUAL(batch.columns(), reference.json.at("T").get<std::int64_t>());
    model.forward(batch, simnpo::model::Logits::keep);

    const auto positions = reference.json.at("scored_positions").get<std::vector<std::int64_t>>();
    BOOST_TEST(std::vector<std::int64_t>(model.scored_positions().begin(), model.scored_positions().end()) == positions,
               boost::test_tools::per_element());
    BOOST_TEST(relative_error(model.logits(), reference.values("logits")) < tolerance);
    BOOST_TEST(relative_error(model.logprobs(), reference.values("token_logprobs")) < tolerance);
    BOOST_TEST(relative_error(model.sequence_logprobs(), reference.values("sequence_logprobs")) < tolerance);

    const auto weights_double = reference.values("token_weights");
    const std::vector<Scalar> weights(weights_double.begin(), weights_double.end());
    model.zero_grad();
    model.backward(weights);
    for (const auto& slot : model.layout().slots()) {
        const auto expected = reference.json.at("grads").at(slot.name).template get<std::vector<double>>();
        BOOST_REQUIRE_GT(max_abs(expected), 0.0);
        const std::vector<Scalar> actual(model.grads().begin() + static_cast<std::ptrdiff_t>(slot.offset),
                                         model.grads().begin() + static_cast<std::ptrdiff_t>(slot.offset + slot.size));
        BOOST_TEST_INFO(slot.name);
        BOOST_TEST(relative_error(actual, expected) < tolerance);
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(double_matches_pytorch_to_rounding) { check_parity<double>(1e-9); }

BOOST_AUTO_TEST_CASE(float_matches_pytorch_to_float_tolerance) { check_parity<float>(2e-4); }

BOOST_AUTO_TEST_SUITE_END()  // test_gpt_reference
