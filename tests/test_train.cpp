// The training and unlearning loops: data order, an unlearning run that must
// forget and keep, exact resumption from a checkpoint, the NaN guard,
// callbacks, gradient accumulation and option errors.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include <simnpo.hpp>

#include "support/same_bits.hpp"
#include "support/counting.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_train)

namespace sl = simnpo::loss;
namespace st = simnpo::train;
namespace fs = std::filesystem;
using simnpo::data::Example;
using simnpo::testing::TempDir;
using simnpo::testing::same_bits;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

namespace {

simnpo::model::Config config() {
    return {.vocab_size = 16, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2};
}

using simnpo::testing::counting;

const std::vector<Example> forget_set = counting(1, 1);
const std::vector<Example> retain_set = counting(2, -1);

// Mean per-token log-likelihood of a set.
double mean_token_logprob(Model& model, const std::vector<Example>& examples) {
    model.forward(simnpo::data::make_batch(examples));
    const auto sums = model.sequence_logprobs();
    double total = 0.0, tokens = 0.0;
    for (std::size_t i = 0; i < examples.size(); ++i) {
        total += sums[i];
        tokens += static_cast<double>(examples[i].answer_ids.size());
    }
    return total / tokens;
}

// A model that has learned both tasks, made once.
const Model& trained() {
    static const Model model = [] {
        simnpo::set_threads(1);
        Model m(config());
        simnpo::model::init_weights(m, 5);
        std::vector<Example> both = forget_set;
        both.insert(both.end(), retain_set.begin(), retain_set.end());
        st::train(m, simnpo::optim::AdamW({.lr = 3e-3, .weight_decay = 0.0}), both, {.epochs = 60, .batch_size = 8});
        return m;
    }();
    return model;
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_pass_takes_every_example_once_in_a_seeded_order) {
    st::DataOrder order(10, 0, 4, 7);
    BOOST_TEST(order.batches_per_pass() == 3);
    for (std::int64_t pass = 0; pass < 3; ++pass) {
        std::multiset<std::size_t> seen;
        for (std::int64_t j = 0; j < 3; ++j) {
            const auto batch = order.forget_batch(pass * 3 + j);
            BOOST_TEST(batch.size() == (j < 2 ? 4u : 2u));
            seen.insert(batch.begin(), batch.end());
        }
        BOOST_TEST(seen.size() == 10u);
        BOOST_TEST(std::set<std::size_t>(seen.begin(), seen.end()).size() == 10u);
    }
    // Passes are shuffled differently; the same seed gives the same order, another seed another.
    st::DataOrder same(10, 0, 4, 7), other(10, 0, 4, 8);
    BOOST_TEST(order.forget_batch(0) != order.forget_batch(3));
    BOOST_TEST(same.forget_batch(4) == order.forget_batch(4));
    BOOST_TEST(other.forget_batch(0) != order.forget_batch(0));
}

// Padding work of a pass: each batch is padded to its longest example.
double padding_efficiency(st::DataOrder& order, std::int64_t pass, const std::vector<std::size_t>& lengths) {
    double used = 0.0, padded = 0.0;
    for (std::int64_t j = 0; j < order.batches_per_pass(); ++j) {
        std::size_t longest = 0;
        const auto batch = order.forget_batch(pass * order.batches_per_pass() + j);
        for (const auto i : batch) {
            used += static_cast<double>(lengths[i]);
            longest = std::max(longest, lengths[i]);
        }
        padded += static_cast<double>(longest * batch.size());
    }
    return used / padded;
}

BOOST_AUTO_TEST_CASE(grouping_by_length_keeps_every_example_once_and_pads_little) {
    std::vector<std::size_t> lengths;
    simnpo::Rng rng(5);
    for (int i = 0; i < 1003; ++i) lengths.push_back(1 + rng.below(100));
    st::DataOrder grouped(lengths.size(), 0, 10, 7, lengths), plain(lengths.size(), 0, 10, 7);
    BOOST_TEST(grouped.batches_per_pass() == 101);
    for (std::int64_t pass = 0; pass < 2; ++pass) {
        std::multiset<std::size_t> seen;
        std::size_t partial = 0, widest_spread = 0;
        for (std::int64_t j = 0; j < 101; ++j) {
            const auto batch = grouped.forget_batch(pass * 101 + j);
            if (batch.size() != 10u) ++partial;
            seen.insert(batch.begin(), batch.end());
            std::size_t shortest = 1000, longest = 0;
            for (const auto i : batch) {
                shortest = std::min(shortest, lengths[i]);
                longest = std::max(longest, lengths[i]);
            }
            // Groups of 500 sorted: neighbours in a group differ little (the last group holds 3).
            if (batch.size() == 10u) widest_spread = std::max(widest_spread, longest - shortest);
        }
        BOOST_TEST(partial == 1u);
        BOOST_TEST(seen.size() == lengths.size());
        BOOST_TEST(std::set<std::size_t>(seen.begin(), seen.end()).size() == lengths.size());
        BOOST_TEST(widest_spread <= 6u);
        BOOST_TEST(padding_efficiency(grouped, pass, lengths) > 0.95);
        BOOST_TEST(padding_efficiency(plain, pass, lengths) < 0.7);
    }
    // Seeded like the plain order: the same seed, the same batches; passes differ.
    st::DataOrder same(lengths.size(), 0, 10, 7, lengths);
    BOOST_TEST(same.forget_batch(150) == grouped.forget_batch(150));
    BOOST_TEST(grouped.forget_batch(0) != grouped.forget_batch(101));
    BOOST_CHECK_EXCEPTION(st::DataOrder(10, 0, 4, 7, {1, 2, 3}), simnpo::Error,
                          [](const simnpo::Error& e) { return std::string(e.what()) == "DataOrder: 3 lengths for 10 examples"; });
}

BOOST_AUTO_TEST_CASE(the_retain_set_cycles_and_a_small_set_is_one_batch) {
    st::DataOrder order(20, 5, 2, 3);
    // 2 a batch from a stream of permutations of 5: batches 0, 1 and the first
    // half of 2 are one permutation.
    std::multiset<std::size_t> first_pass;
    for (std::int64_t m = 0; m < 2; ++m)
        for (const auto i : order.retain_batch(m)) first_pass.insert(i);
    first_pass.insert(order.retain_batch(2)[0]);
    BOOST_TEST(std::set<std::size_t>(first_pass.begin(), first_pass.end()).size() == 5u);

    st::DataOrder small(20, 3, 8, 3);
    for (std::int64_t m = 0; m < 4; ++m) {
        const auto batch = small.retain_batch(m);
        BOOST_TEST(std::set<std::size_t>(batch.begin(), batch.end()).size() == 3u);
    }
    BOOST_TEST(st::DataOrder(20, 0, 8, 3).retain_batch(0).empty());
}

BOOST_AUTO_TEST_CASE(unlearning_forgets_the_forget_set_and_keeps_the_retain_set) {
    Model model = trained();
    const double forget_before = mean_token_logprob(model, forget_set);
    const double retain_before = mean_token_logprob(model, retain_set);
    // The tasks were learned: far above the uniform −log 16 = −2.77.
    BOOST_TEST_REQUIRE(forget_before > -0.5);
    BOOST_TEST_REQUIRE(retain_before > -0.5);
    const sl::SimNPO_GD objective{sl::SimNPO({.beta = 2.5}), sl::NLL{}};
    st::unlearn(model, objective, simnpo::optim::AdamW({.lr = 1e-3}), forget_set, retain_set,
                {.steps = 30, .batch_size = 4, .seed = 1});
    const double forget_after = mean_token_logprob(model, forget_set);
    const double retain_after = mean_token_logprob(model, retain_set);
    BOOST_TEST_MESSAGE("forget " << forget_before << " -> " << forget_after << ", retain " << retain_before << " -> "
                                 << retain_after);
    BOOST_TEST(forget_after < forget_before - 2.0);
    BOOST_TEST(retain_after > retain_before - 0.2);
}

BOOST_AUTO_TEST_CASE(a_resumed_run_matches_an_uninterrupted_one_bit_for_bit) {
    const TempDir scratch;
    const sl::NPO_GD objective{sl::NPO({.beta = 0.5}), sl::NLL{}};
    const simnpo::optim::AdamW adamw({.lr = 1e-3, .weight_decay = 0.01});
    const st::Options base{.steps = 4, .batch_size = 3, .seed = 9, .schedule = simnpo::optim::ScheduleKind::linear,
                           .warmup_steps = 1};

    Model straight = trained();
    st::unlearn(straight, objective, adamw, forget_set, retain_set, base);

    // Interrupted after 2 steps (a callback stops the run), then resumed from its checkpoint.
    Model first = trained();
    st::Options save = base;
    save.save_every = 2;
    save.checkpoint_dir = scratch.path;
    struct StopAt {
        std::int64_t step;
        bool on_step(const st::StepInfo& info) const { return info.step == step; }
    };
    const auto stopped = st::unlearn(first, objective, adamw, forget_set, retain_set, save, StopAt{2});
    BOOST_TEST(stopped.stopped);
    BOOST_TEST(fs::exists(scratch.path / "checkpoint-2" / "optimizer.safetensors"));
    BOOST_TEST(!same_bits(first, straight));

    Model resumed = trained();  // the original: the reference is frozen from it
    st::Options resume = base;
    resume.resume = scratch.path / "checkpoint-2";
    const auto summary = st::unlearn(resumed, objective, adamw, forget_set, retain_set, resume);
    BOOST_TEST(summary.steps == 4);
    BOOST_TEST(same_bits(resumed, straight));

    // A resumed run must take the same batches: another seed is refused.
    Model other = trained();
    resume.seed = 10;
    BOOST_CHECK_EXCEPTION(st::unlearn(other, objective, adamw, forget_set, retain_set, resume), simnpo::Error,
                          [](const simnpo::Error& e) { return std::string(e.what()).find("seed") != std::string::npos; });
}

BOOST_AUTO_TEST_CASE(a_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint) {
    const TempDir scratch;
    Model model = trained();
    // After step 2 a parameter turns NaN (as a diverging run would): step 3 must fail.
    struct Poison {
        Model* model;
        void on_step(const st::StepInfo& info) const {
            if (info.step == 2) model->param("ln_f.weight")[0] = std::nanf("");
        }
    };
    const st::Options options{.steps = 5, .batch_size = 4, .save_every = 1, .checkpoint_dir = scratch.path};
    BOOST_CHECK_EXCEPTION(st::unlearn(model, sl::SimNPO_GD{}, simnpo::optim::AdamW{}, forget_set, retain_set, options,
                                      Poison{&model}),
                          simnpo::Error, [](const simnpo::Error& e) {
                              BOOST_TEST_MESSAGE(e.what());
                              return std::string(e.what()).starts_with("step 3: ");
                          });
    BOOST_TEST(!fs::exists(scratch.path / "checkpoint-3"));
    for (const auto& entry : fs::directory_iterator(scratch.path))  // no temporary is left behind
        BOOST_TEST(entry.path().filename().string().find(".tmp-") == std::string::npos);
    const auto good = simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(scratch.path / "checkpoint-2");
    for (const float p : good.params()) BOOST_REQUIRE(std::isfinite(p));
}

BOOST_AUTO_TEST_CASE(callbacks_see_every_step_and_can_stop_the_run) {
    const TempDir scratch;
    Model model = trained();
    struct Recorder {
        std::vector<st::StepInfo> steps;
        st::RunInfo run;
        bool ended = false;
        void on_begin(const st::RunInfo& info) { run = info; }
        void on_step(const st::StepInfo& info) { steps.push_back(info); }
        void on_end(const st::Summary&) { ended = true; }
    } recorder;
    std::vector<std::int64_t> evaluated;
    st::EvaluateEvery every(2, [&](const st::StepInfo& info) { evaluated.push_back(info.step); });
    st::JsonlLog log(scratch.file("log.jsonl"));
    std::FILE* progress_file = std::tmpfile();
    st::ProgressBar progress(1, progress_file);
    // Linear warmup over 2 steps then linear decay to 0 at step 6.
    const st::Options options{.steps = 6, .batch_size = 4, .schedule = simnpo::optim::ScheduleKind::linear,
                              .warmup_steps = 2};
    st::unlearn(model, sl::SimNPO_GD{}, simnpo::optim::SGD({.lr = 0.1}), forget_set, retain_set, options, recorder,
                every, log, progress);
    BOOST_TEST(recorder.ended);
    BOOST_TEST(recorder.run.total_steps == 6);
    BOOST_TEST_REQUIRE(recorder.steps.size() == 6u);
    const double expected_lr[] = {0.0, 0.05, 0.1, 0.075, 0.05, 0.025};
    for (std::size_t i = 0; i < 6; ++i) {
        BOOST_TEST(recorder.steps[i].step == static_cast<std::int64_t>(i + 1));
        BOOST_TEST(recorder.steps[i].lr == expected_lr[i], boost::test_tools::tolerance(1e-12));
        BOOST_TEST(recorder.steps[i].loss == recorder.steps[i].forget_loss + recorder.steps[i].retain_loss,
                   boost::test_tools::tolerance(1e-12));
        BOOST_TEST(recorder.steps[i].grad_norm > 0.0);
        // 3 answer tokens an example; the 10 forget examples come 4, 4, 2 a pass, the retain ones 4 a batch.
        BOOST_TEST(recorder.steps[i].tokens == (i % 3 == 2 ? 18 : 24));
    }
    BOOST_TEST(evaluated == std::vector<std::int64_t>({2, 4, 6}));

    const auto lines = simnpo::read_file(scratch.file("log.jsonl"));
    BOOST_TEST(std::count(lines.begin(), lines.end(), '\n') == 6);
    const auto first = nlohmann::json::parse(lines.substr(0, lines.find('\n')));
    for (const char* key : {"step", "epoch", "loss", "forget_loss", "retain_loss", "lr", "grad_norm", "tokens_per_s"})
        BOOST_TEST(first.contains(key), key);

    std::rewind(progress_file);
    std::string text(4096, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), progress_file));
    std::fclose(progress_file);
    BOOST_TEST(text.find("step 6/6") != std::string::npos);
    BOOST_TEST(text.find('\r') == std::string::npos);  // not a terminal: plain lines

    // A callback returning true stops the run.
    struct StopAtOnce {
        bool on_step(const st::StepInfo&) const { return true; }
    };
    const auto summary = st::unlearn(model, sl::SimNPO_GD{}, simnpo::optim::SGD({.lr = 0.1}), forget_set, retain_set,
                                     options, StopAtOnce{});
    BOOST_TEST(summary.stopped);
    BOOST_TEST(summary.steps == 1);
}

