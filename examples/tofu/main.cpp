// tofu_study: the paper's TOFU table (Fan et al., 2024, Table 2) on a compact
// GPT-2 or Llama trained from scratch. A BPE vocabulary is trained on TOFU, a
// target model on full.jsonl and a retain model on the retain split; the forget
// split is then unlearned from the target with GA, GradDiff, NPO, NPO+GD, SimNPO
// and SimNPO+GD, and every model is evaluated with the TOFU metrics and MUSE's
// privacy metrics; each unlearned model then meets the relearning attack.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <simnpo.hpp>

#include "../simnpo/args.hpp"
#include "study.hpp"

namespace {

namespace fs = std::filesystem;

constexpr const char* usage = R"(usage: tofu_study [--data TOFU_DIR] [--split S] [--out DIR] [--quick] [--family F] [flags]

Trains a BPE vocabulary on TOFU's full.jsonl, a compact model on full.jsonl (the
target) and one on the retain split (the retain model: the gold standard of
forgetting), unlearns the forget split from the target with six methods, and
prints the paper-style table of the TOFU metrics, with PrivLeak and VerbMem
(forget split against its holdout), and the relearning attack on each method.

  --data TOFU_DIR       the TOFU files (default ../shared/data/tofu)
  --split S             forget01 | forget05 | forget10 (default forget10; quick forget01)
  --out DIR             results.json, table.txt, and <model>.json, <model>-privacy.json and
                        <method>-relearn.json reports (default tofu-study)
  --cache DIR           tokenizer and trained models, reused by later runs with the same
                        settings (default DIR/models)
  --quick               a small configuration that runs in a minute or two (the ctest): the
                        retain data is full.jsonl's first 200 rows, the split forget01
  --family F            gpt2 | llama: GPT-2's shape, or a Llama of its size (the same width,
                        layers and heads; grouped-query attention, SwiGLU) (default gpt2)
  --train-epochs N      epochs of the target and retain training (default 30)
  --unlearn-epochs N    epochs over the forget set (default 10)
  --unlearn-lr X        AdamW's rate for unlearning (default 3e-4)
  --npo-beta B          (default 0.1)
  --simnpo-beta B       (default 2.5)
  --simnpo-gamma G      SimNPO's margin (default 0)
  --retain-weight W     the NLL retain term's weight in the +GD methods (default 1)
  --relearn-steps N     the relearning attack's AdamW steps on a tenth of the forget set (default 30)
  --relearn-lr X        its rate (default 1e-4)
  --methods LIST        comma-separated subset of GA,GradDiff,NPO,NPO+GD,SimNPO,SimNPO+GD
  --seed S              initialisation and data order (default 0)
  --threads N           CPU threads (default: all)
)";

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> items;
    for (std::size_t begin = 0; begin <= text.size();) {
        const std::size_t end = std::min(text.find(',', begin), text.size());
        items.push_back(text.substr(begin, end - begin));
        begin = end + 1;
    }
    return items;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The study with models of `Family`, writing into `out`.
