// The markov_study program in its quick configuration: the JSON it promises,
// the study's premises (the original learned what the retrained model did not),
// the paper's mechanism (NPO gives the short forget2 rows a smaller share of
// the gradient than SimNPO), the model cache, and bad flags.
#define BOOST_TEST_MODULE markov_study
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <utility>

#include <simnpo.hpp>

#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
const std::string study_bin = std::string(SIMNPO_BIN_DIR) + "/markov_study";
const char* scenarios[] = {"short_forget2", "forget2_never_learned"};
const char* methods[] = {"GA", "NPO", "SimNPO", "GA+NLL", "NPO+NLL", "SimNPO+NLL"};

struct Result {
    int status;
    std::string output;  // stdout and stderr together
};

Result run(const std::string& arguments, const TempDir& scratch) {
    const std::string log = scratch.file("output.log");
    const int raw = std::system((study_bin + " " + arguments + " > " + log + " 2>&1").c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, simnpo::read_file(log)};
}

double mean(const nlohmann::json& values) {
    double sum = 0.0;
    for (const auto& v : values) sum += v.get<double>();
    return sum / static_cast<double>(values.size());
}

// One quick study for all the cases that read its results.
struct QuickStudy {
    TempDir scratch;
    std::string out = scratch.file("study");
    Result first = run("--quick --threads 2 --out " + out, scratch);
    nlohmann::json results = simnpo::parse_json(simnpo::read_file(out + "/results.json"), out + "/results.json");
};

QuickStudy& quick_study() {
    static QuickStudy study;
    return study;
}

}  // namespace

BOOST_AUTO_TEST_CASE(writes_every_trajectory_the_json_promises) {
    const auto& study = quick_study();
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
                BOOST_TEST(run.at("forget2_share").size() == 10u);
                for (const auto& share : run.at("forget2_share")) BOOST_TEST((share >= 0.0 && share <= 1.0));
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

BOOST_AUTO_TEST_CASE(the_original_models_learned_what_the_retrained_model_did_not) {
    const auto& study = quick_study();
    const auto original = [&](const char* scenario, const char* split) {
        return study.results.at(scenario).at("methods").at("GA").at(split).at(0).get<double>();
    };
    for (const char* scenario : scenarios)  // forget1 is learned in both; retain is shared with the retrained model
        BOOST_TEST(original(scenario, "kl_forget1") > 4 * original(scenario, "kl_retain"));
    BOOST_TEST(original("short_forget2", "kl_forget2") > 4 * original("short_forget2", "kl_retain"));
    // In B the original never saw forget2: it is much closer to the retrained model there.
    BOOST_TEST(original("forget2_never_learned", "kl_forget2") < original("short_forget2", "kl_forget2") / 2);
}

BOOST_AUTO_TEST_CASE(npo_gives_short_forget_rows_less_of_the_gradient_than_simnpo) {
    // Scenario A: forget2 answers have 4 tokens, forget1's 19. NPO's per-token
    // weight starts equal for every row, so forget2 gets about its token share
    // (as GA does); SimNPO divides by |y|, so each row counts about alike.
    const auto& runs = quick_study().results.at("short_forget2").at("methods");
    const double ga = mean(runs.at("GA").at("forget2_share"));
    const double npo = mean(runs.at("NPO").at("forget2_share"));
    const double simnpo = mean(runs.at("SimNPO").at("forget2_share"));
    BOOST_TEST(ga < 0.3);
    BOOST_TEST(npo < 0.35);
    BOOST_TEST(simnpo > 0.4);
    BOOST_TEST(simnpo > npo + 0.1);
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
                                         std::pair{"--bogus 1", "--bogus"}, std::pair{"--threads", "--threads"}}) {
        const auto result = run(std::string("--quick --out ") + scratch.file("o") + " " + arguments, scratch);
        BOOST_TEST_INFO(result.output);
        BOOST_TEST(result.status == 1);
        BOOST_TEST(result.output.find(flag) != std::string::npos);
        BOOST_TEST(result.output.starts_with("markov_study: "));
        BOOST_TEST(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    }
}
