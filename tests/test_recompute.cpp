// Activation recomputation (Recompute::blocks): a training forward keeps only
// each block's input and the backward computes the rest again, with the same
// kernels on the same inputs, so the log-probabilities and every gradient are
// the stored run's bit for bit, in both families and both precisions, on
// ragged batches; less is kept; and unlearning with it ends at the same bits.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/counting.hpp"

BOOST_AUTO_TEST_SUITE(test_recompute)

namespace {

using simnpo::Precision;
using simnpo::data::Example;
using simnpo::model::Recompute;
using Gpt = simnpo::model::Gpt<simnpo::cpu, float>;
using Llama = simnpo::model::Llama<simnpo::cpu, float>;

// Ragged: prompts of 1-4 tokens, answers of 1-6.
std::vector<Example> ragged(std::int64_t vocab, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<Example> examples(5);
    for (auto& e : examples) {
        for (std::uint32_t k = 0; k < 1 + rng() % 4; ++k) e.prompt_ids.push_back(static_cast<std::int32_t>(rng() % vocab));
        for (std::uint32_t k = 0; k < 1 + rng() % 6; ++k) e.answer_ids.push_back(static_cast<std::int32_t>(rng() % vocab));
    }
    return examples;
}

struct Pass {
    std::vector<float> logprobs, grads;
    std::size_t kept = 0;
};

template <class Model>
Pass run(Model& model, const simnpo::data::Batch& batch, Recompute recompute) {
    model.set_recompute(recompute);
    model.forward(batch);
    Pass pass{model.logprobs(), {}, model.activation_bytes()};
    std::vector<float> weights(pass.logprobs.size());
    for (std::size_t n = 0; n < weights.size(); ++n) weights[n] = 0.25f + 0.5f * static_cast<float>(n % 3);
    model.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
    pass.grads.assign(model.grads().begin(), model.grads().end());
    return pass;
}

// The stored and the recomputed pass; returns the bytes each kept.
template <class Model>
std::pair<std::size_t, std::size_t> check_same_bits(Model& model, const std::vector<Example>& examples,
                                                    const std::string& what) {
    const auto batch = simnpo::data::make_batch(examples);
    const Pass stored = run(model, batch, Recompute::none), recomputed = run(model, batch, Recompute::blocks);
    BOOST_TEST((recomputed.logprobs == stored.logprobs), what);
    BOOST_TEST((recomputed.grads == stored.grads), what);
    BOOST_TEST(recomputed.kept < stored.kept, what);
    return {stored.kept, recomputed.kept};
}

}  // namespace

BOOST_AUTO_TEST_CASE(recomputed_blocks_give_the_stored_gradients_bit_for_bit) {
    for (const Precision precision : {Precision::fp32, Precision::bf16}) {
        const std::string p = precision == Precision::bf16 ? " bf16" : " fp32";
        Gpt gpt({.vocab_size = 37, .n_positions = 16, .n_embd = 32, .n_layer = 4, .n_head = 2});
        simnpo::model::init_weights(gpt, 3);
        gpt.set_precision(precision);
        const auto [stored, recomputed] = check_same_bits(gpt, ragged(37, 1), "gpt2" + p);
        // Four blocks: the stored run keeps the 5 block inputs and 4 blocks' activations
        // (about 15 hidden widths a token each), recomputation the inputs and one block's.
        BOOST_TEST(2 * recomputed < stored, "gpt2: " << recomputed << " bytes kept against " << stored);
        // The Llama family: grouped-query attention, a sliding window (mistral), biases (qwen2), fused projections (phi3).
        for (const std::string variant : {"llama3", "mistral", "qwen2", "phi3"}) {
            auto llama = simnpo::model::load<Llama>(SIMNPO_FIXTURES_DIR "/llama/" + variant);
            llama.set_precision(precision);
            check_same_bits(llama, ragged(llama.config().vocab_size, 2), variant + p);
        }
    }
}

BOOST_AUTO_TEST_CASE(unlearning_with_recomputation_ends_at_the_same_bits) {
    const auto forget = simnpo::testing::counting(1, 1), retain = simnpo::testing::counting(2, -1);
    Gpt start({.vocab_size = 16, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2});
    simnpo::model::init_weights(start, 5);
    const simnpo::loss::SimNPO_KL objective{};
    const simnpo::train::Options options{.steps = 3, .batch_size = 4, .seed = 1};
    Gpt stored = start, recomputed = start;
    recomputed.set_recompute(Recompute::blocks);
    simnpo::train::unlearn(stored, objective, simnpo::optim::AdamW({.lr = 1e-3}), forget, retain, options);
    simnpo::train::unlearn(recomputed, objective, simnpo::optim::AdamW({.lr = 1e-3}), forget, retain, options);
    BOOST_TEST((recomputed.params() == stored.params()));
    BOOST_TEST((stored.params() != start.params()));
}

BOOST_AUTO_TEST_CASE(recompute_names_its_choices) {
    BOOST_TEST((simnpo::model::parse_recompute("blocks", "--recompute") == Recompute::blocks));
    BOOST_CHECK_EXCEPTION(simnpo::model::parse_recompute("layers", "--recompute"), simnpo::Error,
                          [](const simnpo::Error& e) {
                              return std::string(e.what()) == "--recompute: recompute must be none or blocks, not 'layers'";
                          });
}

BOOST_AUTO_TEST_SUITE_END()  // test_recompute
