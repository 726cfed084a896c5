// `simnpo eval` and `simnpo generate` (DESIGN §6): benchmark metrics and greedy answers.
#pragma once

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "text.hpp"

namespace simnpo::cli {

constexpr const char* eval_usage = R"(usage: simnpo eval --benchmark tofu --model DIR --data TOFU_DIR --split S [flags]

Evaluates a model on TOFU (Maini et al., 2024): on the forget split, the retain
questions (retain_perturbed.jsonl), real authors and world facts, it scores every
answer, paraphrase and perturbation, and answers each question greedily. Prints
a table; --out writes every aggregate and every per-question value as JSON.

  --benchmark tofu         the benchmark (tofu)
  --model DIR              the model to evaluate (CPU)
  --retain-model DIR       the model trained without the forget set: forget quality is the KS
                           test's p-value between its forget-set truth ratios and the model's
                           (without it, forget quality is not computed)
  --data TOFU_DIR          the TOFU files (forget10_perturbed.jsonl, retain_perturbed.jsonl, ...)
  --split S                forget01 | forget05 | forget10
  --out F.json             the full results, written atomically
  --batch-size N           sequences per scoring forward (default 16)
  --max-new-tokens N       longest greedy answer (default 200)
  --threads N              CPU threads (default: all)
)";

constexpr const char* generate_usage = R"(usage: simnpo generate --model DIR (--question Q | --file F) [flags]

Answers questions greedily: the prompt is the template applied to the question,
and the answer ends at the end-of-text token, --max-new-tokens or n_positions.
Prints one JSON object a line: {"question": ..., "answer": ...}.

  --model DIR              the model (CPU); its directory's tokenizer unless --tokenizer
  --question Q             one question
  --file F                 questions, one a line (blank lines skipped)
  --max-new-tokens N       (default 200)
  --threads N              CPU threads (default: all)
)";

namespace detail {

inline std::string format_metric(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", value);
    return text;
}

inline void print_tofu_table(const eval::tofu::Report& report, std::ostream& out) {
    out << "TOFU " << report.split << "\n"
        << "  forget quality   " << (report.forget_quality ? format_metric(*report.forget_quality) : "n/a (no --retain-model)")
        << "\n  model utility    " << format_metric(report.model_utility)
        << "\n  retain utility   " << format_metric(report.retain_utility) << "\n\n"
        << "  set            probability  truth ratio  ROUGE-L\n";
    for (const auto* set : {&report.forget, &report.retain, &report.real_authors, &report.world_facts}) {
        std::string name = eval::tofu::set_name(set->set);
        name.resize(15, ' ');
        out << "  " << name << format_metric(set->probability) << "       " << format_metric(set->truth_ratio)
            << "       " << format_metric(set->rouge_l_recall) << "\n";
    }
}

// Generations may end inside a UTF-8 character: JSON shows such bytes as U+FFFD.
inline std::string dump(const nlohmann::json& value, int indent = -1) {
    return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace detail

inline int run_eval(const std::vector<std::string>& words) {
    const Args args("simnpo eval", words,
                    {"--benchmark", "--model", "--retain-model", "--data", "--split", "--out", "--batch-size",
                     "--max-new-tokens", "--threads", "--tokenizer", "--prompt-template"});
    if (args.help()) {
        std::cout << eval_usage << text_flags;
        return 0;
    }
    args.required("--benchmark");
    args.choice("--benchmark", "", {"tofu"});
    const std::filesystem::path model_dir = args.required("--model");
    const std::filesystem::path data_dir = args.required("--data");
    const std::string split = args.required("--split");
    args.choice("--split", "", {"forget01", "forget05", "forget10"});
    const eval::tofu::Options options{
        .batch_size = static_cast<std::size_t>(args.integer("--batch-size", 16, 1, 1 << 20)),
        .max_new_tokens = args.integer("--max-new-tokens", 200, 1, 1 << 20)};
    if (args.has("--threads")) set_threads(static_cast<int>(args.integer("--threads", 1, 1, 1024)));

    auto model = model::load<simnpo::cpu, float>(model_dir);
    const TextInput text(args, model_dir);
    const auto& format = text.required("simnpo eval");
    std::optional<std::vector<double>> retain_ratios;
    if (args.has("--retain-model")) {
        auto retain = model::load<simnpo::cpu, float>(args.required("--retain-model"));
        retain_ratios = eval::tofu::truth_ratios(eval::tofu::evaluate_forget_set(retain, format, data_dir, split, options));
    }
    const auto report = eval::tofu::evaluate(
        model, format, data_dir, split,
        retain_ratios ? std::optional<std::span<const double>>(*retain_ratios) : std::nullopt, options);
    if (args.has("--out")) write_file_atomic(args.required("--out"), detail::dump(eval::tofu::to_json(report), 1) + "\n");
    detail::print_tofu_table(report, std::cout);
    return 0;
}

inline int run_generate(const std::vector<std::string>& words) {
    const Args args("simnpo generate", words,
                    {"--model", "--question", "--file", "--max-new-tokens", "--threads", "--tokenizer",
                     "--prompt-template"});
    if (args.help()) {
        std::cout << generate_usage << text_flags;
        return 0;
    }
    if (args.has("--question") == args.has("--file"))
        fail("simnpo generate: give exactly one of --question and --file");
    const std::filesystem::path model_dir = args.required("--model");
    const auto max_new_tokens = args.integer("--max-new-tokens", 200, 1, 1 << 20);
    if (args.has("--threads")) set_threads(static_cast<int>(args.integer("--threads", 1, 1, 1024)));
    const auto model = model::load<simnpo::cpu, float>(model_dir);
    const TextInput text(args, model_dir);
    const auto& format = text.required("simnpo generate");

    std::vector<std::string> questions;
    if (args.has("--question")) {
        questions.push_back(args.required("--question"));
    } else {
        const std::string input = read_file(args.required("--file"));
        for (std::size_t begin = 0; begin < input.size();) {
            const std::size_t end = std::min(input.find('\n', begin), input.size());
            std::string line = input.substr(begin, end - begin);
            begin = end + 1;
            if (line.ends_with('\r')) line.pop_back();
            if (line.find_first_not_of(" \t") != std::string::npos) questions.push_back(std::move(line));
        }
        if (questions.empty()) fail(args.required("--file"), ": no questions");
    }
    std::vector<std::vector<std::int32_t>> prompts;
    for (const auto& question : questions) prompts.push_back(format.prompt_ids(question));
    const auto answers = model::generate_greedy(model, std::span<const std::vector<std::int32_t>>(prompts),
                                                {.max_new_tokens = max_new_tokens, .stop_token = format.end_of_text_id()});
    std::string output;
    for (std::size_t i = 0; i < questions.size(); ++i)
        output += detail::dump({{"question", questions[i]}, {"answer", format.tokenizer().decode(answers[i])}}) + "\n";
    std::cout << output;
    return 0;
}

}  // namespace simnpo::cli
