// The markov_study program in its quick configuration: the JSON it promises,
// the study's premises (the original learned what the retrained model did not),
// how each loss shares the gradient between forget1 and forget2 rows (the
// paper's mechanism, with GA's and NPO's first step exact), the model cache,
// and bad flags; then the same study with a Llama of the same size.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <utility>

#include <simnpo.hpp>

#include "support/run_program.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_markov_study)

namespace {

namespace fs = std::filesystem;
namespace tt = boost::test_tools;
using simnpo::testing::TempDir;
const std::string study_bin = std::string(SIMNPO_BIN_DIR) + "/markov_study";
const char* scenarios[] = {"short_forget2", "forget2_never_learned"};
const char* methods[] = {"GA", "NPO", "SimNPO", "GA+NLL", "NPO+NLL", "SimNPO+NLL"};

using Result = simnpo::testing::ProgramResult;

Result run(const std::string& arguments, const TempDir& scratch) {
    return simnpo::testing::run_program(study_bin, arguments, scratch);
}

// One quick study for all the cases that read its results.
struct QuickStudy {
    // `flags` go beyond the quick configuration's.
    explicit QuickStudy(const std::string& flags)
        : first(run("--quick --threads 2 --out " + out + flags, scratch)),
          results(simnpo::parse_json(simnpo::read_file(out + "/results.json"), out + "/results.json")) {}
    TempDir scratch;
    std::string out = scratch.file("study");
    Result first;
    nlohmann::json results;
};

QuickStudy& quick_study() {
    static QuickStudy study("");
    return study;
}

// The Llama study trains its models in the GPT-2 study's cache.
QuickStudy& llama_study() {
    static QuickStudy study(" --family llama --cache " + quick_study().out + "/models");
    return study;
}

// What every quick study shows, whatever the family.
void check_every_trajectory_the_json_promises(const QuickStudy& study) {
    BOOST_TEST_INFO(study.first.output);
    BOOST_TEST_REQUIRE(study.first.status == 0);
    BOOST_TEST(study.results.at("settings").at("unlearning").at("steps") == 10);
    for (const char* scenario : scenarios) {
        const auto& runs = study.results.at(scenario).at("methods");
        BOOST_TEST(runs.size() == 6u);
        for (const char* method : methods) {
            BOOST_TEST_CONTEXT(scenario << " " << method) {
                const auto& run = runs.at(method);
                BOOST_TEST(run.at("step") == nlohmann::json({0, 2, 4, 6, 8, 10}));
                for (const char* split : {"kl_retain", "kl_forget1", "kl_forget2"}) {
                    BOOST_TEST(run.at(split).size() == 6u);
                    for (const auto& kl : run.at(split)) BOOST_TEST((std::isfinite(kl.get<double>()) && kl >= -1e-6));
                    // Every method starts from the same original model.
                    BOOST_TEST(run.at(split).at(0) == runs.at("GA").at(split).at(0));
                }
                for (const char* key : {"forget1_gradient", "forget1_rows", "forget2_gradient", "forget2_rows"})
                    BOOST_TEST(run.at("allocation").at(key).size() == 10u);
                for (std::size_t k = 0; k < 10; ++k)  // batches of 4
                    BOOST_TEST(run.at("allocation").at("forget1_rows").at(k).get<int>() +
                                   run.at("allocation").at("forget2_rows").at(k).get<int>() == 4);
            }
        }
    }
    const std::string table = simnpo::read_file(study.out + "/table.txt");
    for (const char* method : methods) BOOST_TEST(table.find(method) != std::string::npos);
    BOOST_TEST(study.first.output.find(table) != std::string::npos);
    for (const char* scenario : scenarios) {
        BOOST_TEST(fs::exists(study.out + "/" + scenario + ".gp"));
        BOOST_TEST(fs::exists(study.out + "/" + scenario + ".dat"));
        if (std::system("command -v gnuplot > /dev/null 2>&1") == 0)
            BOOST_TEST(fs::file_size(study.out + "/" + scenario + ".png") > 1000u);
    }
}

void check_the_original_models_learned_what_the_retrained_model_did_not(const nlohmann::json& results) {
    const auto original = [&](const char* scenario, const char* split) {
        return results.at(scenario).at("methods").at("GA").at(split).at(0).get<double>();
    };
    for (const char* scenario : scenarios)  // forget1 is learned in both; retain is shared with the retrained model
        BOOST_TEST(original(scenario, "kl_forget1") > 4 * original(scenario, "kl_retain"));
    BOOST_TEST(original("short_forget2", "kl_forget2") > 4 * original("short_forget2", "kl_retain"));
    // In B the original never saw forget2: it is much closer to the retrained model there.
    BOOST_TEST(original("forget2_never_learned", "kl_forget2") < original("short_forget2", "kl_forget2") / 2);
}

// Whether step k's batch (0-based) held rows of both forget sources.
bool mixed(const nlohmann::json& run, std::size_t k) {
    const auto& a = run.at("allocation");
    return a.at("forget1_rows").at(k).get<int>() > 0 && a.at("forget2_rows").at(k).get<int>() > 0;
}

// The forget gradient a forget2 row got per forget1 row's in step k, from the
// JSON's allocation.
double forget2_per_forget1(const nlohmann::json& run, std::size_t k) {
    const auto& a = run.at("allocation");
    BOOST_TEST_REQUIRE(mixed(run, k));
    const double f1 = a.at("forget1_rows").at(k).get<double>(), f2 = a.at("forget2_rows").at(k).get<double>();
    return (a.at("forget2_gradient").at(k).get<double>() / f2) / (a.at("forget1_gradient").at(k).get<double>() / f1);
}

void check_the_gradient_allocation_follows_each_losss_weights(const nlohmann::json& results) {
    const auto& a = results.at("short_forget2").at("methods");
    const auto& b = results.at("forget2_never_learned").at("methods");
    // GA's gradient is a token mean: a row counts by its length, 4 answer tokens
    // against 19 in A, 19 against 19 in B, at every step.
    int checked = 0;
    for (std::size_t k = 0; k < 10; ++k) {
        if (mixed(a.at("GA"), k)) {
            BOOST_TEST(forget2_per_forget1(a.at("GA"), k) == 4.0 / 19.0, tt::tolerance(1e-9));
            ++checked;
        }
        if (mixed(b.at("GA"), k)) {
            BOOST_TEST(forget2_per_forget1(b.at("GA"), k) == 1.0, tt::tolerance(1e-9));
            ++checked;
        }
    }
    BOOST_TEST(checked >= 10);
    // At the first step θ = θ_ref, so NPO weighs every row alike: GA, to float rounding (the reference
    // scores each row alone, the model in its batch, so their float log-likelihoods differ in the last bits).
    BOOST_TEST(forget2_per_forget1(a.at("NPO"), 0) == 4.0 / 19.0, tt::tolerance(1e-6));
    BOOST_TEST(forget2_per_forget1(b.at("NPO"), 0) == 1.0, tt::tolerance(1e-6));
    // SimNPO divides by |y| (rows count about alike in A) and weighs by the
    // current likelihood from the start (never-learned forget2 rows get less in B).
    BOOST_TEST(forget2_per_forget1(a.at("SimNPO"), 0) > 0.5);
    BOOST_TEST(forget2_per_forget1(a.at("SimNPO"), 0) < 2.0);
    BOOST_TEST(forget2_per_forget1(b.at("SimNPO"), 0) < 0.9);
}

}  // namespace

