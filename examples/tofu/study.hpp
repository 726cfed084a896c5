// The TOFU study's parts: settings, the cached tokenizer and models, the
// unlearning methods, and the table.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "../study_family.hpp"

namespace study {

namespace fs = std::filesystem;
namespace sl = simnpo::loss;
using simnpo::data::Example;
using nlohmann::json;

struct Settings {
    std::string split = "forget10";
    std::size_t vocab_size = 4096;  // BPE trained on full.jsonl's questions and answers
    std::string family = "gpt2";    // or "llama": the Llama of the same size (in_family)
    std::int64_t n_embd = 128, n_layer = 4, n_head = 4, n_positions = 256;
    // The target (full) and retain (retain90) models, from their family's initialisation.
    std::int64_t train_epochs = 30, train_batch = 8, train_warmup = 100;
    double train_lr = 2e-3;
    // Subsets (0: all) of full.jsonl's leading rows used as the retain data, for the quick run.
    std::size_t retain_rows = 0;
    // Unlearning: epochs over the forget set, one forget and one retain batch a step.
    // Tuned once on forget05 (lr 1e-4/5 epochs, 3e-4/10, 1e-3/5; retain weight 1 or 0.25), then fixed.
    std::int64_t unlearn_epochs = 10, unlearn_batch = 16;
    double unlearn_lr = 3e-4;
    double npo_beta = 0.1, simnpo_beta = 2.5, simnpo_gamma = 0.0, retain_weight = 1.0;
    std::int64_t max_new_tokens = 200;
    std::uint64_t seed = 0;
    // The relearning attack on each unlearned model: AdamW on a tenth of the
    // forget set (at least one example), probed every relearn_every steps.
    std::int64_t relearn_steps = 30, relearn_every = 10, relearn_batch = 8;
    double relearn_lr = 1e-4;

    static Settings quick() {
        Settings s;
        s.split = "forget01";
        s.vocab_size = 1024;
        s.n_embd = 64;
        s.n_layer = 2;
        s.n_head = 2;
        s.n_positions = 384;
        s.train_epochs = 12;
        s.train_lr = 3e-3;
        s.train_warmup = 30;
        s.retain_rows = 200;
        s.unlearn_epochs = 5;
        s.unlearn_batch = 8;
        s.unlearn_lr = 5e-4;
        s.max_new_tokens = 40;
        s.relearn_steps = 10;
        s.relearn_every = 5;
        s.relearn_batch = 4;
        return s;
    }

    json tokenizer_json() const { return {{"vocab_size", vocab_size}, {"corpus", "full.jsonl"}}; }
    json model_json() const {
        return {{"family", family}, {"n_embd", n_embd}, {"n_layer", n_layer}, {"n_head", n_head},
                {"n_positions", n_positions}};
    }
    json training_json() const {
        return {{"epochs", train_epochs}, {"batch_size", train_batch}, {"lr", train_lr}, {"schedule", "cosine"},
                {"warmup_steps", train_warmup},
                {"group_by_length", true}, {"seed", seed}};
    }
    json unlearning_json() const {
        return {{"epochs", unlearn_epochs}, {"batch_size", unlearn_batch}, {"lr", unlearn_lr},
                {"npo_beta", npo_beta},     {"simnpo_beta", simnpo_beta},     {"simnpo_gamma", simnpo_gamma},
                {"retain_weight", retain_weight}, {"seed", seed}};
    }
    json relearning_json() const {
        return {{"steps", relearn_steps}, {"every", relearn_every}, {"batch_size", relearn_batch},
                {"lr", relearn_lr}, {"subset", "a tenth of the forget set"}, {"seed", seed}};
    }
    json to_json() const {
        return {{"split", split},           {"tokenizer", tokenizer_json()}, {"model", model_json()},
                {"training", training_json()}, {"retain_rows", retain_rows}, {"unlearning", unlearning_json()},
                {"relearning", relearning_json()}, {"max_new_tokens", max_new_tokens}};
    }
};

// A name for settings that is the same in every build: FNV-1a of their JSON.
inline std::string hash_of(const json& key) {
    std::uint64_t fnv1a = 0xcbf29ce484222325ull;
    for (const unsigned char c : key.dump()) fnv1a = (fnv1a ^ c) * 0x100000001b3ull;
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a));
    return hash;
}