BOOST_AUTO_TEST_CASE(accumulated_micro_batches_equal_one_large_batch) {
    // Answers of equal length: the mean of two half-batch token means is the batch's.
    Model big = trained(), accumulated = trained();
    const simnpo::optim::SGD sgd({.lr = 0.05});
    st::train(big, sgd, forget_set, {.steps = 1, .batch_size = 8, .seed = 4});
    st::train(accumulated, sgd, forget_set, {.steps = 1, .batch_size = 4, .grad_accum = 2, .seed = 4});
    // Not bit for bit (the sums are grouped differently), but to float rounding.
    double largest = 0.0, moved = 0.0;
    const Model& original = trained();
    for (std::size_t i = 0; i < big.params().size(); ++i) {
        largest = std::max(largest, static_cast<double>(std::abs(big.params()[i] - accumulated.params()[i])));
        moved = std::max(moved, static_cast<double>(std::abs(big.params()[i] - original.params()[i])));
    }
    BOOST_TEST(largest < 1e-6);
    BOOST_TEST(moved > 1e-4);  // the step did move the parameters
}

BOOST_AUTO_TEST_CASE(bad_options_are_errors) {
    Model model(config());
    const simnpo::optim::AdamW adamw;
    const auto run = [&](const st::Options& options) {
        st::unlearn(model, sl::SimNPO_GD{}, adamw, forget_set, retain_set, options);
    };
    BOOST_CHECK_THROW(run({}), simnpo::Error);                                   // neither steps nor epochs
    BOOST_CHECK_THROW(run({.steps = 2, .epochs = 1}), simnpo::Error);            // both
    BOOST_CHECK_THROW(run({.steps = 2, .batch_size = 0}), simnpo::Error);
    BOOST_CHECK_THROW(run({.steps = 2, .grad_accum = 0}), simnpo::Error);
    BOOST_CHECK_THROW(run({.steps = 2, .max_grad_norm = -1.0}), simnpo::Error);
    BOOST_CHECK_THROW(run({.steps = 2, .warmup_steps = 3}), simnpo::Error);
    BOOST_CHECK_THROW(run({.steps = 2, .save_every = 1}), simnpo::Error);        // no checkpoint_dir
    BOOST_CHECK_THROW(run({.steps = 2, .resume = "/nonexistent/checkpoint"}), simnpo::Error);
    BOOST_CHECK_THROW(st::unlearn(model, sl::SimNPO_GD{}, adamw, forget_set, {}, {.steps = 1}), simnpo::Error);
    BOOST_CHECK_THROW(st::unlearn(model, sl::Objective<sl::SimNPO>{}, adamw, forget_set, retain_set, {.steps = 1}),
                      simnpo::Error);
}

BOOST_AUTO_TEST_SUITE_END()  // test_train
