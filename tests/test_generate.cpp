// The KV-cache decoder and greedy generation, against Gpt::forward (itself
// checked against PyTorch in test_gpt_reference): the same logits at every
// position, and each generated token the argmax of a full forward over its prefix.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include <simnpo.hpp>

#include "support/error_message.hpp"

BOOST_AUTO_TEST_SUITE(test_generate)

namespace {

using simnpo::testing::message_has;
using Ids = std::vector<std::int32_t>;

simnpo::model::Config small_config() {
    return {.vocab_size = 23, .n_positions = 16, .n_embd = 12, .n_layer = 2, .n_head = 3};
}

// Large random values (not GPT-2's init), so that the next-token
// distributions are far from uniform and the argmax is well separated.
template <class Scalar>
simnpo::model::Gpt<simnpo::cpu, Scalar> random_model(std::uint64_t seed) {
    simnpo::model::Gpt<simnpo::cpu, Scalar> model(small_config());
    simnpo::Rng rng(seed);
    for (const auto& slot : model.layout().slots()) {
        const bool layernorm_weight = slot.name.find("ln_") != std::string::npos && slot.name.ends_with(".weight");
        for (std::size_t i = 0; i < slot.size; ++i)
            model.params()[slot.offset + i] =
                static_cast<Scalar>(layernorm_weight ? 1.0 + rng.normal(0.0, 0.2) : rng.normal(0.0, 0.5));
    }
    return model;
}

// Logits [n - 1, V] of the forward over `sequence`, every position scored.
template <class Scalar>
std::vector<Scalar> forward_logits(simnpo::model::Gpt<simnpo::cpu, Scalar>& model, const Ids& sequence) {
    const simnpo::data::Example example{{sequence.front()}, Ids(sequence.begin() + 1, sequence.end())};
    model.forward(simnpo::data::make_batch(std::span(&example, 1)), simnpo::model::Logits::keep);
    return {model.logits().begin(), model.logits().end()};
}

std::int32_t argmax(std::span<const float> row) {
    return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace

BOOST_AUTO_TEST_CASE(decoder_logits_match_the_forward_at_every_position) {
    auto model = random_model<double>(5);
    const Ids sequence = {3, 17, 0, 22, 9, 9, 1, 14, 5, 20, 11, 2, 7, 16, 4, 8};  // n_positions tokens
    const auto reference = forward_logits(model, sequence);
    const std::int64_t V = model.config().vocab_size;
    simnpo::model::Decoder<simnpo::model::Gpt<simnpo::cpu, double>> decoder(model);
    double worst = 0.0;
    for (std::size_t t = 0; t + 1 < sequence.size(); ++t) {
        const auto& logits = decoder.feed(sequence[t]);
        BOOST_REQUIRE_EQUAL(logits.size(), V);
        for (std::int64_t v = 0; v < V; ++v)
            worst = std::max(worst, std::abs(logits[v] - reference[t * V + v]));
    }
    BOOST_TEST(worst < 1e-10);
    BOOST_TEST(decoder.position() == 15);
    decoder.feed(sequence.back());
    BOOST_CHECK_EXCEPTION(decoder.feed(1), simnpo::Error, message_has({"already n_positions = 16"}));
    decoder.reset();
    BOOST_TEST(std::abs(decoder.feed(sequence[0])[4] - reference[4]) < 1e-10);
    BOOST_CHECK_EXCEPTION(decoder.feed(23), simnpo::Error, message_has({"token id 23 is outside the vocabulary"}));
}

namespace {

// The largest |decoder − forward| over a sequence's logits, and the largest |logit|.
template <class Model>
std::pair<double, double> decoder_against_forward(Model& model, const Ids& sequence) {
    const simnpo::data::Example example{{sequence.front()}, Ids(sequence.begin() + 1, sequence.end())};
    model.forward(simnpo::data::make_batch(std::span(&example, 1)), simnpo::model::Logits::keep);
    const std::vector<float> reference(model.logits().begin(), model.logits().end());
    const std::int64_t V = model.config().vocab_size;
    simnpo::model::Decoder<Model> decoder(model);
    double worst = 0.0, scale = 0.0;
    for (std::size_t t = 0; t + 1 < sequence.size(); ++t) {
        const auto& logits = decoder.feed(sequence[t]);
        for (std::int64_t v = 0; v < V; ++v) {
            const auto expected = static_cast<double>(reference[static_cast<std::size_t>(t) * V + v]);
            worst = std::max(worst, std::abs(static_cast<double>(logits[v]) - expected));
            scale = std::max(scale, std::abs(expected));
        }
    }
    return {worst, scale};
}

}  // namespace

// In BF16 mode the decoder multiplies the same rounded weights and rounded
// activations as the forward, with fp32 sums in another order (a row at a
// time): the logits agree to fp32 sums' rounding, 1e-5 of their scale here,
// far inside the BF16 mode's own distance from fp32, which is also checked.
BOOST_AUTO_TEST_CASE(decoders_compute_in_the_models_precision) {
    auto gpt = random_model<float>(5);
    auto llama = simnpo::model::load<simnpo::model::Llama<simnpo::cpu, float>>(SIMNPO_FIXTURES_DIR "/llama/llama3");
    const Ids sequence = {3, 17, 0, 22, 9, 9, 1, 14, 5, 20, 11, 2, 7, 16, 4, 8};
    const auto check = [&](auto& model, const char* what) {
        model.set_precision(simnpo::Precision::bf16);
        const auto [worst, scale] = decoder_against_forward(model, sequence);
        BOOST_TEST(worst <= 1e-5 * scale, what << ": |decoder - forward| " << worst << ", logits up to " << scale);
        // The decoder in BF16 against the forward in fp32: the mode is in effect.
        auto fp32 = model;
        fp32.set_precision(simnpo::Precision::fp32);
        const simnpo::data::Example example{{sequence.front()}, Ids(sequence.begin() + 1, sequence.end())};
        fp32.forward(simnpo::data::make_batch(std::span(&example, 1)), simnpo::model::Logits::keep);
        simnpo::model::Decoder<std::remove_cvref_t<decltype(model)>> decoder(model);
        double apart = 0.0;
        const auto& logits = decoder.feed(sequence[0]);
        for (std::int64_t v = 0; v < model.config().vocab_size; ++v)
            apart = std::max(apart, std::abs(static_cast<double>(logits[v] - fp32.logits()[static_cast<std::size_t>(v)])));
        BOOST_TEST(apart > 1e-3 * scale, what << ": BF16 decoding gave fp32's logits (" << apart << ")");
        BOOST_TEST_MESSAGE(what << ": |decoder - forward| " << worst << " in BF16, " << apart << " from fp32; scale "
                                << scale);
    };
    check(gpt, "gpt2");
    check(llama, "llama3");
}

BOOST_AUTO_TEST_CASE(greedy_tokens_are_the_argmax_of_a_full_forward_over_the_prefix) {
    auto model = random_model<float>(11);
    for (const Ids& prompt : {Ids{4}, Ids{1, 2, 3}, Ids{21, 0, 13, 13, 6}}) {
        const auto generated = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt),
                                                              {.max_new_tokens = 8});
        BOOST_TEST(generated.size() == 8u);
        Ids sequence = prompt;
        for (const auto token : generated) {
            sequence.push_back(0);  // a placeholder target: only the logits of the last position are read
            const auto logits = forward_logits(model, sequence);
            const std::int64_t V = model.config().vocab_size;
            const std::span<const float> last(logits.data() + (sequence.size() - 2) * V, V);
            BOOST_TEST(token == argmax(last));
            sequence.back() = token;
        }
    }
}

