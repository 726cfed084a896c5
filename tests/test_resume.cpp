// Exact resumption: for every forget loss × retain loss, a run interrupted at a
// checkpoint and resumed from it ends with the uninterrupted run's bits.
// The reference-based objectives are the hard case: the resumed run starts with
// the reference's caches empty, so what the reference returns for an example
// must not depend on which examples it was computed beside.
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/same_bits.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_resume)

namespace sl = simnpo::loss;
namespace st = simnpo::train;
using simnpo::data::Example;
using simnpo::testing::TempDir;
using simnpo::testing::same_bits;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

namespace {

// Examples of many lengths (prompts of 1-4 tokens, answers of 1-9), so that
// batches pad differently and the reference's forward shapes vary with them.
std::vector<Example> examples(std::uint64_t seed, std::size_t count) {
    simnpo::Rng rng(seed);
    std::vector<Example> set;
    for (std::size_t i = 0; i < count; ++i) {
        Example example;
        const auto prompt = 1 + rng.below(4), answer = 1 + rng.below(9);
        for (std::uint64_t k = 0; k < prompt; ++k) example.prompt_ids.push_back(static_cast<std::int32_t>(rng.below(48)));
        for (std::uint64_t k = 0; k < answer; ++k) example.answer_ids.push_back(static_cast<std::int32_t>(rng.below(48)));
        set.push_back(example);
    }
    return set;
}

const std::vector<Example> forget_set = examples(1, 40);
const std::vector<Example> retain_set = examples(2, 56);

Model original() {
    Model model({.vocab_size = 48, .n_positions = 16, .n_embd = 64, .n_layer = 2, .n_head = 4});
    simnpo::model::init_weights(model, 3);
    return model;
}

struct StopAt {
    std::int64_t step;
    bool on_step(const st::StepInfo& info) const { return info.step == step; }
};

template <class Objective>
void check_exact_resume(const Objective& objective, const std::string& name) {
    BOOST_TEST_CONTEXT(name) {
        const TempDir scratch;
        const simnpo::optim::AdamW adamw({.lr = 3e-3, .weight_decay = 0.01});
        const auto& retain = Objective::has_retain ? retain_set : std::vector<Example>{};
        const st::Options base{.steps = 8, .batch_size = 12, .seed = 4};

        Model straight = original();
        st::unlearn(straight, objective, adamw, forget_set, retain, base);

        Model first = original();
        st::Options save = base;
        save.save_every = 1;
        save.checkpoint_dir = scratch.path;
        st::unlearn(first, objective, adamw, forget_set, retain, save, StopAt{5});

        // The resumed run is given the original model: its reference is frozen from it.
        Model resumed = original();
        st::Options resume = base;
        resume.resume = scratch.path / "checkpoint-3";
        st::unlearn(resumed, objective, adamw, forget_set, retain, resume);
        BOOST_TEST(!same_bits(resumed, original()));
        BOOST_TEST(same_bits(resumed, straight));
    }
}

template <class Forget>
void check_every_retain_loss(const Forget& forget, const std::string& name) {
    check_exact_resume(sl::Objective<Forget>(forget), name);
    check_exact_resume(sl::Objective<Forget, sl::NLL>(forget, sl::NLL{}), name + "+nll");
    check_exact_resume(sl::Objective<Forget, sl::KL>(forget, sl::KL{}), name + "+kl");
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_objective_resumes_bit_for_bit) {
    check_every_retain_loss(sl::GradAscent{}, "ga");
    check_every_retain_loss(sl::NPO({.beta = 0.5}), "npo");
    check_every_retain_loss(sl::SimNPO({.beta = 2.5, .gamma = 0.5}), "simnpo");
    check_every_retain_loss(sl::DPO({{1, 2, 3}, {4, 5}, {6}}, {.beta = 0.5}), "dpo");
}

BOOST_AUTO_TEST_SUITE_END()  // test_resume
