// `simnpo relearn`: the relearning attack on an unlearned model.
#pragma once

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "evaluate.hpp"
#include "text.hpp"
#include "training.hpp"

namespace simnpo::cli {

constexpr const char* relearn_usage = R"(usage: simnpo relearn --model DIR --forget F.jsonl --holdout H.jsonl --subset N --steps S --out DIR2 [flags]

The relearning attack (Hu et al., 2024): fine-tunes an unlearned model with the
NLL on N forget examples drawn at random (--seed), and probes the whole forget
set before the first step, every --eval-every steps and after the last:
TOFU's forget probability (over the whole set, and over the examples the attack
did not train on), the ROUGE-L recall of greedy answers, and each membership-
inference attack's AUC against the holdout questions (see simnpo eval
--benchmark privacy: near 0 means the forget set is recognised again).
Prints one line a probe; writes DIR2/relearn.json and the relearned model to DIR2.

  --model DIR              the unlearned model
  --forget F.jsonl         the forget set, {"question", "answer"} lines
  --holdout H.jsonl        non-members for the attacks' AUC, {"question", "answer"} lines
  --subset N               forget examples the attack fine-tunes on
  --steps S                fine-tuning steps
  --out DIR2               relearn.json and the relearned model
  --eval-every E           a probe every E steps (default: S/5)
  --k X                    Min-K% and Min-K%++'s fraction (default 0.4)
  --no-rouge               skip the greedy answers (they are the slow part of a probe)
  --max-new-tokens N       longest greedy answer (default 200)
  --eval-batch-size N      sequences per scoring forward (default 16)
)";

constexpr const char* relearn_training_flags = R"(
training flags: --batch-size (default 8), --lr (default 1e-5), --optimizer, --weight-decay,
--momentum, --adam-beta1, --adam-beta2, --adam-eps, --max-grad-norm, --schedule,
--warmup-steps, --seed (the subset and the data order), --threads, --log, as simnpo train
)";

inline int run_relearn(const std::vector<std::string>& words) {
    std::set<std::string> valued = detail::training_valued;
    for (const char* flag : {"--epochs", "--save-every", "--resume", "--device", "--grad-accum"}) valued.erase(flag);
    valued.insert({"--forget", "--holdout", "--subset", "--eval-every", "--k", "--max-new-tokens", "--eval-batch-size"});
    const Args args("simnpo relearn", words, valued, {"--no-rouge"});
    if (args.help()) {
        std::cout << relearn_usage << relearn_training_flags << text_flags;
        return 0;
    }
    for (const char* flag : {"--model", "--forget", "--holdout", "--subset", "--steps", "--out"}) args.required(flag);
    const detail::Training t = detail::parse_training(args, 1e-5, "simnpo relearn");
    const OutputLock lock(t.out);
    detail::prepare_output(t);
    const auto forget = data::read_question_answers(args.required("--forget"));
    const auto holdout = data::read_question_answers(args.required("--holdout"));
    eval::RelearnOptions options;
    options.subset_size = static_cast<std::size_t>(args.integer("--subset", 0, 1, 1LL << 40));
    if (options.subset_size > forget.size())
        fail("simnpo relearn: --subset ", options.subset_size, " is more than the ", forget.size(), " examples of ",
             args.required("--forget"));
    options.eval_every = args.integer("--eval-every", 0, 1, t.options.steps);
    options.training = t.options;
    options.probe.k = args.real("--k", 0.4, 1e-9, 1.0);
    options.probe.batch_size = static_cast<std::size_t>(args.integer("--eval-batch-size", 16, 1, 1 << 20));
    options.probe.max_new_tokens = args.integer("--max-new-tokens", 200, 1, 1 << 20);
    options.rouge = !args.has("--no-rouge");

    return model::with_family(t.model_dir, [&]<class Family>(std::type_identity<Family>) {
        auto model = model::load<model::CausalLM<Family, simnpo::cpu, float>>(t.model_dir);
        const TextInput text(args, t.model_dir);
        const auto& format = text.required("simnpo relearn");
        const auto relearn = [&](const auto& optimizer) {
            if (t.log.empty()) return eval::relearn(model, optimizer, format, std::span(forget), std::span(holdout), options);
            train::JsonlLog log(t.log, false);
            return eval::relearn(model, optimizer, format, std::span(forget), std::span(holdout), options, log);
        };
        const auto result = t.optimizer == "adamw" ? relearn(optim::AdamW(t.adam)) : relearn(optim::SGD(t.sgd));

        detail::save_output(t.out, model, text, {{"relearn.json", eval::to_json(result).dump(1) + "\n"}});
        std::printf("relearning on %zu of %zu forget examples (AUC: members ranked by loss-like scores)\n",
                    result.subset.size(), forget.size());
        std::printf("%6s %12s %12s %9s %9s %9s %9s %9s\n", "step", "probability", "unseen_prob", "rouge_l", "auc_loss",
                    "auc_zlib", "auc_mink", "auc_mink++");
        for (const auto& p : result.points) {
            char unseen[32] = "-", rouge[32] = "-";
            if (p.unseen_probability) std::snprintf(unseen, sizeof unseen, "%.4f", *p.unseen_probability);
            if (p.rouge_l_recall) std::snprintf(rouge, sizeof rouge, "%.4f", *p.rouge_l_recall);
            std::printf("%6lld %12.4f %12s %9s %9.4f %9.4f %9.4f %9.4f\n", static_cast<long long>(p.step), p.probability,
                        unseen, rouge, p.auc[0], p.auc[1], p.auc[2], p.auc[3]);
        }
        std::printf("wrote %s\n", (t.out / "relearn.json").c_str());
        return 0;
    });
}

}  // namespace simnpo::cli
