// markov_study: the paper's mixture-of-Markov-chains analysis (Fan et al., 2024,
// §5), end to end. A GPT-2 or Llama learns three Markov sources; two of them are
// then unlearned with GA, NPO and SimNPO (each with and without the NLL retain
// term) and every trajectory is measured against a model retrained without them.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include <simnpo.hpp>

#include "../simnpo/args.hpp"
#include "report.hpp"
#include "study.hpp"

namespace {

constexpr const char* usage = R"(usage: markov_study [--out DIR] [--quick] [--family F] [flags]

The paper's mixture-of-Markov-chains study. Three sources over 10 states: retain
{0,1,2}, forget1 {3,4,5}, forget2 {6,7,8}. Two scenarios:
  short_forget2           forget2 sequences are 5 states long, the others 20
  forget2_never_learned   all 20 long; the original model never saw forget2
The forget set is forget1 ∪ forget2 (train splits); the gold standard is a model
retrained on retain data only. Each method's distance from it, KL(retrained || model)
on each test split, is measured along the unlearning run.

  --out DIR         where results.json, the tables and pictures go (default markov-study)
  --cache DIR       trained models, reused by later runs with the same settings
                    (default DIR/models)
  --quick           a small configuration that runs in seconds (the ctest)
  --family F        gpt2 | llama: GPT-2's shape, or a Llama of its size (the same
                    width, layers and heads; grouped-query attention, SwiGLU)
                    (default gpt2)
  --steps N         unlearning steps (default 50; quick 10)
  --eval-every N    steps between evaluations (default 2)
  --retain-budget X the table compares methods within this KL on retain (default 0.05)
  --seed S          data, initialisation and batch order (default 0)
  --threads N       CPU threads (default: all)

Writes DIR/results.json ({scenario: {"methods": {method: {"step", "kl_retain",
"kl_forget1", "kl_forget2"}}}} and the settings), DIR/table.txt (also printed), and
DIR/<scenario>.png with gnuplot (the .gp and .dat files beside it re-render it).
)";

// The study with models of `Family`, writing into `out`.
template <class Family>
int run_study(const study::Settings& settings, const std::filesystem::path& out, const std::filesystem::path& cache) {
    const auto started = std::chrono::steady_clock::now();
    std::FILE* log = stderr;
    const study::Sources short_sources = study::make_sources(settings, settings.short_length);
    const study::Sources long_sources = study::make_sources(settings, settings.length);

    // Retain and forget1 are the same in both scenarios: one retrained model.
    const auto retrained = study::trained_model<Family>("retrained", short_sources.retain.train, settings, cache, log);
    const auto original_a = study::trained_model<Family>(
        "original-short-forget2",
        study::concat({&short_sources.retain.train, &short_sources.forget1.train, &short_sources.forget2.train}),
        settings, cache, log);
    const auto original_b = study::trained_model<Family>(
        "original-without-forget2", study::concat({&long_sources.retain.train, &long_sources.forget1.train}), settings,
        cache, log);

    std::vector<study::Scenario> scenarios = {
        {"short_forget2", "A: forget2 sequences of 5 states, the rest of 20", {}},
        {"forget2_never_learned", "B: forget2 never learned by the original model", {}}};
    for (auto& scenario : scenarios) {
        const bool a = scenario.name == "short_forget2";
        const study::Sources& sources = a ? short_sources : long_sources;
        std::fprintf(log, "%s: unlearning\n", scenario.description.c_str());
        study::Evaluator<Family> evaluator(retrained, sources);
        scenario.runs = study::run_methods(a ? original_a : original_b, sources, settings, evaluator, log);
    }

    simnpo::write_file_atomic(out / "results.json", study::to_json(scenarios, settings).dump(1) + "\n");
    const std::string table = study::table(scenarios, settings.retain_budget);
    simnpo::write_file_atomic(out / "table.txt", table);
    std::fputs(table.c_str(), stdout);
    const auto pictures = study::plot(scenarios, out, log);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("\nwrote %s", (out / "results.json").c_str());
    for (const auto& picture : pictures) std::printf(", %s", picture.c_str());
    std::printf(" in %.0f s\n", seconds);
    return 0;
}

int run(const std::vector<std::string>& words) {
    const simnpo::cli::Args args("markov_study", words,
                                 {"--out", "--cache", "--family", "--steps", "--eval-every", "--retain-budget", "--seed",
                                  "--threads"},
                                 {"--quick"});
    if (args.help()) {
        std::cout << usage;
        return 0;
    }
    study::Settings settings = args.has("--quick") ? study::Settings::quick() : study::Settings{};
    settings.family = args.choice("--family", settings.family, {"gpt2", "llama"});
    settings.unlearn_steps = args.integer("--steps", settings.unlearn_steps, 1, 100000);
    settings.eval_every = args.integer("--eval-every", settings.eval_every, 1, settings.unlearn_steps);
    settings.retain_budget = args.real("--retain-budget", settings.retain_budget, 0.0, 1e6);
    settings.seed = static_cast<std::uint64_t>(args.integer("--seed", 0, 0, 1LL << 40));
    if (args.has("--threads")) simnpo::set_threads(static_cast<int>(args.integer("--threads", 1, 1, 1024)));
    const std::filesystem::path out = args.text("--out", "markov-study");
    const std::filesystem::path cache = args.text("--cache", (out / "models").string());
    simnpo::check_output_directory(out, "--out");
    simnpo::check_output_directory(cache, "--cache");
    std::error_code ec;
    std::filesystem::create_directories(out, ec);
    if (ec) simnpo::fail("--out ", out.string(), ": cannot create the directory: ", ec.message());

    // The one place where --family becomes a type.
    return simnpo::model::with_family(settings.family, "--family", [&]<class Family>(std::type_identity<Family>) {
        return run_study<Family>(settings, out, cache);
    });
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const std::exception& error) {
        std::cerr << "markov_study: " << error.what() << '\n';
        return 1;
    }
}