// The BPE vocabulary, trained on full.jsonl's questions and answers (and the
// prompt template), or loaded from the cache.
inline simnpo::tokenizer::Tokenizer tokenizer(const fs::path& data, const Settings& s, const fs::path& cache,
                                                 std::FILE* log) {
    const fs::path dir = cache / ("tokenizer-" + hash_of(s.tokenizer_json()));
    if (fs::exists(dir / "vocab.json")) {
        std::fprintf(log, "tokenizer: loaded from %s\n", dir.c_str());
        return simnpo::tokenizer::Tokenizer::load(dir);
    }
    std::vector<std::string> corpus{std::string(simnpo::data::default_prompt_template)};
    for (auto& pair : simnpo::data::read_question_answers(data / "full.jsonl")) {
        corpus.push_back(std::move(pair.question));
        corpus.push_back(std::move(pair.answer));
    }
    auto trained = simnpo::tokenizer::train_bpe(corpus, {.vocab_size = s.vocab_size});
    trained.save(dir);
    std::fprintf(log, "tokenizer: %zu tokens trained on full.jsonl, saved to %s\n", trained.vocab_size(), dir.c_str());
    return trained;
}

// The compact model of the settings in `Family`, over the tokenizer's vocabulary.
template <class Family>
typename Family::Config model_config(const Settings& s, const simnpo::tokenizer::Tokenizer& tokenizer) {
    simnpo::model::Config config;
    config.vocab_size = static_cast<std::int64_t>(tokenizer.vocab_size());
    config.n_positions = s.n_positions;
    config.n_embd = s.n_embd;
    config.n_layer = s.n_layer;
    config.n_head = s.n_head;
    config.validate("tofu_study");
    return in_family<Family>(config);
}

// What a trained model's cache entry is keyed on (the family among the model's settings).
inline json model_key(const std::string& name, std::size_t rows, const Settings& s) {
    return {{"name", name},
            {"rows", rows},
            {"tokenizer", s.tokenizer_json()},
            {"model", s.model_json()},
            {"training", s.training_json()}};
}

inline fs::path model_dir(const std::string& name, std::size_t rows, const Settings& s, const fs::path& cache) {
    return cache / (name + "-" + hash_of(model_key(name, rows, s)));
}

// A model trained from its family's initialisation on `examples`, or the one a
// previous run cached with the same settings; its directory carries the
// tokenizer. `progress` shows the steps (one of two trainings side by side does).
template <class Family>
Model<Family> trained_model(const std::string& name, const std::vector<Example>& examples,
                            const simnpo::data::TextFormat& format, const Settings& s, const fs::path& cache,
                            std::FILE* log, bool progress) {
    const json key = model_key(name, examples.size(), s);
    const fs::path dir = model_dir(name, examples.size(), s, cache);
    if (fs::exists(dir / "config.json")) {
        auto model = simnpo::model::load<Model<Family>>(dir);
        if (model.config().extra.value("tofu_study", json()) != key)
            simnpo::fail(dir.string(), ": the cached model was trained with other settings; delete the directory");
        std::fprintf(log, "%s model: loaded from %s\n", name.c_str(), dir.c_str());
        return model;
    }
    auto config = model_config<Family>(s, format.tokenizer());
    config.extra = {{"tofu_study", key}};
    Model<Family> model(config);
    simnpo::model::init_weights(model, s.seed);
    std::fprintf(log, "%s model: training on %zu examples, %lld epochs\n", name.c_str(), examples.size(),
                 static_cast<long long>(s.train_epochs));
    const auto started = std::chrono::steady_clock::now();
    simnpo::train::Options options;
    options.epochs = s.train_epochs;
    options.batch_size = s.train_batch;
    options.seed = s.seed;
    options.schedule = simnpo::optim::ScheduleKind::cosine;
    options.warmup_steps = s.train_warmup;
    options.group_by_length = true;
    const simnpo::optim::AdamW adamw({.lr = s.train_lr});
    if (progress) simnpo::train::train(model, adamw, examples, options, simnpo::train::ProgressBar(0, log));
    else simnpo::train::train(model, adamw, examples, options);
    simnpo::DirectoryWriter out(dir);  // the model and its tokenizer, as one step
    simnpo::model::write_into(out, model);
    format.tokenizer().write_into(out);
    out.commit();
    std::fprintf(log, "%s model: trained in %.0f s, saved to %s\n", name.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), dir.c_str());
    return model;
}