template <class Family>
int run_study(const study::Settings& s, const std::vector<std::string>& methods, const fs::path& data,
              const fs::path& out, const fs::path& cache) {
    namespace tofu = simnpo::eval::tofu;
    namespace privacy = simnpo::eval::privacy;
    using Model = study::Model<Family>;
    const auto started = std::chrono::steady_clock::now();
    std::FILE* log = stderr;
    const auto tokenizer = study::tokenizer(data, s, cache, log);
    const simnpo::data::TextFormat format(tokenizer);
    const auto config = study::model_config<Family>(s, tokenizer);

    // The target learns full.jsonl; the retain model the same without the forget split.
    const std::string percent = s.split.substr(6);  // "01", "05", "10"
    const auto forget = simnpo::data::read_jsonl(data / (s.split + ".jsonl"), config, format);
    std::vector<study::Example> retain, target_data;
    if (s.retain_rows == 0) {
        retain = simnpo::data::read_jsonl(data / ("retain" + std::to_string(100 - std::stoi(percent)) + ".jsonl"),
                                          config, format);
        target_data = simnpo::data::read_jsonl(data / "full.jsonl", config, format);
    } else {
        const auto full = simnpo::data::read_jsonl(data / "full.jsonl", config, format);
        retain.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(std::min(s.retain_rows, full.size())));
        target_data = retain;
        target_data.insert(target_data.end(), forget.begin(), forget.end());
    }
    // The two trainings are independent: when both are to be done, each takes
    // half the threads, side by side.
    const int threads = simnpo::thread_count();
    const bool side_by_side = threads > 1 && !fs::exists(study::model_dir("retain", retain.size(), s, cache)) &&
                              !fs::exists(study::model_dir("target", target_data.size(), s, cache));
    std::optional<Model> retain_model, target;
    std::exception_ptr retain_error;
    const auto train_retain = [&] {
        try {
            if (side_by_side) simnpo::set_threads(threads / 2);
            retain_model.emplace(study::trained_model<Family>("retain", retain, format, s, cache, log, !side_by_side));
        } catch (...) {
            retain_error = std::current_exception();
        }
    };
    std::thread retain_training;
    if (side_by_side) retain_training = std::thread(train_retain);
    else train_retain();
    try {
        if (side_by_side) simnpo::set_threads(threads - threads / 2);
        target.emplace(study::trained_model<Family>("target", target_data, format, s, cache, log, true));
    } catch (...) {
        if (retain_training.joinable()) retain_training.join();
        throw;
    }
    if (retain_training.joinable()) retain_training.join();
    if (retain_error) std::rethrow_exception(retain_error);
    simnpo::set_threads(threads);

    const tofu::Options options{.batch_size = 16, .max_new_tokens = s.max_new_tokens};
    const simnpo::eval::privacy::Options privacy_options{.max_new_tokens = s.max_new_tokens};
    const auto members = simnpo::data::read_question_answers(data / (s.split + ".jsonl"));
    const auto nonmembers = simnpo::data::read_question_answers(data / privacy::holdout_file(s.split));
    std::vector<study::Row> rows;
    std::vector<double> retain_ratios;
    std::optional<privacy::Aucs> retain_auc;
    const auto write_json = [&](const fs::path& path, const nlohmann::json& value) {
        simnpo::write_file_atomic(path, value.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    };
    // The first model evaluated is the retain model: the reference of forget quality and PrivLeak.
    const auto evaluate = [&](const std::string& name, const Model& model, double unlearn_seconds) -> study::Row& {
        const auto at = std::chrono::steady_clock::now();
        Model copy = model;  // the forward keeps activations: evaluation needs its own
        auto report = tofu::evaluate(copy, format, data, s.split,
                                     retain_ratios.empty() ? std::nullopt
                                                           : std::optional<std::span<const double>>(retain_ratios),
                                     options);
        auto privacy_report = privacy::evaluate(copy, format, std::span(members), std::span(nonmembers), retain_auc,
                                                privacy_options);
        privacy_report.split = s.split;
        if (retain_ratios.empty()) {
            retain_ratios = tofu::truth_ratios(report.forget);
            report.forget_quality = tofu::forget_quality(retain_ratios, retain_ratios);
            retain_auc = privacy_report.auc;
            privacy::set_privleak(privacy_report, *retain_auc);
        }
        const auto json = tofu::to_json(report);
        const auto privacy_json = privacy::to_json(privacy_report);
        write_json(out / (name + ".json"), json);
        write_json(out / (name + "-privacy.json"), privacy_json);
        rows.push_back({name, json["aggregates"], privacy_json["aggregates"], nullptr, unlearn_seconds});
        std::fprintf(log, "%s: evaluated in %.0f s (forget probability %.4f, model utility %.4f, PrivLeak %.1f)\n",
                     name.c_str(), seconds_since(at), report.forget.probability, report.model_utility,
                     (*privacy_report.privleak)[static_cast<std::size_t>(simnpo::eval::Attack::min_k)]);
        return rows.back();
    };
    evaluate("retain", *retain_model, 0.0);
    evaluate("target", *target, 0.0);
    for (const auto& method : methods) {
        std::fprintf(log, "%s: unlearning %s\n", method.c_str(), s.split.c_str());
        const auto at = std::chrono::steady_clock::now();
        const Model model = study::unlearned(method, *target, forget, retain, s, log);
        study::Row& row = evaluate(method, model, seconds_since(at));
        const auto relearn_at = std::chrono::steady_clock::now();
        const auto relearning = study::relearned(model, format, std::span(members), std::span(nonmembers), s);
        row.relearning = simnpo::eval::to_json(relearning);
        write_json(out / (method + "-relearn.json"), row.relearning);
        std::fprintf(log, "%s: relearning attack in %.0f s (forget probability %.4f -> %.4f)\n", method.c_str(),
                     seconds_since(relearn_at), relearning.points.front().probability,
                     relearning.points.back().probability);
    }

    nlohmann::json results = {{"settings", s.to_json()}, {"models", nlohmann::json::object()}};
    for (const auto& row : rows)
        results["models"][row.name] = {{"aggregates", row.aggregates},
                                       {"privacy", row.privacy},
                                       {"relearning", row.relearning},
                                       {"unlearn_seconds", row.seconds}};
    results["seconds"] = seconds_since(started);
    simnpo::write_file_atomic(out / "results.json", results.dump(1) + "\n");
    const std::string table = study::table(rows, s.split) + study::relearning_table(rows, s);
    simnpo::write_file_atomic(out / "table.txt", table);
    std::fputs(table.c_str(), stdout);
    const double target_forget = rows[1].aggregates["forget"]["probability"].get<double>();
    if (target_forget < 0.8)
        std::printf("\nnote: the target's forget probability is %.3f, below the 0.8 that shows it learned the forget set\n",
                    target_forget);
    std::printf("\nwrote %s in %.0f s\n", (out / "results.json").c_str(), seconds_since(started));
    return 0;
}

