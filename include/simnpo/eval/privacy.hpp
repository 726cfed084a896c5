#pragma once
#include "simnpo/core/internal_check.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/data/jsonl.hpp"
#include "simnpo/data/text.hpp"
#include "simnpo/eval/memorization.hpp"
#include "simnpo/eval/mia.hpp"
#include "simnpo/eval/tofu.hpp"
#include "simnpo/model/gpt.hpp"

// Privacy on TOFU, as MUSE measures it: membership inference of the forget
// split (members of the model before unlearning) against a holdout split of
// authors no model saw (non-members), PrivLeak against the retain model, and
// VerbMem and KnowMem on the forget split.
namespace simnpo::eval::privacy {

struct Options {
    double k = 0.4;                  // Min-K% and Min-K%++'s fraction of tokens
    std::size_t batch_size = 16;     // sequences per scoring forward
    std::size_t prefix_tokens = 8;   // VerbMem's prompt: the question and the answer's first tokens
    std::int64_t max_new_tokens = 200;
    bool memorization = true;  // VerbMem and KnowMem (greedy generation: the slow part)
};

using Aucs = std::array<double, attacks.size()>;

struct Report {
    std::string split;                        // forget01 | forget05 | forget10
    MiaScores members, nonmembers;            // each attack's per-example scores
    Aucs auc{};                               // members against non-members
    std::optional<Aucs> retain_auc, privleak;  // with the retain model's AUCs
    std::optional<Memorization> verbmem, knowmem;
};

// TOFU's non-member file of a forget split: forget10 → holdout10.jsonl.
inline std::string holdout_file(const std::string& split) {
    tofu::check_split(split);
    return "holdout" + split.substr(6) + ".jsonl";
}

// The attacks' scores of each pair's answer (zlib compresses the answer text).
template <model::CausalModel Model>
MiaScores scores(const Model& model, const data::TextFormat& format,
                 std::span<const data::QuestionAnswer> pairs, const Options& options, const std::string& where) {
    std::vector<data::Example> examples;
    std::vector<std::string> answers;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
        examples.push_back(format.example(pairs[i].question, pairs[i].answer));
        data::check_example(examples.back(), model.config(), where + ": question " + std::to_string(i + 1));
        answers.push_back(pairs[i].answer);
    }
    const auto stats = token_statistics(model, std::span<const data::Example>(examples), options.batch_size);
    return mia_scores(stats, answers, options.k);
}

// Each attack's AUC of `model` on members against non-members: all that the
// retain model contributes to PrivLeak.
template <model::CausalModel Model>
Aucs mia_aucs(const Model& model, const data::TextFormat& format,
              std::span<const data::QuestionAnswer> members, std::span<const data::QuestionAnswer> nonmembers,
              const Options& options = {}) {
    return aucs(scores(model, format, members, options, "members"),
                scores(model, format, nonmembers, options, "non-members"));
}

inline void set_privleak(Report& report, const Aucs& retain_auc) {
    report.retain_auc = retain_auc;
    Aucs leak{};
    for (std::size_t a = 0; a < attacks.size(); ++a) leak[a] = privleak(report.auc[a], retain_auc[a]);
    report.privleak = leak;
}

// Every privacy metric of `model`: the attacks on members against non-members,
// PrivLeak when the retain model's AUCs are given, and (options.memorization)
// VerbMem and KnowMem on the members.
template <model::CpuModel Model>
Report evaluate(const Model& model, const data::TextFormat& format,
                std::span<const data::QuestionAnswer> members, std::span<const data::QuestionAnswer> nonmembers,
                const std::optional<Aucs>& retain_auc, const Options& options = {}) {
    Report report;
    report.members = scores(model, format, members, options, "members");
    report.nonmembers = scores(model, format, nonmembers, options, "non-members");
    report.auc = aucs(report.members, report.nonmembers);
    if (retain_auc) set_privleak(report, *retain_auc);
    if (options.memorization) {
        report.verbmem = verbmem(model, format, members, options.prefix_tokens, options.max_new_tokens);
        report.knowmem = knowmem(model, format, members, options.max_new_tokens);
    }
    return report;
}

// The same on the TOFU files in `data_dir`: the forget split against its holdout.
template <model::CpuModel Model>
Report evaluate(const Model& model, const data::TextFormat& format,
                const std::filesystem::path& data_dir, const std::string& split, const std::optional<Aucs>& retain_auc,
                const Options& options = {}) {
    const auto members = data::read_question_answers(data_dir / (split + ".jsonl"));
    const auto nonmembers = data::read_question_answers(data_dir / holdout_file(split));
    Report report = evaluate(model, format, members, nonmembers, retain_auc, options);
    report.split = split;
    return report;
}

inline nlohmann::json to_json(const Report& report) {
    using nlohmann::json;
    json aggregates = json::object(), scores = {{"members", json::object()}, {"nonmembers", json::object()}};
    for (std::size_t a = 0; a < attacks.size(); ++a) {
        const char* name = attack_name(attacks[a]);
        aggregates["auc"][name] = report.auc[a];
        aggregates["retain_auc"][name] = report.retain_auc ? json((*report.retain_auc)[a]) : json(nullptr);
        aggregates["privleak"][name] = report.privleak ? json((*report.privleak)[a]) : json(nullptr);
        scores["members"][name] = report.members[a];
        scores["nonmembers"][name] = report.nonmembers[a];
    }
    json result = {{"benchmark", "privacy"}, {"split", report.split}, {"aggregates", aggregates}, {"scores", scores}};
    for (const auto& [name, metric] : {std::pair{"verbmem", &report.verbmem}, std::pair{"knowmem", &report.knowmem}}) {
        result["aggregates"][name] = *metric ? json((*metric)->mean) : json(nullptr);
        if (*metric)
            result[name] = {{"f1", (*metric)->f1}, {"generations", (*metric)->generations}, {"skipped", (*metric)->skipped}};
    }
    return result;
}

}  // namespace simnpo::eval::privacy