// The six methods of the paper's TOFU table.
inline const std::vector<std::string>& methods() {
    static const std::vector<std::string> names = {"GA", "GradDiff", "NPO", "NPO+GD", "SimNPO", "SimNPO+GD"};
    return names;
}

// `target` unlearned with `method` on forget (and retain, for the +GD methods).
template <class Family>
Model<Family> unlearned(const std::string& method, const Model<Family>& target, const std::vector<Example>& forget,
                        const std::vector<Example>& retain, const Settings& s, std::FILE* log) {
    Model<Family> model = target;
    simnpo::train::Options options;
    options.epochs = s.unlearn_epochs;
    options.batch_size = s.unlearn_batch;
    options.seed = s.seed;
    const simnpo::optim::AdamW adamw({.lr = s.unlearn_lr});
    const sl::ObjectiveWeights weights{1.0, s.retain_weight};
    const bool with_retain = method == "GradDiff" || method.ends_with("+GD");
    const std::vector<Example> none;
    const auto& retain_set = with_retain ? retain : none;
    const auto run = [&](const auto& objective) {
        using Objective = std::remove_cvref_t<decltype(objective)>;
        if constexpr (Objective::needs_reference) {
            sl::FrozenReference<Model<Family>> reference(target);
            simnpo::train::unlearn(model, reference, objective, adamw, forget, retain_set, options,
                                   simnpo::train::ProgressBar(0, log));
        } else {
            sl::NoReference reference;
            simnpo::train::unlearn(model, reference, objective, adamw, forget, retain_set, options,
                                   simnpo::train::ProgressBar(0, log));
        }
    };
    const auto forget_with = [&](const auto& forget_term) {
        using Forget = std::remove_cvref_t<decltype(forget_term)>;
        if (with_retain) run(sl::Objective<Forget, sl::NLL>(forget_term, sl::NLL{}, weights));
        else run(sl::Objective<Forget>(forget_term, sl::NoRetain{}, weights));
    };
    if (method.starts_with("GA") || method == "GradDiff") forget_with(sl::GradAscent{});
    else if (method.starts_with("NPO")) forget_with(sl::NPO({.beta = s.npo_beta}));
    else forget_with(sl::SimNPO({.beta = s.simnpo_beta, .gamma = s.simnpo_gamma}));
    return model;
}

// The relearning attack on `model` (a copy): fine-tuned on a tenth of the
// forget set, the whole set probed against the holdout questions.
template <class Family>
simnpo::eval::RelearnResult relearned(const Model<Family>& model, const simnpo::data::TextFormat& format,
                                      std::span<const simnpo::data::QuestionAnswer> forget,
                                      std::span<const simnpo::data::QuestionAnswer> holdout, const Settings& s) {
    Model<Family> copy = model;
    simnpo::eval::RelearnOptions options;
    options.subset_size = std::max<std::size_t>(1, forget.size() / 10);
    options.eval_every = s.relearn_every;
    options.training = {.steps = s.relearn_steps, .batch_size = s.relearn_batch, .seed = s.seed};
    options.probe.max_new_tokens = s.max_new_tokens;
    return simnpo::eval::relearn(copy, simnpo::optim::AdamW({.lr = s.relearn_lr}), format, forget, holdout, options);
}

// One row of the tables: a model's aggregates, from its reports' JSON.
struct Row {
    std::string name;
    json aggregates;       // TOFU's
    json privacy;          // the privacy report's aggregates
    json relearning;       // the attack's probes (unlearned models only)
    double seconds = 0.0;  // unlearning wall time (0 for the trained models)
};