BOOST_AUTO_TEST_CASE(generation_stops_at_the_stop_token_the_limit_and_n_positions) {
    auto model = random_model<float>(11);
    const Ids prompt = {1, 2, 3};
    const auto free = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt), {.max_new_tokens = 6});
    BOOST_REQUIRE_EQUAL(free.size(), 6u);
    // Stopping at the third token's id keeps what came before its first occurrence.
    const auto stop = free[2];
    const auto first = std::find(free.begin(), free.end(), stop) - free.begin();
    const auto stopped = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt),
                                                        {.max_new_tokens = 6, .stop_token = stop});
    BOOST_TEST(stopped == Ids(free.begin(), free.begin() + first), boost::test_tools::per_element());
    // 16 positions: a 3-token prompt leaves room for 13 tokens to be read, so 14 come out.
    const auto long_run = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt),
                                                         {.max_new_tokens = 100});
    BOOST_TEST(long_run.size() == 14u);
    BOOST_TEST(simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt), {.max_new_tokens = 0}).empty());
}

BOOST_AUTO_TEST_CASE(batched_generation_equals_one_by_one_and_names_a_bad_prompt) {
    auto model = random_model<float>(3);
    const std::vector<Ids> prompts = {{4}, {1, 2, 3}, {21, 0, 13}, {7, 7}};
    const auto batched = simnpo::model::generate_greedy(model, std::span<const Ids>(prompts), {.max_new_tokens = 5});
    BOOST_REQUIRE_EQUAL(batched.size(), prompts.size());
    for (std::size_t i = 0; i < prompts.size(); ++i)
        BOOST_TEST(batched[i] == simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompts[i]),
                                                                {.max_new_tokens = 5}),
                   boost::test_tools::per_element());
    const std::vector<Ids> bad = {{1}, {}};
    BOOST_CHECK_EXCEPTION(simnpo::model::generate_greedy(model, std::span<const Ids>(bad)), simnpo::Error,
                          message_has({"prompt 2: generate_greedy: empty prompt"}));
    const Ids too_long(17, 1);
    BOOST_CHECK_EXCEPTION(simnpo::model::generate_greedy(model, std::span<const std::int32_t>(too_long)), simnpo::Error,
                          message_has({"longer than n_positions = 16"}));
}

// Issue 16: a model with a NaN or Inf weight (or weights large enough to
// overflow) generated token 0 at every step, as NUL-byte answers.
BOOST_AUTO_TEST_CASE(non_finite_logits_are_an_error_naming_the_prompt) {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        auto model = random_model<float>(4);
        model.param("ln_f.bias")[0] = bad;
        const std::vector<Ids> prompts = {{4}, {1, 2, 3}};
        BOOST_CHECK_EXCEPTION(
            simnpo::model::generate_greedy(model, std::span<const Ids>(prompts), {.max_new_tokens = 5}), simnpo::Error,
            message_has({"prompt 1: generate_greedy: the model's logits are not finite after 1 tokens"}));
    }
}

BOOST_AUTO_TEST_SUITE_END()  // test_generate
