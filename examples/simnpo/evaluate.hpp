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

constexpr const char* eval_usage = R"(usage: simnpo eval --benchmark tofu|privacy --model DIR --data TOFU_DIR --split S [flags]

--benchmark tofu: TOFU (Maini et al., 2024). On the forget split, the retain
questions (retain_perturbed.jsonl), real authors and world facts, it scores every
answer, paraphrase and perturbation, and answers each question greedily.

--benchmark privacy: MUSE's privacy metrics (Shi et al., 2024) on TOFU. The
forget split's questions are the members (the model before unlearning learned
them), its holdout split's (holdout01/05/10.jsonl, authors no model saw) the
non-members. Four membership-inference attacks score each answer: LOSS (mean
NLL), zlib (NLL over the answer's zlib-compressed length), Min-K% and Min-K%++.
Every score is loss-like, and the AUC ranks members as the positive class: a
model that remembers its forget set scores near 0, one that cannot tell 0.5.
PrivLeak = (AUC - AUC_retain) / AUC_retain x 100 with the retain model's AUC:
0 is ideal, the model before unlearning near -100, an over-unlearned one
positive. VerbMem and KnowMem are ROUGE-L F1 on the forget split: of the greedy
continuation of the question and the answer's first --prefix-tokens tokens
against the rest of the answer, and of the greedy answer against the answer.

Prints a table; --out writes every aggregate and every per-example value as JSON.

  --benchmark B            tofu | privacy
  --model DIR              the model to evaluate (CPU)
  --retain-model DIR       the model trained without the forget split. tofu: forget quality is
                           the KS test's p-value between its forget-set truth ratios and the
                           model's; privacy: PrivLeak (without it, neither is computed)
  --data TOFU_DIR          the TOFU files (forget10_perturbed.jsonl, retain_perturbed.jsonl, ...;
                           privacy: forget10.jsonl, holdout10.jsonl, ...)
  --split S                forget01 | forget05 | forget10
  --out F.json             the full results, written atomically
  --batch-size N           sequences per scoring forward (default 16)
  --max-new-tokens N       longest greedy answer (default 200)
  --threads N              CPU threads (default: all)
  --precision fp32|bf16    matrix products in fp32 (default) or BF16 with fp32 sums, for the
                           scoring and the generation of both models

privacy only:
  --k X                    Min-K% and Min-K%++'s fraction of lowest tokens, in (0, 1] (default 0.4)
  --prefix-tokens N        VerbMem's answer tokens given with the question (default 8)
  --no-memorization        the attacks only: no VerbMem or KnowMem (no generation)
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
  --precision fp32|bf16    matrix products in fp32 (default) or BF16 with fp32 sums
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


inline void print_privacy_table(const eval::privacy::Report& report, std::size_t prefix_tokens, std::ostream& out) {
    out << "Privacy: " << report.split << " (members) against " << eval::privacy::holdout_file(report.split)
        << " (non-members)\n"
        << "  AUC ranks members by loss-like scores: near 0 remembers them, 0.5 cannot tell.\n"
        << "  PrivLeak: 0 is ideal, -100 remembers all, positive is over-unlearned.\n\n"
        << "  attack     AUC      retain AUC  PrivLeak\n";
    for (std::size_t a = 0; a < eval::attacks.size(); ++a) {
        std::string name = eval::attack_name(eval::attacks[a]);
        name.resize(10, ' ');
        char line[96];
        if (report.privleak)
            std::snprintf(line, sizeof line, "  %s %.4f   %.4f      %8.2f\n", name.c_str(), report.auc[a],
                          (*report.retain_auc)[a], (*report.privleak)[a]);
        else
            std::snprintf(line, sizeof line, "  %s %.4f   n/a (no --retain-model)\n", name.c_str(), report.auc[a]);
        out << line;
    }
    if (report.verbmem)
        out << "\n  VerbMem    " << format_metric(report.verbmem->mean) << "  (question + " << prefix_tokens
            << " answer tokens; " << report.verbmem->skipped << " shorter answers skipped)\n"
            << "  KnowMem    " << format_metric(report.knowmem->mean) << "\n";
}

}  // namespace detail

// The --precision of eval and generate.
inline Precision parse_eval_precision(const Args& args) {
    return parse_precision(args.choice("--precision", "fp32", {"fp32", "bf16"}), "--precision");
}

// The --retain-model, which reads the same token ids as the model, in its precision.
template <class Model>
Model load_retain_model(const Args& args, const Model& model) {
    auto retain = model::load<Model>(args.required("--retain-model"));
    if (retain.config().vocab_size != model.config().vocab_size)
        fail(args.required("--retain-model"), ": the retain model's vocabulary (", retain.config().vocab_size,
             " tokens) differs from the model's (", model.config().vocab_size, ")");
    retain.set_precision(model.precision());
    return retain;
}