inline std::string table(const std::vector<Row>& rows, const std::string& split) {
    std::string text;
    char line[256];
    text += "TOFU " + split +
            ": forget quality (KS p-value against the retain model; higher is better), model utility\n"
            "(harmonic mean of 9; real authors and world facts were never taught), retain utility (harmonic\n"
            "mean of the 3 retain numbers), probability, ROUGE-L recall and truth ratio on the forget set,\n"
            "probability and ROUGE-L recall on the retain set; PrivLeak of Min-K% (forget set against\n"
            "its holdout; 0 is ideal, -100 remembers all) and VerbMem on the forget set\n\n";
    std::snprintf(line, sizeof line, "%-10s %10s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "method", "forget_q", "utility",
                  "ret_util", "f_prob", "f_rouge", "f_truth", "r_prob", "r_rouge", "privleak", "verbmem");
    text += line;
    for (const Row& row : rows) {
        const json& a = row.aggregates;
        const auto fq = a["forget_quality"];
        char quality[32];
        if (fq.is_null()) std::snprintf(quality, sizeof quality, "%s", "-");
        else std::snprintf(quality, sizeof quality, "%.3g", fq.get<double>());
        std::snprintf(line, sizeof line, "%-10s %10s %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.2f %9.4f\n",
                      row.name.c_str(), quality, a["model_utility"].get<double>(), a["retain_utility"].get<double>(),
                      a["forget"]["probability"].get<double>(), a["forget"]["rouge_l_recall"].get<double>(),
                      a["forget"]["truth_ratio"].get<double>(), a["retain"]["probability"].get<double>(),
                      a["retain"]["rouge_l_recall"].get<double>(), row.privacy["privleak"]["min_k"].get<double>(),
                      row.privacy["verbmem"].get<double>());
        text += line;
    }
    return text;
}

// The relearning rows: forget probability at each probe, then at the last
// probe the probability of the examples not relearned, ROUGE-L recall and
// Min-K%'s AUC (first → last).
inline std::string relearning_table(const std::vector<Row>& rows, const Settings& s) {
    std::string text, header;
    char cell[64];
    std::snprintf(cell, sizeof cell, "%lld steps of AdamW, lr %g, batch %lld", static_cast<long long>(s.relearn_steps),
                  s.relearn_lr, static_cast<long long>(s.relearn_batch));
    text += std::string("\nRelearning attack: ") + cell +
            ", on a tenth of the forget set; forget probability at each step, then\n"
            "at the last step the probability of the nine tenths not relearned, and ROUGE-L recall and Min-K% AUC\n"
            "(step 0 -> last)\n\n";
    for (const Row& row : rows) {
        if (row.relearning.is_null()) continue;
        const json& points = row.relearning["points"];
        if (header.empty()) {
            std::snprintf(cell, sizeof cell, "%-10s", "method");
            header = cell;
            for (const auto& p : points) {
                std::snprintf(cell, sizeof cell, " %8s", ("p@" + std::to_string(p["step"].get<long long>())).c_str());
                header += cell;
            }
            std::snprintf(cell, sizeof cell, " %9s %17s %17s\n", "unseen_p", "f_rouge", "auc_min_k");
            text += header + cell;
        }
        std::snprintf(cell, sizeof cell, "%-10s", row.name.c_str());
        text += cell;
        for (const auto& p : points) {
            std::snprintf(cell, sizeof cell, " %8.4f", p["probability"].get<double>());
            text += cell;
        }
        const json& first = points.front();
        const json& last = points.back();
        const auto value = [](const json& v) { return v.is_null() ? std::nan("") : v.get<double>(); };
        std::snprintf(cell, sizeof cell, " %9.4f %7.4f -> %6.4f %7.4f -> %6.4f\n", value(last["unseen_probability"]),
                      value(first["rouge_l_recall"]), value(last["rouge_l_recall"]), first["auc"]["min_k"].get<double>(),
                      last["auc"]["min_k"].get<double>());
        text += cell;
    }
    return text;
}

}  // namespace study
