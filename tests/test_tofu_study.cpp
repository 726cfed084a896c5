// The tofu_study program in its quick configuration: the table and JSON it
// promises, the study's premises (the target learned the forget split, the
// retain model did not; unlearning lowers it; the privacy metrics and the
// relearning attack see it), the cache, and bad flags; then the same study
// with a Llama of the same size.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <string>

#include <simnpo.hpp>

#include "support/run_program.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_tofu_study)

namespace {

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
const std::string study_bin = std::string(SIMNPO_BIN_DIR) + "/tofu_study";
const std::string tofu_dir = std::string(SIMNPO_SHARED_DATA_DIR) + "/tofu";
const char* methods[] = {"GA", "GradDiff", "NPO", "NPO+GD", "SimNPO", "SimNPO+GD"};

using Result = simnpo::testing::ProgramResult;

Result run(const std::string& arguments, const TempDir& scratch) {
    return simnpo::testing::run_program(study_bin, arguments, scratch);
}

struct QuickStudy {
    // `flags` go beyond the quick configuration's.
    explicit QuickStudy(const std::string& flags)
        : first(run("--quick --threads 1 --data " + tofu_dir + " --out " + out + flags, scratch)),
          results(simnpo::read_json_file(out + "/results.json")) {}
    TempDir scratch;
    std::string out = scratch.file("study");
    Result first;
    nlohmann::json results;
};

QuickStudy& quick_study() {
    static QuickStudy study("");
    return study;
}

// The Llama study shares the GPT-2 study's cache: the tokenizer, not the models.
QuickStudy& llama_study() {
    static QuickStudy study(" --family llama --cache " + quick_study().out + "/models");
    return study;
}

double forget_probability(const nlohmann::json& results, const std::string& model) {
    return results.at("models").at(model).at("aggregates").at("forget").at("probability").get<double>();
}

// What every quick study shows, whatever the family.
void check_every_model_has_every_metric_and_the_table_is_printed(const QuickStudy& study) {
    BOOST_TEST_INFO(study.first.output);
    BOOST_TEST_REQUIRE(study.first.status == 0);
    BOOST_TEST(study.results.at("settings").at("split") == "forget01");
    const auto& models = study.results.at("models");
    BOOST_TEST(models.size() == 8u);
    for (const auto& [name, model] : models.items()) {
        BOOST_TEST_CONTEXT(name) {
            const auto& a = model.at("aggregates");
            for (const char* key : {"forget_quality", "model_utility", "retain_utility"})
                BOOST_TEST((a.at(key).get<double>() >= 0.0 && a.at(key).get<double>() <= 1.0), key);
            for (const char* set : {"forget", "retain", "real_authors", "world_facts"})
                for (const char* metric : {"probability", "truth_ratio", "rouge_l_recall"})
                    BOOST_TEST((a.at(set).at(metric).get<double>() >= 0.0 && a.at(set).at(metric).get<double>() <= 1.0),
                               set << " " << metric);
            // Each model's full report: 40 forget questions, each with its 5 perturbations.
            const auto report = simnpo::read_json_file(study.out + "/" + name + ".json");
            BOOST_TEST(report.at("questions").at("forget").size() == 40u);
            BOOST_TEST(report.at("questions").at("forget").at(0).at("perturbed_nll").size() == 5u);
        }
    }
    // The retain model is forget quality's reference: against itself the KS p-value is 1.
    BOOST_TEST(models.at("retain").at("aggregates").at("forget_quality").get<double>() == 1.0);
    for (const char* method : methods) BOOST_TEST(study.first.output.find(std::string("\n") + method + " ") != std::string::npos);
    const std::string table = simnpo::read_file(study.out + "/table.txt");
    BOOST_TEST(table.starts_with("TOFU forget01"));
    BOOST_TEST(table.find("privleak") != std::string::npos);
    BOOST_TEST(table.find("Relearning attack: 10 steps") != std::string::npos);
}

// PrivLeak is measured against the retain model's AUC: 0 for the retain model
// itself; the target, which learned the members, is recognised (Min-K% AUC
// below the retain model's, PrivLeak negative). Each member and non-member has a score.
void check_privacy_metrics_of_every_model(const QuickStudy& study) {
    BOOST_TEST_REQUIRE(study.first.status == 0);
    const auto& models = study.results.at("models");
    for (const auto& [name, model] : models.items()) {
        BOOST_TEST_CONTEXT(name) {
            const auto& privacy = model.at("privacy");
            for (const char* attack : {"loss", "zlib", "min_k", "min_k++"}) {
                const double auc = privacy.at("auc").at(attack).get<double>();
                BOOST_TEST((auc >= 0.0 && auc <= 1.0), attack);
                const double expected = (auc - privacy.at("retain_auc").at(attack).get<double>()) /
                                        privacy.at("retain_auc").at(attack).get<double>() * 100.0;
                BOOST_TEST(std::abs(privacy.at("privleak").at(attack).get<double>() - expected) < 1e-9, attack);
            }
            for (const char* metric : {"verbmem", "knowmem"})
                BOOST_TEST((privacy.at(metric).get<double>() >= 0.0 && privacy.at(metric).get<double>() <= 1.0), metric);
            const auto report = simnpo::read_json_file(study.out + "/" + name + "-privacy.json");
            BOOST_TEST(report.at("scores").at("members").at("min_k").size() == 40u);     // forget01
            BOOST_TEST(report.at("scores").at("nonmembers").at("min_k").size() == 40u);  // holdout01
        }
    }
    for (const char* attack : {"loss", "zlib", "min_k", "min_k++"})
        BOOST_TEST(models.at("retain").at("privacy").at("privleak").at(attack).get<double>() == 0.0);
    const auto& target = models.at("target").at("privacy");
    BOOST_TEST(target.at("auc").at("min_k").get<double>() < target.at("retain_auc").at("min_k").get<double>());
    BOOST_TEST(target.at("privleak").at("min_k").get<double>() < -20.0);
}

// The attack fine-tunes on 4 of the 40 forget questions for 10 steps, probed
// at steps 0, 5 and 10; step 0 is the unlearned model itself.
void check_each_method_meets_the_relearning_attack(const QuickStudy& study) {
    BOOST_TEST_REQUIRE(study.first.status == 0);
    for (const char* method : methods) {
        BOOST_TEST_CONTEXT(method) {
            const auto& relearning = study.results.at("models").at(method).at("relearning");
            BOOST_TEST(relearning.at("subset").size() == 4u);
            const auto& points = relearning.at("points");
            BOOST_TEST_REQUIRE(points.size() == 3u);
            BOOST_TEST(points.at(0).at("step") == 0);
            BOOST_TEST(points.at(2).at("step") == 10);
            // (float forwards, batched differently: equal to about 1e-7)
            BOOST_TEST(std::abs(points.at(0).at("probability").get<double>() / forget_probability(study.results, method) - 1.0) < 1e-5);
            // Fine-tuning on forget examples brings their probability back up.
            BOOST_TEST(points.at(2).at("probability").get<double>() > points.at(0).at("probability").get<double>());
        }
    }
    BOOST_TEST(study.results.at("models").at("target").at("relearning").is_null());  // not unlearned
}

void check_the_target_learned_the_forget_split_and_unlearning_lowers_it(const QuickStudy& study) {
    BOOST_TEST_REQUIRE(study.first.status == 0);
    const double target = forget_probability(study.results, "target");
    const double retain = forget_probability(study.results, "retain");
    // The quick models are small and briefly trained: the premise at a smaller scale.
    BOOST_TEST(target > 2.0 * retain);
    for (const char* method : methods) BOOST_TEST(forget_probability(study.results, method) < target, method);
    // Forgetting moves the forget-set truth ratios towards the retain model's.
    BOOST_TEST(study.results.at("models").at("target").at("aggregates").at("forget_quality").get<double>() < 0.05);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_model_has_every_metric_and_the_table_is_printed) {
    check_every_model_has_every_metric_and_the_table_is_printed(quick_study());
    BOOST_TEST(quick_study().results.at("settings").at("model").at("family") == "gpt2");
}

BOOST_AUTO_TEST_CASE(privacy_metrics_of_every_model) { check_privacy_metrics_of_every_model(quick_study()); }

BOOST_AUTO_TEST_CASE(each_method_meets_the_relearning_attack) {
    check_each_method_meets_the_relearning_attack(quick_study());
}

BOOST_AUTO_TEST_CASE(the_target_learned_the_forget_split_and_unlearning_lowers_it) {
    check_the_target_learned_the_forget_split_and_unlearning_lowers_it(quick_study());
}

BOOST_AUTO_TEST_CASE(a_second_run_loads_the_cached_tokenizer_and_models) {
    const auto& study = quick_study();
    BOOST_TEST_REQUIRE(study.first.status == 0);
    const auto again = run("--quick --threads 1 --data " + tofu_dir + " --out " + study.out + " --methods SimNPO",
                           study.scratch);
    BOOST_TEST_INFO(again.output);
    BOOST_TEST_REQUIRE(again.status == 0);
    BOOST_TEST(again.output.find("tokenizer: loaded from") != std::string::npos);
    BOOST_TEST(again.output.find("target model: loaded from") != std::string::npos);
    BOOST_TEST(again.output.find("retain model: loaded from") != std::string::npos);
    const auto results = simnpo::read_json_file(study.out + "/results.json");
    BOOST_TEST(results.at("models").size() == 3u);
    BOOST_TEST(forget_probability(results, "target") == forget_probability(study.results, "target"));
}

BOOST_AUTO_TEST_CASE(bad_flags_are_one_line_errors) {
    const TempDir scratch;
    for (const auto& [flags, message] : std::initializer_list<std::pair<std::string, std::string>>{
             {"--split forget02", "--split must be one of"},
             {"--family mistral", "--family must be one of {gpt2, llama}"},
             {"--methods GA,Oops", "--methods: unknown method 'Oops'"},
             {"--unlearn-lr -1", "--unlearn-lr must be in"},
             {"--relearn-steps 0", "--relearn-steps must be in"},
             {"--data " + scratch.file("nowhere"), "nowhere/full.jsonl"},
             {"--cache /proc/tofu-cache", "--cache '/proc/tofu-cache': cannot write in '/proc'"},
         }) {
        const auto result = run("--quick --out " + scratch.file("s") + " " + flags, scratch);
        BOOST_TEST_INFO(flags << "\n" << result.output);
        BOOST_TEST(result.status != 0);
        BOOST_TEST(result.output.starts_with("tofu_study: "));
        BOOST_TEST(result.output.find(message) != std::string::npos);
        BOOST_TEST(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    }
}

// The same study with a Llama of the GPT-2's size (half as many key/value
// heads, a SwiGLU width of 8C/3 rounded to a multiple of 8), trained beside it
// in its cache.
BOOST_AUTO_TEST_CASE(a_llama_of_the_same_size_shows_the_same) {
    const auto& study = llama_study();
    check_every_model_has_every_metric_and_the_table_is_printed(study);
    check_privacy_metrics_of_every_model(study);
    check_each_method_meets_the_relearning_attack(study);
    check_the_target_learned_the_forget_split_and_unlearning_lowers_it(study);
    BOOST_TEST(study.results.at("settings").at("model").at("family") == "llama");
    // The family is part of the models' cache key: the tokenizer is shared, the models are not.
    BOOST_TEST(study.first.output.find("tokenizer: loaded from") != std::string::npos);
    BOOST_TEST(study.first.output.find("target model: training on") != std::string::npos);
    BOOST_TEST(study.first.output.find("retain model: training on") != std::string::npos);
    const auto llama_target = [&] {
        for (const auto& entry : fs::directory_iterator(quick_study().out + "/models")) {
            if (!entry.path().filename().string().starts_with("target-")) continue;
            auto config = simnpo::read_json_file(entry.path() / "config.json");
            if (config.value("model_type", "") == "llama") return config;
        }
        return nlohmann::json();
    }();
    BOOST_TEST_REQUIRE(!llama_target.is_null());
    BOOST_TEST(llama_target.at("hidden_size") == 64);
    BOOST_TEST(llama_target.at("intermediate_size") == 168);
    BOOST_TEST(llama_target.at("num_attention_heads") == 2);
    BOOST_TEST(llama_target.at("num_key_value_heads") == 1);
    BOOST_TEST(llama_target.at("max_position_embeddings") == 384);
    BOOST_TEST(llama_target.at("tie_word_embeddings") == true);
}

BOOST_AUTO_TEST_SUITE_END()  // test_tofu_study
