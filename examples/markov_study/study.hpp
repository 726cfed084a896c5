// The paper's mixture-of-Markov-chains study (Fan et al., 2024, §5): the data,
// the three models (two originals and the retrained gold standard, cached on
// disk), and the unlearning runs with their KL trajectories.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "../study_family.hpp"

namespace study {

using simnpo::data::Example;
namespace sl = simnpo::loss;

struct Settings {
    // Data: sequences per source, their lengths, and the chains' leakage.
    std::int64_t retain_sequences = 10000;
    std::int64_t forget_sequences = 5000;  // of each forget source
    std::int64_t length = 20;
    std::int64_t short_length = 5;          // forget2's in scenario A
    double leakage = 0.2;
    double train_fraction = 0.8;
    std::uint64_t seed = 0;
    // Model: GPT-2-shaped, or the Llama of its size (in_family); one token per state.
    std::string family = "gpt2";
    std::int64_t n_layer = 4;
    std::int64_t n_head = 4;
    std::int64_t n_embd = 128;
    // Training of the original and retrained models (AdamW).
    double train_lr = 5e-4;
    std::int64_t train_batch = 128;
    std::int64_t train_epochs = 5;
    // Unlearning (AdamW), every method.
    double beta = 1.0;
    double unlearn_lr = 5e-4;
    std::int64_t unlearn_batch = 4;
    std::int64_t unlearn_steps = 50;
    // Steps between KL evaluations. An evaluation (61,000 test tokens) costs
    // about 0.8 s on 2 cores, so every step would take the run past 10 minutes.
    std::int64_t eval_every = 2;
    // The table compares methods at their best within this retain damage,
    // KL(retrained ‖ model) on retain test, about 2.5x the original model's.
    double retain_budget = 0.05;

    // The small configuration of the ctest: the same study, in seconds.
    static Settings quick() {
        Settings s;
        s.retain_sequences = 1000;
        s.forget_sequences = 500;
        s.n_layer = 2;
        s.n_head = 2;
        s.n_embd = 32;
        s.train_batch = 32;
        s.train_epochs = 4;
        s.train_lr = 3e-3;
        s.unlearn_steps = 10;
        return s;
    }