BOOST_AUTO_TEST_CASE(writes_every_trajectory_the_json_promises) {
    check_every_trajectory_the_json_promises(quick_study());
    BOOST_TEST(quick_study().results.at("settings").at("model").at("family") == "gpt2");
}

BOOST_AUTO_TEST_CASE(the_original_models_learned_what_the_retrained_model_did_not) {
    check_the_original_models_learned_what_the_retrained_model_did_not(quick_study().results);
}

BOOST_AUTO_TEST_CASE(the_gradient_allocation_follows_each_losss_weights) {
    check_the_gradient_allocation_follows_each_losss_weights(quick_study().results);
}

BOOST_AUTO_TEST_CASE(a_second_run_reuses_the_cached_models_and_gives_the_same_results) {
    const auto& study = quick_study();
    const TempDir scratch;
    const std::string out = scratch.file("again");
    const auto again = run("--quick --threads 2 --out " + out + " --cache " + study.out + "/models", scratch);
    BOOST_TEST_INFO(again.output);
    BOOST_TEST_REQUIRE(again.status == 0);
    std::size_t loaded = 0;
    for (auto at = again.output.find("loaded from"); at != std::string::npos; at = again.output.find("loaded from", at + 1))
        ++loaded;
    BOOST_TEST(loaded == 3u);
    BOOST_TEST(again.output.find("training on") == std::string::npos);
    const auto results = simnpo::parse_json(simnpo::read_file(out + "/results.json"), out + "/results.json");
    for (const char* scenario : scenarios)
        for (const char* method : methods)
            for (const char* split : {"kl_retain", "kl_forget1", "kl_forget2"})
                BOOST_TEST(results.at(scenario).at("methods").at(method).at(split) ==
                           study.results.at(scenario).at("methods").at(method).at(split));
}