int run(const std::vector<std::string>& words) {
    const simnpo::cli::Args args("tofu_study", words,
                                 {"--data", "--split", "--out", "--cache", "--family", "--train-epochs",
                                  "--unlearn-epochs", "--unlearn-lr", "--npo-beta", "--simnpo-beta", "--simnpo-gamma",
                                  "--retain-weight", "--relearn-steps", "--relearn-lr",
                                  "--methods", "--seed", "--threads"},
                                 {"--quick"});
    if (args.help()) {
        std::cout << usage;
        return 0;
    }
    study::Settings s = args.has("--quick") ? study::Settings::quick() : study::Settings{};
    s.split = args.choice("--split", s.split, {"forget01", "forget05", "forget10"});
    s.family = args.choice("--family", s.family, {"gpt2", "llama"});
    s.train_epochs = args.integer("--train-epochs", s.train_epochs, 1, 100000);
    s.unlearn_epochs = args.integer("--unlearn-epochs", s.unlearn_epochs, 1, 100000);
    s.unlearn_lr = args.real("--unlearn-lr", s.unlearn_lr, 0.0, 1.0);
    s.npo_beta = args.real("--npo-beta", s.npo_beta, 1e-6, 1e6);
    s.simnpo_beta = args.real("--simnpo-beta", s.simnpo_beta, 1e-6, 1e6);
    s.simnpo_gamma = args.real("--simnpo-gamma", s.simnpo_gamma, -1e6, 1e6);
    s.retain_weight = args.real("--retain-weight", s.retain_weight, 0.0, 1e6);
    s.relearn_steps = args.integer("--relearn-steps", s.relearn_steps, 1, 100000);
    s.relearn_every = std::min(s.relearn_every, s.relearn_steps);
    s.relearn_lr = args.real("--relearn-lr", s.relearn_lr, 0.0, 1.0);
    s.seed = static_cast<std::uint64_t>(args.integer("--seed", 0, 0, 1LL << 40));
    std::vector<std::string> methods = study::methods();
    if (args.has("--methods")) {
        methods = split_list(args.required("--methods"));
        for (const auto& method : methods)
            if (std::find(study::methods().begin(), study::methods().end(), method) == study::methods().end())
                simnpo::fail("tofu_study: --methods: unknown method '", method,
                             "' (GA, GradDiff, NPO, NPO+GD, SimNPO, SimNPO+GD)");
    }
    if (args.has("--threads")) simnpo::set_threads(static_cast<int>(args.integer("--threads", 1, 1, 1024)));
    const fs::path data = args.text("--data", "../shared/data/tofu");
    const fs::path out = args.text("--out", "tofu-study");
    const fs::path cache = args.text("--cache", (out / "models").string());
    for (const auto& [flag, dir] : {std::pair{"--out", out}, std::pair{"--cache", cache}}) {
        simnpo::check_output_directory(dir, flag);
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) simnpo::fail(flag, " ", dir.string(), ": cannot create the directory: ", ec.message());
    }

    // The one place where --family becomes a type.
    return simnpo::model::with_family(s.family, "--family", [&]<class Family>(std::type_identity<Family>) {
        return run_study<Family>(s, methods, data, out, cache);
    });
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const std::exception& error) {
        std::cerr << "tofu_study: " << error.what() << '\n';
        return 1;
    }
}
