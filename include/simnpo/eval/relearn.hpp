#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/core/rng.hpp"
#include "simnpo/data/jsonl.hpp"
#include "simnpo/data/text.hpp"
#include "simnpo/eval/mia.hpp"
#include "simnpo/eval/privacy.hpp"
#include "simnpo/eval/rouge.hpp"
#include "simnpo/model/generate.hpp"
#include "simnpo/train/loop.hpp"

// The relearning attack (Hu et al., 2024; SimNPO §5): fine-tune an unlearned
// model on a few forget examples and watch how much of the whole forget set
// comes back. A method that only hid the knowledge gives it back in a few steps.
namespace simnpo::eval {

struct RelearnOptions {
    std::size_t subset_size = 0;  // forget examples the attacker fine-tunes on, drawn with training.seed
    std::int64_t eval_every = 0;  // a probe every N steps (0: five over the run), at step 0 and at the last
    train::Options training;      // the fine-tuning: training.steps (required), batch size, seed, clipping
    privacy::Options probe;       // the attacks' k, scoring batch size and the greedy answers' length
    bool rouge = true;            // greedy answers at each probe (the slow part)
};

// What the probe measures on the forget set after `step` relearning steps.
struct RelearnPoint {
    std::int64_t step = 0;
    double probability = 0.0;                   // TOFU's: the mean of exp(−n(answer)) over the forget set
    std::optional<double> unseen_probability;   // the same over the forget examples outside the subset
    std::optional<double> rouge_l_recall;       // of greedy answers against the answers
    privacy::Aucs auc{};                        // each attack's AUC, forget set against `holdout`
};

struct RelearnResult {
    std::vector<std::size_t> subset;  // indices into the forget set, ascending
    std::vector<RelearnPoint> points;
};

// `count` distinct indices of [0, n), uniformly at random, ascending.
inline std::vector<std::size_t> random_subset(std::size_t n, std::size_t count, std::uint64_t seed) {
    if (count == 0 || count > n) fail("relearn: the subset must hold between 1 and ", n, " examples, got ", count);
    std::vector<std::size_t> indices(n);
    std::iota(indices.begin(), indices.end(), std::size_t{0});
    Rng rng(seed);
    for (std::size_t i = 0; i < count; ++i) std::swap(indices[i], indices[i + rng.below(n - i)]);
    indices.resize(count);
    std::sort(indices.begin(), indices.end());
    return indices;
}

namespace detail {

template <model::CpuModel Model>
RelearnPoint relearn_probe(Model& model, const data::TextFormat& format,
                           std::span<const data::QuestionAnswer> forget, std::span<const data::QuestionAnswer> holdout,
                           const std::vector<bool>& in_subset, const RelearnOptions& options, std::int64_t step) {
    RelearnPoint point;
    point.step = step;
    const MiaScores members = privacy::scores(model, format, forget, options.probe, "forget set");
    point.auc = aucs(members, privacy::scores(model, format, holdout, options.probe, "holdout"));
    // n(answer) is the LOSS score: the mean NLL of the answer and its end-of-text.
    double all = 0.0, unseen = 0.0;
    std::size_t unseen_count = 0;
    for (std::size_t i = 0; i < forget.size(); ++i) {
        const double p = std::exp(-members[static_cast<std::size_t>(Attack::loss)][i]);
        all += p;
        if (!in_subset[i]) {
            unseen += p;
            ++unseen_count;
        }
    }
    point.probability = all / static_cast<double>(forget.size());
    if (unseen_count > 0) point.unseen_probability = unseen / static_cast<double>(unseen_count);
    if (options.rouge) {
        std::vector<std::vector<std::int32_t>> prompts;
        for (const auto& pair : forget) prompts.push_back(format.prompt_ids(pair.question));
        const auto answers = model::generate_greedy(
            model, std::span<const std::vector<std::int32_t>>(prompts),
            {.max_new_tokens = options.probe.max_new_tokens, .stop_token = format.end_of_answer_id()});
        double recall = 0.0;
        for (std::size_t i = 0; i < forget.size(); ++i)
            recall += rouge_l(format.tokenizer().decode(answers[i]), forget[i].answer).recall;
        point.rouge_l_recall = recall / static_cast<double>(forget.size());
    }
    return point;
}

}  // namespace detail

// Fine-tunes `model` (the NLL of DESIGN §3, with `optimizer`) on a random
// subset of `forget`, probing the whole forget set (against the non-members
// `holdout`) before the first step, every options.eval_every steps and after
// the last. The model is left relearned. `callbacks` see the fine-tuning's
// steps as train::train's do.
template <model::CpuModel Model, class Optimizer, class... Callbacks>
RelearnResult relearn(Model& model, const Optimizer& optimizer,
                      const data::TextFormat& format, std::span<const data::QuestionAnswer> forget,
                      std::span<const data::QuestionAnswer> holdout, const RelearnOptions& options,
                      Callbacks&&... callbacks) {
    const std::int64_t steps = options.training.steps;
    if (steps < 1 || options.training.epochs != 0) fail("relearn: give the fine-tuning's length as training.steps");
    if (options.eval_every < 0) fail("relearn: eval_every must not be negative");
    RelearnResult result;
    result.subset = random_subset(forget.size(), options.subset_size, options.training.seed);
    std::vector<bool> in_subset(forget.size(), false);
    std::vector<data::Example> examples;
    for (const std::size_t i : result.subset) {
        in_subset[i] = true;
        examples.push_back(format.example(forget[i].question, forget[i].answer));
        data::check_example(examples.back(), model.config(), "forget set: question " + std::to_string(i + 1));
    }
    const std::int64_t every = options.eval_every > 0 ? options.eval_every : std::max<std::int64_t>(1, steps / 5);
    const auto probe = [&](std::int64_t step) {
        result.points.push_back(detail::relearn_probe(model, format, forget, holdout, in_subset, options, step));
    };
    // The probe runs between optimizer steps: its forwards leave nothing the next step reads.
    struct Prober {
        std::int64_t every;
        const decltype(probe)& run;
        void on_step(const train::StepInfo& info) const {
            if (info.step % every == 0 || info.step == info.total_steps) run(info.step);
        }
    };
    probe(0);
    train::train(model, optimizer, std::span<const data::Example>(examples), options.training, Prober{every, probe},
                 std::forward<Callbacks>(callbacks)...);
    return result;
}

inline nlohmann::json to_json(const RelearnResult& result) {
    using nlohmann::json;
    json points = json::array();
    for (const auto& p : result.points) {
        json auc = json::object();
        for (std::size_t a = 0; a < attacks.size(); ++a) auc[attack_name(attacks[a])] = p.auc[a];
        points.push_back({{"step", p.step},
                          {"probability", p.probability},
                          {"unseen_probability", p.unseen_probability ? json(*p.unseen_probability) : json(nullptr)},
                          {"rouge_l_recall", p.rouge_l_recall ? json(*p.rouge_l_recall) : json(nullptr)},
                          {"auc", auc}});
    }
    return {{"subset", result.subset}, {"points", points}};
}

}  // namespace simnpo::eval