    nlohmann::json data_json() const {
        return {{"retain_sequences", retain_sequences}, {"forget_sequences", forget_sequences},
                {"length", length},                     {"short_length", short_length},
                {"leakage", leakage},                   {"train_fraction", train_fraction},
                {"seed", seed},                         {"states", 10},
                {"subsets", {{"retain", {0, 1, 2}}, {"forget1", {3, 4, 5}}, {"forget2", {6, 7, 8}}}}};
    }
    nlohmann::json model_json() const {
        return {{"family", family}, {"n_layer", n_layer}, {"n_head", n_head}, {"n_embd", n_embd},
                {"vocab_size", 10}, {"n_positions", length}};
    }
    nlohmann::json training_json() const {
        return {{"optimizer", "adamw"}, {"lr", train_lr}, {"batch_size", train_batch}, {"epochs", train_epochs},
                {"weight_decay", simnpo::optim::AdamW::Params{}.weight_decay}, {"max_grad_norm", 1.0}};
    }
    nlohmann::json unlearning_json() const {
        return {{"optimizer", "adamw"}, {"beta", beta}, {"lr", unlearn_lr}, {"batch_size", unlearn_batch},
                {"steps", unlearn_steps}, {"eval_every", eval_every}, {"max_grad_norm", 1.0},
                {"retain_budget", retain_budget}};
    }
    nlohmann::json to_json() const {
        return {{"data", data_json()}, {"model", model_json()}, {"training", training_json()},
                {"unlearning", unlearning_json()}};
    }
};

// The three sources' train and test splits for one forget2 length.
struct Sources {
    simnpo::data::Split retain, forget1, forget2;
};

// Each source draws from its own seeded stream, so the retain and forget1 data
// are the same in both scenarios and one retrained model serves both.
inline Sources make_sources(const Settings& s, std::int64_t forget2_length) {
    const auto draw = [&](std::vector<std::int32_t> subset, std::int64_t count, std::int64_t length,
                          std::uint64_t stream) {
        const simnpo::data::MarkovSource source(std::move(subset), s.leakage);
        simnpo::Rng rng(s.seed * 16 + stream);
        return simnpo::data::split(
            source.sample(static_cast<std::size_t>(count), static_cast<std::size_t>(length), rng), s.train_fraction);
    };
    return {draw({0, 1, 2}, s.retain_sequences, s.length, 1), draw({3, 4, 5}, s.forget_sequences, s.length, 2),
            draw({6, 7, 8}, s.forget_sequences, forget2_length, 3)};
}

inline std::vector<Example> concat(std::initializer_list<const std::vector<Example>*> parts) {
    std::vector<Example> all;
    for (const auto* part : parts) all.insert(all.end(), part->begin(), part->end());
    return all;
}

// A model trained from its family's initialisation on `examples` (token-mean
// NLL), or the one a previous run cached under `cache` with the same settings.
// The settings (the family among them) travel in the model's config.json; the
// directory's name is their hash, so changed settings train a new model beside the old.
template <class Family>
Model<Family> trained_model(const std::string& name, const std::vector<Example>& examples, const Settings& s,
                            const std::filesystem::path& cache, std::FILE* log) {
    const nlohmann::json key = {{"name", name},
                                {"data", s.data_json()},
                                {"model", s.model_json()},
                                {"training", s.training_json()}};
    std::uint64_t fnv1a = 0xcbf29ce484222325ull;  // a hash that is the same in every build
    for (const unsigned char c : key.dump()) fnv1a = (fnv1a ^ c) * 0x100000001b3ull;
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a));
    const std::filesystem::path dir = cache / (name + "-" + hash);
    if (std::filesystem::exists(dir / "config.json")) {
        auto model = simnpo::model::load<Model<Family>>(dir);
        if (model.config().extra.value("markov_study", nlohmann::json()) != key)
            simnpo::fail(dir.string(), ": the cached model was trained with other settings; delete the directory");
        std::fprintf(log, "%s model: loaded from %s\n", name.c_str(), dir.c_str());
        return model;
    }
    simnpo::model::Config gpt2;
    gpt2.vocab_size = 10;
    gpt2.n_positions = s.length;
    gpt2.n_embd = s.n_embd;
    gpt2.n_layer = s.n_layer;
    gpt2.n_head = s.n_head;
    gpt2.validate("markov_study");
    auto config = in_family<Family>(gpt2);
    config.extra = {{"markov_study", key}};
    Model<Family> model(config);
    simnpo::model::init_weights(model, s.seed);
    std::fprintf(log, "%s model: training on %zu sequences, %lld epochs\n", name.c_str(), examples.size(),
                 static_cast<long long>(s.train_epochs));
    const simnpo::optim::AdamW adamw({.lr = s.train_lr});
    simnpo::train::Options options;
    options.epochs = s.train_epochs;
    options.batch_size = s.train_batch;
    options.seed = s.seed;
    simnpo::train::train(model, adamw, examples, options, simnpo::train::ProgressBar(0, log));
    simnpo::model::save(model, dir);
    return model;
}

// How a step's forget gradient was shared between the forget1 and forget2
// rows of its batch. Row i's gradient is dL/dℓ_θ(i) · ∇ℓ_θ(i), a sum over its
// |y_i| tokens: its weight in the step is |dL/dℓ_θ(i)|·|y_i|.
struct Allocation {
    double forget1_gradient = 0.0, forget2_gradient = 0.0;  // summed row weights
    std::int64_t forget1_rows = 0, forget2_rows = 0;
};

inline Allocation allocation(const std::vector<sl::RowReport>& rows, const std::vector<std::size_t>& indices,
                             std::size_t forget1_size) {
    Allocation a;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const double weight = std::abs(rows[i].weight) * static_cast<double>(rows[i].length);
        if (indices[i] < forget1_size) {
            a.forget1_gradient += weight;
            ++a.forget1_rows;
        } else {
            a.forget2_gradient += weight;
            ++a.forget2_rows;
        }
    }
    return a;
}

