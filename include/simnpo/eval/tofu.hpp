#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/data/jsonl.hpp"
#include "simnpo/data/text.hpp"
#include "simnpo/eval/ks_test.hpp"
#include "simnpo/eval/rouge.hpp"
#include "simnpo/model/generate.hpp"
#include "simnpo/model/gpt.hpp"

// The TOFU benchmark's metrics (Maini et al., 2024), as its issue defines them.
// For an answer a to a question, n(a) is its mean per-token NLL under the model
// (the end-of-text token after the answer included, as it is scored in training).
namespace simnpo::eval::tofu {

// The four evaluation sets. On real authors and world facts there is no
// paraphrase: the answer itself stands in for it, and the probability is
// normalised over the answer and its perturbations.
enum class Set { forget, retain, real_authors, world_facts };

inline const char* set_name(Set set) {
    switch (set) {
        case Set::forget: return "forget";
        case Set::retain: return "retain";
        case Set::real_authors: return "real_authors";
        case Set::world_facts: return "world_facts";
    }
    return "";
}

// One question of a *_perturbed.jsonl file.
struct Question {
    std::string question, answer, paraphrased;
    std::vector<std::string> perturbed;
};

struct QuestionResult {
    double answer_nll = 0, paraphrased_nll = 0;  // n(answer), n(paraphrased)
    std::vector<double> perturbed_nll;           // n(perturbed_j)
    double truth_ratio = 0;                      // R = exp(mean_j n(perturbed_j) − n(paraphrased))
    std::string generation;                      // the greedy answer
    double rouge_l_recall = 0;                   // of the generation against the answer
};

struct SetResult {
    Set set = Set::forget;
    double probability = 0, truth_ratio = 0, rouge_l_recall = 0;  // the set's aggregates
    std::vector<QuestionResult> questions;
};

struct Report {
    std::string split;  // forget01 | forget05 | forget10
    SetResult forget, retain, real_authors, world_facts;
    std::optional<double> forget_quality;  // needs the retain model's forget-set R values
    double model_utility = 0;               // harmonic mean of the nine retain/real/world numbers
    double retain_utility = 0;              // harmonic mean of the three retain numbers
};

struct Options {
    std::size_t batch_size = 16;        // sequences per scoring forward
    std::int64_t max_new_tokens = 200;  // greedy answers stop here, at end-of-text, or at n_positions
    bool generate = true;               // greedy answers and their ROUGE-L (false: the scores alone,
                                        // e.g. for the retain model's truth ratios)
};

// The harmonic mean; 0 when any value is 0 (TOFU's convention for utility).
inline double harmonic_mean(std::span<const double> values) {
    if (values.empty()) fail("harmonic_mean: no values");
    double reciprocal_sum = 0.0;
    for (const double value : values) {
        if (!(value >= 0.0)) fail("harmonic_mean: ", value, " is not a non-negative number");
        if (value == 0.0) return 0.0;
        reciprocal_sum += 1.0 / value;
    }
    return static_cast<double>(values.size()) / reciprocal_sum;
}

// The set's file name in a TOFU data directory.
inline std::string file_name(Set set, const std::string& split) {
    switch (set) {
        case Set::forget: return split + "_perturbed.jsonl";
        case Set::retain: return "retain_perturbed.jsonl";
        case Set::real_authors: return "real_authors_perturbed.jsonl";
        case Set::world_facts: return "world_facts_perturbed.jsonl";
    }
    return "";
}

// Reads a *_perturbed.jsonl file; errors name the file and line.
inline std::vector<Question> read_questions(const std::filesystem::path& path, Set set) {
    std::vector<Question> questions;
    data::detail::for_each_record(read_text_file(path), path.string(), [&](const nlohmann::json& value, const std::string& at) {
        if (!value.is_object()) fail(at, ": expected a JSON object, got ", data::detail::describe(value));
        Question q;
        q.question = data::detail::text_field(value, "question", at);
        q.answer = data::detail::text_field(value, "answer", at);
        const bool paraphrased = set == Set::forget || set == Set::retain;
        q.paraphrased = paraphrased ? data::detail::text_field(value, "paraphrased_answer", at) : q.answer;
        const auto perturbed = value.find("perturbed_answer");
        if (perturbed == value.end()) fail(at, ": missing key 'perturbed_answer'");
        if (!perturbed->is_array() || perturbed->empty())
            fail(at, ": 'perturbed_answer' must be a non-empty array of strings");
        for (const auto& answer : *perturbed) {
            if (!answer.is_string() || answer.get_ref<const std::string&>().empty())
                fail(at, ": 'perturbed_answer' must be a non-empty array of non-empty strings");
            q.perturbed.push_back(answer.get<std::string>());
        }
        questions.push_back(std::move(q));
    });
    if (questions.empty()) fail(path.string(), ": no questions");
    return questions;
}

// Each question's R from its n values, and the set's aggregates: the
// probability, the truth-ratio statistic and the mean ROUGE-L recall.
inline SetResult summarize(Set set, std::vector<QuestionResult> questions) {
    if (questions.empty()) fail("tofu: ", set_name(set), ": no questions");
    SetResult result;
    result.set = set;
    double probability = 0.0, truth_ratio = 0.0, rouge = 0.0;
    for (auto& r : questions) {
        if (r.perturbed_nll.empty()) fail("tofu: ", set_name(set), ": a question has no perturbed answers");
        double perturbed_mean = 0.0, perturbed_probability = 0.0;
        for (const double n : r.perturbed_nll) {
            perturbed_mean += n;
            perturbed_probability += std::exp(-n);
        }
        perturbed_mean /= static_cast<double>(r.perturbed_nll.size());
        r.truth_ratio = std::exp(perturbed_mean - r.paraphrased_nll);
        const double p = std::exp(-r.answer_nll);
        probability += (set == Set::forget || set == Set::retain) ? p : p / (p + perturbed_probability);
        // The forget set asks how far R is from 1 either way; elsewhere higher is better.
        truth_ratio += set == Set::forget ? std::min(r.truth_ratio, 1.0 / r.truth_ratio)
                                          : std::max(0.0, 1.0 - 1.0 / r.truth_ratio);
        rouge += r.rouge_l_recall;
    }
    const auto n = static_cast<double>(questions.size());
    result.probability = probability / n;
    result.truth_ratio = truth_ratio / n;
    result.rouge_l_recall = rouge / n;
    result.questions = std::move(questions);
    return result;
}

// n(a) for each example: the mean NLL of its answer tokens, `batch_size` at a time.
template <model::CausalModel Model>
std::vector<double> mean_nll(const Model& model, std::span<const data::Example> examples,
                             std::size_t batch_size) {
    std::vector<double> nll;
    nll.reserve(examples.size());
    for (std::size_t first = 0; first < examples.size(); first += batch_size) {
        const auto chunk = examples.subspan(first, std::min(batch_size, examples.size() - first));
        const auto sums = model.score(data::make_batch(chunk)).sequence_logprobs();
        for (std::size_t b = 0; b < chunk.size(); ++b)
            nll.push_back(-sums[b] / static_cast<double>(chunk[b].answer_ids.size()));
    }
    return nll;
}

// Every metric of one set: n of each answer, R, the greedy answer and its
// ROUGE-L recall per question, and the set's probability, truth ratio and ROUGE-L.
template <model::CpuModel Model>
SetResult evaluate_set(const Model& model, const data::TextFormat& format,
                       std::span<const Question> questions, Set set, const Options& options = {},
                       const std::string& where = "tofu") {
    // Every answer of every question, in one list, scored in batches.
    std::vector<data::Example> examples;
    for (std::size_t i = 0; i < questions.size(); ++i) {
        const Question& q = questions[i];
        const std::string at = where + ": question " + std::to_string(i + 1);
        const auto add = [&](const std::string& answer) {
            examples.push_back(format.example(q.question, answer));
            data::check_example(examples.back(), model.config(), at);
        };
        add(q.answer);
        if (set == Set::forget || set == Set::retain) add(q.paraphrased);
        for (const auto& answer : q.perturbed) add(answer);
    }
    const auto nll = mean_nll(model, std::span<const data::Example>(examples), options.batch_size);

    std::vector<std::vector<std::int32_t>> prompts, generations;
    if (options.generate) {
        for (const auto& q : questions) prompts.push_back(format.prompt_ids(q.question));
        generations = model::generate_greedy(model, std::span<const std::vector<std::int32_t>>(prompts),
                                             {.max_new_tokens = options.max_new_tokens,
                                              .stop_token = format.end_of_answer_id()});
    }

    std::vector<QuestionResult> results;
    std::size_t next = 0;
    for (std::size_t i = 0; i < questions.size(); ++i) {
        const Question& q = questions[i];
        // A NaN would be written as null and averaged into every aggregate.
        const auto take = [&] {
            const double value = nll[next++];
            if (!std::isfinite(value))
                fail(where, ": question ", i + 1, ": the model's log-probability of an answer is not finite");
            return value;
        };
        QuestionResult r;
        r.answer_nll = take();
        r.paraphrased_nll = (set == Set::forget || set == Set::retain) ? take() : r.answer_nll;
        for (std::size_t j = 0; j < q.perturbed.size(); ++j) r.perturbed_nll.push_back(take());
        if (options.generate) {
            r.generation = format.tokenizer().decode(generations[i]);
            r.rouge_l_recall = rouge_l(r.generation, q.answer).recall;
        }
        results.push_back(std::move(r));
    }
    return summarize(set, std::move(results));
}

inline std::vector<double> truth_ratios(const SetResult& result) {
    std::vector<double> values;
    for (const auto& q : result.questions) values.push_back(q.truth_ratio);
    return values;
}

// Forget quality: the p-value of the two-sample KS test between the forget-set
// R values of the evaluated model and of the retain model.
inline double forget_quality(std::span<const double> model_ratios, std::span<const double> retain_ratios) {
    return ks_2samp(model_ratios, retain_ratios).p_value;
}

// Model utility, the harmonic mean of {retain, real authors, world facts} x
// {probability, ROUGE-L, truth ratio}, and retain utility, of the first three.
inline void set_utilities(Report& report) {
    std::vector<double> nine;
    for (const SetResult* r : {&report.retain, &report.real_authors, &report.world_facts})
        nine.insert(nine.end(), {r->probability, r->rouge_l_recall, r->truth_ratio});
    report.model_utility = harmonic_mean(nine);
    report.retain_utility = harmonic_mean(std::span<const double>(nine).first(3));
}

inline void check_split(const std::string& split) {
    if (split != "forget01" && split != "forget05" && split != "forget10")
        fail("tofu: split '", split, "' is not one of forget01, forget05, forget10");
}

// The forget set alone: what the retain model contributes to forget quality.
template <model::CpuModel Model>
SetResult evaluate_forget_set(const Model& model, const data::TextFormat& format,
                              const std::filesystem::path& data_dir, const std::string& split,
                              const Options& options = {}) {
    check_split(split);
    const auto path = data_dir / file_name(Set::forget, split);
    return evaluate_set(model, format, read_questions(path, Set::forget), Set::forget, options, path.string());
}

// The whole benchmark on the TOFU files in `data_dir`. Forget quality is
// computed when the retain model's forget-set R values are given.
template <model::CpuModel Model>
Report evaluate(const Model& model, const data::TextFormat& format,
                const std::filesystem::path& data_dir, const std::string& split,
                std::optional<std::span<const double>> retain_truth_ratios, const Options& options = {}) {
    check_split(split);
    Report report;
    report.split = split;
    const auto run = [&](Set set) {
        const auto path = data_dir / file_name(set, split);
        return evaluate_set(model, format, read_questions(path, set), set, options, path.string());
    };
    report.forget = run(Set::forget);
    report.retain = run(Set::retain);
    report.real_authors = run(Set::real_authors);
    report.world_facts = run(Set::world_facts);
    if (retain_truth_ratios) report.forget_quality = forget_quality(truth_ratios(report.forget), *retain_truth_ratios);
    set_utilities(report);
    return report;
}

// Every aggregate and every per-question value.
inline nlohmann::json to_json(const Report& report) {
    using nlohmann::json;
    json aggregates = {{"model_utility", report.model_utility}, {"retain_utility", report.retain_utility},
                       {"forget_quality", report.forget_quality ? json(*report.forget_quality) : json(nullptr)}};
    json sets = json::object();
    for (const SetResult* r : {&report.forget, &report.retain, &report.real_authors, &report.world_facts}) {
        aggregates[set_name(r->set)] = {{"probability", r->probability},
                                        {"truth_ratio", r->truth_ratio},
                                        {"rouge_l_recall", r->rouge_l_recall}};
        json questions = json::array();
        for (const auto& q : r->questions)
            questions.push_back({{"answer_nll", q.answer_nll},
                                 {"paraphrased_nll", q.paraphrased_nll},
                                 {"perturbed_nll", q.perturbed_nll},
                                 {"truth_ratio", q.truth_ratio},
                                 {"generation", q.generation},
                                 {"rouge_l_recall", q.rouge_l_recall}});
        sets[set_name(r->set)] = std::move(questions);
    }
    return {{"benchmark", "tofu"}, {"split", report.split}, {"aggregates", aggregates}, {"questions", sets}};
}

}  // namespace simnpo::eval::tofu