inline int run_eval(const std::vector<std::string>& words) {
    const Args args("simnpo eval", words,
                    {"--benchmark", "--model", "--retain-model", "--data", "--split", "--out", "--batch-size",
                     "--max-new-tokens", "--threads", "--tokenizer", "--prompt-template", "--chat-template", "--k",
                     "--prefix-tokens", "--precision"},
                    {"--no-memorization"});
    if (args.help()) {
        std::cout << eval_usage << text_flags;
        return 0;
    }
    args.required("--benchmark");
    const bool privacy = args.choice("--benchmark", "", {"tofu", "privacy"}) == "privacy";
    if (!privacy)
        for (const char* flag : {"--k", "--prefix-tokens", "--no-memorization"})
            if (args.has(flag)) fail("simnpo eval: ", flag, " applies to --benchmark privacy only");
    if (args.has("--out")) check_output_file(args.required("--out"), "--out");
    const std::filesystem::path model_dir = args.required("--model");
    const std::filesystem::path data_dir = args.required("--data");
    const std::string split = args.required("--split");
    args.choice("--split", "", {"forget01", "forget05", "forget10"});
    const auto batch_size = static_cast<std::size_t>(args.integer("--batch-size", 16, 1, 1 << 20));
    const auto max_new_tokens = args.integer("--max-new-tokens", 200, 1, 1 << 20);
    const eval::privacy::Options privacy_options{
        .k = args.real("--k", 0.4, 1e-9, 1.0),
        .batch_size = batch_size,
        .prefix_tokens = static_cast<std::size_t>(args.integer("--prefix-tokens", 8, 0, 1 << 20)),
        .max_new_tokens = max_new_tokens,
        .memorization = !args.has("--no-memorization")};
    const Precision precision = parse_eval_precision(args);
    args.apply_threads();

    return model::with_family(model_dir, [&]<class Family>(std::type_identity<Family>) {
        auto loaded = model::load<model::CausalLM<Family, simnpo::cpu, float>>(model_dir);
        loaded.set_precision(precision);
        const auto& model = loaded;
        const TextInput text(args, model_dir);
        const auto& format = text.required("simnpo eval");
        if (privacy) {
            const auto members = data::read_question_answers(data_dir / (split + ".jsonl"));
            const auto nonmembers = data::read_question_answers(data_dir / eval::privacy::holdout_file(split));
            std::optional<eval::privacy::Aucs> retain_auc;
            if (args.has("--retain-model")) {
                auto retain = load_retain_model(args, model);
                retain_auc = eval::privacy::mia_aucs(retain, format, std::span(members), std::span(nonmembers), privacy_options);
            }
            auto report = eval::privacy::evaluate(model, format, std::span(members), std::span(nonmembers), retain_auc,
                                                  privacy_options);
            report.split = split;
            if (args.has("--out"))
                write_file_atomic(args.required("--out"), detail::dump(eval::privacy::to_json(report), 1) + "\n");
            detail::print_privacy_table(report, privacy_options.prefix_tokens, std::cout);
            return 0;
        }
        const eval::tofu::Options options{.batch_size = batch_size, .max_new_tokens = max_new_tokens};
        std::optional<std::vector<double>> retain_ratios;
        if (args.has("--retain-model")) {
            auto retain = load_retain_model(args, model);
            eval::tofu::Options scores_only = options;
            scores_only.generate = false;  // its truth ratios are all forget quality needs
            retain_ratios = eval::tofu::truth_ratios(eval::tofu::evaluate_forget_set(retain, format, data_dir, split, scores_only));
        }
        const auto report = eval::tofu::evaluate(
            model, format, data_dir, split,
            retain_ratios ? std::optional<std::span<const double>>(*retain_ratios) : std::nullopt, options);
        if (args.has("--out")) write_file_atomic(args.required("--out"), detail::dump(eval::tofu::to_json(report), 1) + "\n");
        detail::print_tofu_table(report, std::cout);
        return 0;
    });
}

inline int run_generate(const std::vector<std::string>& words) {
    const Args args("simnpo generate", words,
                    {"--model", "--question", "--file", "--max-new-tokens", "--threads", "--tokenizer",
                     "--prompt-template", "--chat-template", "--precision"});
    if (args.help()) {
        std::cout << generate_usage << text_flags;
        return 0;
    }
    if (args.has("--question") == args.has("--file"))
        fail("simnpo generate: give exactly one of --question and --file");
    const std::filesystem::path model_dir = args.required("--model");
    const auto max_new_tokens = args.integer("--max-new-tokens", 200, 1, 1 << 20);
    const Precision precision = parse_eval_precision(args);
    args.apply_threads();
    return model::with_family(model_dir, [&]<class Family>(std::type_identity<Family>) {
        auto loaded = model::load<model::CausalLM<Family, simnpo::cpu, float>>(model_dir);
        loaded.set_precision(precision);
        const auto& model = loaded;
        const TextInput text(args, model_dir);
        const auto& format = text.required("simnpo generate");

        std::vector<std::string> questions;
        if (args.has("--question")) {
            questions.push_back(args.required("--question"));
        } else {
            const std::string input = read_text_file(args.required("--file"));
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
                                                    {.max_new_tokens = max_new_tokens, .stop_token = format.end_of_answer_id()});
        std::string output;
        for (std::size_t i = 0; i < questions.size(); ++i)
            output += detail::dump({{"question", questions[i]}, {"answer", format.tokenizer().decode(answers[i])}}) + "\n";
        std::cout << output;
        return 0;
    });
}

}  // namespace simnpo::cli