BOOST_AUTO_TEST_CASE(a_cached_model_with_other_settings_is_an_error_naming_it) {
    const TempDir scratch;
    const std::string out = scratch.file("study");
    fs::create_directories(out + "/models");
    fs::copy(quick_study().out + "/models", out + "/models", fs::copy_options::recursive);
    for (const auto& entry : fs::directory_iterator(out + "/models")) {
        if (entry.path().filename().string().rfind("retrained-", 0) != 0) continue;
        auto config = simnpo::parse_json(simnpo::read_file(entry.path() / "config.json"), "config.json");
        config["markov_study"]["training"]["lr"] = 1.0;
        scratch.write("study/models/" + entry.path().filename().string() + "/config.json", config.dump());
    }
    const auto result = run("--quick --out " + out, scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_TEST(result.status == 1);
    BOOST_TEST(result.output.find("retrained-") != std::string::npos);
    BOOST_TEST(result.output.find("other settings") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_flags_are_one_line_errors_naming_the_flag) {
    const TempDir scratch;
    for (const auto& [arguments, flag] : {std::pair{"--steps 0", "--steps"}, std::pair{"--eval-every x", "--eval-every"},
                                         std::pair{"--family mistral", "--family must be one of {gpt2, llama}"},
                                         std::pair{"--bogus 1", "--bogus"}, std::pair{"--threads", "--threads"}}) {
        const auto result = run(std::string("--quick --out ") + scratch.file("o") + " " + arguments, scratch);
        BOOST_TEST_INFO(result.output);
        BOOST_TEST(result.status == 1);
        BOOST_TEST(result.output.find(flag) != std::string::npos);
        BOOST_TEST(result.output.starts_with("markov_study: "));
        BOOST_TEST(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    }
}

// The same study with a Llama of the GPT-2's size, in the GPT-2 study's cache:
// the family is part of the models' key, so it trains its own three.
BOOST_AUTO_TEST_CASE(a_llama_of_the_same_size_shows_the_same) {
    const auto& study = llama_study();
    check_every_trajectory_the_json_promises(study);
    check_the_original_models_learned_what_the_retrained_model_did_not(study.results);
    check_the_gradient_allocation_follows_each_losss_weights(study.results);
    BOOST_TEST(study.results.at("settings").at("model").at("family") == "llama");
    BOOST_TEST(study.first.output.find("loaded from") == std::string::npos);
    for (const char* model : {"retrained", "original-short-forget2", "original-without-forget2"})
        BOOST_TEST(study.first.output.find(std::string(model) + " model: training on") != std::string::npos, model);
}

BOOST_AUTO_TEST_SUITE_END()  // test_markov_study