// A KL trajectory: KL(retrained ‖ model) on each test split at each evaluated
// step; and each step's allocation of the forget gradient.
struct Trajectory {
    std::vector<std::int64_t> step;
    std::vector<double> kl_retain, kl_forget1, kl_forget2;
    std::vector<Allocation> allocation;  // one per step, from step 1
    double seconds = 0.0;
};

// The retrained model as the reference of the evaluation, with the test splits.
template <class Family>
class Evaluator {
public:
    Evaluator(const Model<Family>& retrained, const Sources& sources)
        : reference_(retrained), sources_(sources) {}

    void record(Model<Family>& model, std::int64_t step, Trajectory& t) {
        t.step.push_back(step);
        t.kl_retain.push_back(simnpo::eval::mean_token_kl(reference_, model, sources_.retain.test));
        t.kl_forget1.push_back(simnpo::eval::mean_token_kl(reference_, model, sources_.forget1.test));
        t.kl_forget2.push_back(simnpo::eval::mean_token_kl(reference_, model, sources_.forget2.test));
    }

private:
    sl::FrozenReference<Model<Family>> reference_;
    const Sources& sources_;
};

// Unlearns forget1-train ∪ forget2-train from a copy of `original` with one
// objective, evaluating every eval_every steps (and before the first).
template <class Family, class Objective>
Trajectory unlearn(const Model<Family>& original, const Objective& objective, const Sources& sources, const Settings& s,
                   Evaluator<Family>& evaluator) {
    const auto started = std::chrono::steady_clock::now();
    Model<Family> model = original;
    const auto forget = concat({&sources.forget1.train, &sources.forget2.train});
    const std::vector<Example> none;
    const auto& retain = Objective::has_retain ? sources.retain.train : none;
    Trajectory t;
    evaluator.record(model, 0, t);
    simnpo::train::Options options;
    options.steps = s.unlearn_steps;
    options.batch_size = s.unlearn_batch;
    options.seed = s.seed;
    const simnpo::optim::AdamW adamw({.lr = s.unlearn_lr});
    // The loop's batch order, replayed to tell which rows of a step are forget2's.
    simnpo::train::DataOrder order(forget.size(), retain.size(), options.batch_size, options.seed);
    simnpo::train::EvaluateEvery share(1, [&](const simnpo::train::StepInfo& info) {
        t.allocation.push_back(
            allocation(info.report->forget_rows, order.forget_batch(info.step - 1), sources.forget1.train.size()));
    });
    simnpo::train::EvaluateEvery evaluate(s.eval_every, [&](const simnpo::train::StepInfo& info) {
        evaluator.record(model, info.step, t);  // also at the last step
    });
    simnpo::train::unlearn(model, objective, adamw, forget, retain, options, share, evaluate);
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return t;
}

// Every method of the study on one scenario, in the order of the report.
template <class Family>
std::vector<std::pair<std::string, Trajectory>> run_methods(const Model<Family>& original, const Sources& sources,
                                                            const Settings& s, Evaluator<Family>& evaluator,
                                                            std::FILE* log) {
    std::vector<std::pair<std::string, Trajectory>> runs;
    const auto run = [&](std::string name, const auto& objective) {
        runs.emplace_back(name, unlearn(original, objective, sources, s, evaluator));
        const Trajectory& t = runs.back().second;
        std::fprintf(log, "  %-11s %5.1f s   KL retain %.4f  forget1 %.4f  forget2 %.4f at step %lld\n",
                     name.c_str(), t.seconds, t.kl_retain.back(), t.kl_forget1.back(), t.kl_forget2.back(),
                     static_cast<long long>(t.step.back()));
        std::fflush(log);
    };
    const sl::NPO npo({.beta = s.beta});
    const sl::SimNPO simnpo({.beta = s.beta});
    run("GA", sl::Objective<sl::GradAscent>{});
    run("NPO", sl::Objective<sl::NPO>{npo});
    run("SimNPO", sl::Objective<sl::SimNPO>{simnpo});
    run("GA+NLL", sl::GradDiff{});
    run("NPO+NLL", sl::NPO_GD{npo});
    run("SimNPO+NLL", sl::SimNPO_GD{simnpo});
    return runs;
}

}  // namespace study
