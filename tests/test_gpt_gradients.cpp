// Finite-difference checks of Gpt's backward in double precision, for every
// element of every parameter tensor on a tiny model, plus the padding contract.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include <simnpo.hpp>

#include "support/scoped_threads.hpp"

BOOST_AUTO_TEST_SUITE(test_gpt_gradients)

namespace {

using Model = simnpo::model::Gpt<simnpo::cpu, double>;

simnpo::model::Config tiny_config() {
    return {.vocab_size = 13, .n_positions = 12, .n_embd = 8, .n_layer = 2, .n_head = 2};
}

// Large random values (not GPT-2's init) so that every path carries gradient.
void randomize(Model& model, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    for (const auto& slot : model.layout().slots()) {
        const bool layernorm_weight = slot.name.find("ln_") != std::string::npos &&
                                      slot.name.ends_with(".weight");
        for (std::size_t i = 0; i < slot.size; ++i)
            model.params()[slot.offset + i] = layernorm_weight ? 1.0 + rng.normal(0.0, 0.2) : rng.normal(0.0, 0.4);
    }
}

std::vector<simnpo::data::Example> examples() {
    return {{{1, 2, 3}, {4, 5}}, {{7}, {8, 9, 10, 11, 12, 0}}, {{3, 3, 6, 2}, {1}}};
}

double objective(Model& model, const simnpo::data::Batch& batch, const std::vector<double>& weights) {
    model.forward(batch);
    const auto logprobs = model.logprobs();
    double total = 0.0;
    for (std::size_t n = 0; n < logprobs.size(); ++n) total += weights[n] * logprobs[n];
    return total;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_parameter_gradient_matches_central_differences) {
    Model model(tiny_config());
    randomize(model, 7);
    const auto list = examples();
    const auto batch = simnpo::data::make_batch(list);
    model.forward(batch);
    BOOST_REQUIRE_EQUAL(model.scored_count(), 2 + 6 + 1);
    std::vector<double> weights;
    simnpo::Rng rng(3);
    for (std::int64_t n = 0; n < model.scored_count(); ++n) weights.push_back(rng.normal(0.0, 1.0));

    model.zero_grad();
    model.forward(batch);
    model.backward(weights);
    const std::vector<double> analytic(model.grads().begin(), model.grads().end());

    const double step = 1e-5;
    for (const auto& slot : model.layout().slots()) {
        double worst = 0.0;
        for (std::size_t i = 0; i < slot.size; ++i) {
            double& parameter = model.params()[slot.offset + i];
            const double saved = parameter;
            parameter = saved + step;
            const double plus = objective(model, batch, weights);
            parameter = saved - step;
            const double minus = objective(model, batch, weights);
            parameter = saved;
            const double numeric = (plus - minus) / (2 * step);
            const double exact = analytic[slot.offset + i];
            // Absolute floor: some gradients are exactly zero (a key bias shifts
            // every score of a row equally), where only rounding noise remains.
            worst = std::max(worst, std::abs(numeric - exact) / (1e-3 + std::abs(numeric)));
        }
        BOOST_TEST_INFO(slot.name);
        BOOST_TEST(worst < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(backward_accumulates_until_zeroed) {
    Model model(tiny_config());
    randomize(model, 11);
    const auto list = examples();
    const auto batch = simnpo::data::make_batch(list);
    model.forward(batch);
    const std::vector<double> weights(static_cast<std::size_t>(model.scored_count()), 1.0);
    model.zero_grad();
    model.backward(weights);
    const std::vector<double> once(model.grads().begin(), model.grads().end());
    model.backward(weights);
    double largest = 0.0;
    for (std::size_t i = 0; i < once.size(); ++i) {
        BOOST_TEST(model.grads()[i] == 2 * once[i], boost::test_tools::tolerance(1e-12));
        largest = std::max(largest, std::abs(once[i]));
    }
    BOOST_TEST(largest > 1e-3);
}

BOOST_AUTO_TEST_CASE(padding_is_neither_attended_nor_scored) {
    Model model(tiny_config());
    randomize(model, 5);
    const auto list = examples();
    auto batch = simnpo::data::make_batch(list);
    model.forward(batch);
    const auto together = model.sequence_logprobs();
    const auto positions = std::vector<std::int64_t>(model.scored_positions().begin(), model.scored_positions().end());

    // Each example alone gives the same log-likelihood as inside the padded batch.
    for (std::size_t b = 0; b < list.size(); ++b) {
        model.forward(simnpo::data::make_batch(std::span(list).subspan(b, 1)));
        BOOST_TEST(model.sequence_logprobs()[0] == together[b], boost::test_tools::tolerance(1e-12));
    }
    // Whatever sits in the padding changes nothing.
    for (std::size_t b = 0; b < list.size(); ++b)
        for (auto t = static_cast<std::size_t>(batch.lengths[b]); t < batch.tokens.shape()[1]; ++t)
            batch.tokens(b, t) = 12;
    model.forward(batch);
    const auto repadded = model.sequence_logprobs();
    for (std::size_t b = 0; b < list.size(); ++b) BOOST_TEST(repadded[b] == together[b], boost::test_tools::tolerance(1e-13));
    BOOST_TEST(std::vector<std::int64_t>(model.scored_positions().begin(), model.scored_positions().end()) == positions);
}

BOOST_AUTO_TEST_CASE(bad_batches_are_errors) {
    Model model(tiny_config());
    auto batch = simnpo::data::make_batch(examples());
    batch.tokens(0, 0) = 13;
    BOOST_CHECK_THROW(model.forward(batch), simnpo::Error);
    BOOST_CHECK_THROW(model.backward(std::vector<double>(3, 1.0)), simnpo::Error);
    batch = simnpo::data::make_batch(examples());
    model.forward(batch);
    BOOST_CHECK_THROW(model.backward(std::vector<double>(3, 1.0)), simnpo::Error);
}

BOOST_AUTO_TEST_CASE(overwrite_replaces_every_gradient_element) {
    Model model(tiny_config());
    randomize(model, 13);
    const auto batch = simnpo::data::make_batch(examples());
    model.forward(batch);
    const std::vector<double> weights(static_cast<std::size_t>(model.scored_count()), -0.5);
    model.zero_grad();
    model.backward(weights);
    const std::vector<double> expected(model.grads().begin(), model.grads().end());
    // Stale values everywhere, positions past the batch's length included.
    std::fill(model.grads().begin(), model.grads().end(), 7.0);
    model.backward(weights, simnpo::GradStore::overwrite);
    for (std::size_t i = 0; i < expected.size(); ++i)
        BOOST_TEST(model.grads()[i] == expected[i], boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(named_views_address_the_slabs) {
    Model model(tiny_config());
    const auto* slot = model.layout().find("h.1.mlp.c_fc.bias");
    BOOST_REQUIRE(slot != nullptr);
    BOOST_TEST(slot->size == 32u);
    BOOST_TEST(model.param("h.1.mlp.c_fc.bias").data() == model.params().data() + slot->offset);
    BOOST_TEST(model.grad("h.1.mlp.c_fc.bias").data() == model.grads().data() + slot->offset);
    BOOST_TEST(model.param("wte.weight").size() == 13u * 8u);
    BOOST_CHECK_THROW(model.param("h.2.ln_1.weight"), simnpo::Error);
}

BOOST_AUTO_TEST_CASE(layernorm_gradients_do_not_depend_on_the_thread_count) {
    // Float rows and an accumulating store: per-thread partial sums added in
    // whatever order threads finish would round differently from run to run.
    namespace cpu = simnpo::backend::cpu;
    const std::int64_t N = 300, C = 24;  // several blocks of rows
    const auto size = [](std::int64_t n) { return static_cast<std::size_t>(n); };
    simnpo::Rng rng(5);
    const auto draw = [&](std::size_t n) {
        std::vector<float> v(n);
        for (auto& x : v) x = static_cast<float>(rng.normal(0.0, 1.0));
        return v;
    };
    const auto inp = draw(size(N * C)), dout = draw(size(N * C)), weight = draw(size(C)), bias = draw(size(C));
    std::vector<float> out(size(N * C)), mean(size(N)), rstd(size(N));
    cpu::layernorm_forward(cpu::Tag{}, out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(),
                           N, C, 1e-5);
    simnpo::testing::ScopedThreads scope(1);
    const auto backward = [&](int threads) {
        scope.set(threads);
        std::vector<float> grads(size(N * C + 2 * C), 0.25f);  // dinp, dweight, dbias, accumulated into
        cpu::layernorm_backward(cpu::Tag{}, grads.data(), grads.data() + N * C, grads.data() + N * C + C, dout.data(),
                                inp.data(), weight.data(), mean.data(), rstd.data(), N, C,
                                simnpo::GradStore::accumulate);
        return grads;
    };
    const auto one = backward(1);
    for (const int threads : {2, 3, 1, 2}) BOOST_TEST((backward(threads) == one));
}

BOOST_AUTO_TEST_SUITE_END()  // test_gpt_gradients
