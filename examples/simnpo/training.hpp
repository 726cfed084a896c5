// `simnpo train` and `simnpo unlearn` (DESIGN §6): flags to a model, an
// objective, an optimizer and the training loop.
#pragma once

#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "device.hpp"
#include "text.hpp"

namespace simnpo::cli {

constexpr const char* training_flags = R"(
training flags:
  --steps N | --epochs E   how long: optimizer steps, or passes over the data (one required)
  --batch-size N           examples per batch, on each side (default 8)
  --grad-accum K           batches per optimizer step (default 1)
  --optimizer adamw|sgd    (default adamw)
  --lr X                   base learning rate (default: train 5e-5, unlearn 1e-5)
  --weight-decay X         (default: adamw 0.01, sgd 0)
  --momentum X             sgd only (default 0)
  --adam-beta1 X --adam-beta2 X --adam-eps X   (defaults 0.9, 0.999, 1e-8)
  --max-grad-norm X        clip the gradient's global L2 norm, as PyTorch (default 1.0; 0 disables)
  --schedule constant|linear|cosine   learning-rate schedule (default constant)
  --warmup-steps N         linear warmup steps (default 0)
  --seed S                 data order (default 0)
  --group-by-length        batch examples of similar length (less padding, faster; still one
                           pass over the data an epoch, in random batches)
  --threads N              CPU threads (default: all)
  --save-every N           a checkpoint every N steps, as OUT/checkpoint-<step> (default 0: none)
  --resume CKPT            continue from a checkpoint directory, exactly, with the same data and flags
                           (any other setting is refused, naming it)
  --resume-override K[,K]  with --resume: accept these keys of the run configuration changed
                           (the keys of CKPT/trainer_state.json's "run", e.g. lr,total_steps)
  --overwrite              replace the checkpoints of another run found in OUT (else refused)
  --log FILE               one JSON line per step (appended to when resuming)
  --device cpu|cuda        where to compute (default cpu; cuda needs a GPU and a CUDA build)
  --tf32                   with --device cuda: matrix products on TF32 tensor cores (faster, 10-bit inputs)
  --precision fp32|bf16    matrix products in fp32 (default) or BF16 with fp32 sums (mixed precision:
                           fp32 master weights, optimizer state, norms, softmax and losses; on the
                           GPU cuBLASLt's BF16 tensor-core products); the reference model computes
                           in the same precision
  --recompute none|blocks  blocks: keep only each block's input and compute the rest again in the
                           backward (activation recomputation: less memory, one more forward through
                           the blocks, the same gradients bit for bit; default none)
)";

constexpr const char* train_usage = R"(usage: simnpo train --model DIR --data D.jsonl --out DIR2 (--steps N | --epochs E) [flags]

Fine-tunes the model on D.jsonl with the token-mean NLL of the answers and writes
the result to DIR2 (a model directory).

  --model DIR              model directory to start from
  --data D.jsonl           training examples ({"prompt_ids", "answer_ids"} or {"question", "answer"} lines)
  --out DIR2               where the trained model (and checkpoints) go
)";

constexpr const char* unlearn_usage = R"(usage: simnpo unlearn --model DIR --forget F.jsonl --forget-loss L --out DIR2 (--steps N | --epochs E) [flags]

Unlearns F.jsonl from the model: each step takes one forget batch and, with a retain
loss, one retain batch (the retain set is cycled). Writes the result to DIR2.

  --model DIR              the model to unlearn from (also the frozen reference, unless --reference)
  --forget F.jsonl         the forget set
  --retain R.jsonl         the retain set (needed by --retain-loss nll|kl)
  --forget-loss L          ga | npo | simnpo | dpo
  --retain-loss L          none | nll | kl (default none)
  --beta B                 inverse temperature of npo, simnpo, dpo (default 0.1)
  --gamma G                simnpo's margin (default 0; the authors' TOFU code's gamma' is G/beta)
  --forget-weight W        w_f in L = w_f L_forget + w_r L_retain (default 1)
  --retain-weight W        w_r (default 1)
  --reference DIR          the frozen reference model for npo, dpo and kl (default: --model)
  --weights-dtype fp32|bf16   how the reference stores its weights (default fp32); bf16 keeps its
                           matrices and embedding tables in BF16 only, half their memory (needs
                           --precision bf16; the reference's embeddings are then rounded too)
  --refusals R.jsonl       dpo's refusal answers, {"answer_ids": [...]} or {"answer": "..."} lines
  --out DIR2               where the unlearned model (and checkpoints) go
)";

namespace detail {

inline const std::set<std::string> training_valued = {
    "--model", "--out", "--steps", "--epochs", "--batch-size", "--grad-accum", "--optimizer", "--lr",
    "--weight-decay", "--momentum", "--adam-beta1", "--adam-beta2", "--adam-eps", "--max-grad-norm",
    "--schedule", "--warmup-steps", "--seed", "--threads", "--save-every", "--resume", "--resume-override", "--log",
    "--device", "--tokenizer", "--prompt-template", "--chat-template", "--precision", "--recompute"};
inline const std::set<std::string> training_switches = {"--tf32", "--group-by-length", "--overwrite"};

// The flags train and unlearn share, validated.
struct Training {
    std::filesystem::path model_dir, out, log;
    bool tf32 = false;
    Precision precision = Precision::fp32;
    model::Recompute recompute = model::Recompute::none;
    bool overwrite = false;
    train::Options options;
    std::string optimizer;
    optim::AdamW::Params adam;
    optim::SGD::Params sgd;
};

inline Training parse_training(const Args& args, double default_lr, const char* command) {
    constexpr long long most = std::numeric_limits<int>::max();
    constexpr double huge = 1e300;
    Training t;
    t.model_dir = args.required("--model");
    t.out = args.required("--out");
    check_output_directory(t.out, "--out");
    if (args.has("--steps") == args.has("--epochs")) fail(command, ": give exactly one of --steps and --epochs");
    t.options.steps = args.integer("--steps", 0, 1, most);
    t.options.epochs = args.integer("--epochs", 0, 1, most);
    t.options.batch_size = args.integer("--batch-size", 8, 1, 1 << 20);
    t.options.grad_accum = args.integer("--grad-accum", 1, 1, 1 << 20);
    t.options.seed = static_cast<std::uint64_t>(args.integer("--seed", 0, 0, std::numeric_limits<long long>::max()));
    t.options.group_by_length = args.has("--group-by-length");
    t.options.max_grad_norm = args.real("--max-grad-norm", 1.0, 0.0, huge);
    t.options.schedule = optim::schedule_kind(args.choice("--schedule", "constant", {"constant", "linear", "cosine"}));
    t.options.warmup_steps = args.integer("--warmup-steps", 0, 0, most);
    if (t.options.steps > 0 && t.options.warmup_steps > t.options.steps)
        fail(command, ": --warmup-steps ", t.options.warmup_steps, " is more than --steps ", t.options.steps);
    t.options.save_every = args.integer("--save-every", 0, 0, most);
    t.options.checkpoint_dir = t.out;
    if (args.has("--resume")) t.options.resume = args.required("--resume");
    if (args.has("--resume-override")) {
        if (!args.has("--resume")) fail(command, ": --resume-override applies to --resume only");
        std::string keys = args.required("--resume-override");
        for (std::size_t begin = 0; begin <= keys.size();) {
            const std::size_t end = std::min(keys.find(',', begin), keys.size());
            if (end == begin) fail(command, ": --resume-override: an empty key in '", keys, "'");
            t.options.resume_overrides.push_back(keys.substr(begin, end - begin));
            begin = end + 1;
        }
    }
    t.overwrite = args.has("--overwrite");
    if (args.has("--log")) {
        t.log = args.required("--log");
        check_output_file(t.log, "--log");
    }
    args.apply_threads();
    const bool on_gpu = args.choice("--device", "cpu", {"cpu", "cuda"}) == "cuda";  // main.cpp dispatches on it
    if (args.has("--tf32") && !on_gpu) fail(command, ": --tf32 applies to --device cuda only");
    t.tf32 = args.has("--tf32");
    t.precision = parse_precision(args.choice("--precision", "fp32", {"fp32", "bf16"}), "--precision");
    t.recompute = model::parse_recompute(args.choice("--recompute", "none", {"none", "blocks"}), "--recompute");

    t.optimizer = args.choice("--optimizer", "adamw", {"adamw", "sgd"});
    const double lr = args.real("--lr", default_lr, 0.0, huge);
    if (t.optimizer == "adamw") {
        if (args.has("--momentum")) fail(command, ": --momentum applies to --optimizer sgd only");
        t.adam = {.lr = lr,
                  .beta1 = args.real("--adam-beta1", 0.9, 0.0, 0.999999),
                  .beta2 = args.real("--adam-beta2", 0.999, 0.0, 0.999999999),
                  .eps = args.real("--adam-eps", 1e-8, 1e-300, 1.0),
                  .weight_decay = args.real("--weight-decay", 0.01, 0.0, huge)};
    } else {
        for (const char* flag : {"--adam-beta1", "--adam-beta2", "--adam-eps"})
            if (args.has(flag)) fail(command, ": ", flag, " applies to --optimizer adamw only");
        t.sgd = {.lr = lr,
                 .momentum = args.real("--momentum", 0.0, 0.0, 1.0),
                 .weight_decay = args.real("--weight-decay", 0.0, 0.0, huge)};
    }
    return t;
}

// Runs the loop with the chosen optimizer, a progress line and the log.
template <class Model, class Reference, class Objective>
train::Summary run_loop(Model& model, Reference& reference, const Objective& objective, const Training& t,
                        std::span<const data::Example> forget, std::span<const data::Example> retain) {
    const auto go = [&](const auto& optimizer) {
        train::ProgressBar progress;
        if (t.log.empty())
            return train::unlearn(model, reference, objective, optimizer, forget, retain, t.options, progress);
        train::JsonlLog log(t.log, !t.options.resume.empty());
        return train::unlearn(model, reference, objective, optimizer, forget, retain, t.options, progress, log);
    };
    if (t.optimizer == "adamw") return go(optim::AdamW(t.adam));
    return go(optim::SGD(t.sgd));
}

// Readies OUT for a run, under its lock: temporaries there are stale (their
// writer held the lock and is gone), and checkpoints there belong to another
// run unless this one resumes from one of them; those are refused without
// --overwrite, removed with it.
inline void prepare_output(const Training& t) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path out = fs::weakly_canonical(t.out, ec);
    const fs::path resume = t.options.resume.empty() ? fs::path() : fs::weakly_canonical(t.options.resume, ec);
    const bool resuming_here = !resume.empty() && resume.parent_path() == out;
    std::vector<fs::path> others;
    for (const auto& entry : fs::directory_iterator(t.out)) {
        const std::string name = entry.path().filename().string();
        if (name.find(".tmp-") != std::string::npos) fs::remove_all(entry.path(), ec);
        else if (name.starts_with("checkpoint-") && entry.is_directory() && !resuming_here) others.push_back(entry.path());
    }
    if (others.empty()) return;
    if (!t.overwrite)
        fail("--out '", t.out.string(), "' holds another run's checkpoints (", others.front().filename().string(),
             others.size() > 1 ? " and " + std::to_string(others.size() - 1) + " more" : std::string(),
             "): give --overwrite to replace them, or --resume one of them");
    for (const auto& dir : others) fs::remove_all(dir, ec);
}

// Writes the model, its tokenizer and `extra` files into OUT as one step.
template <class Model>
void save_output(const std::filesystem::path& out, const Model& model, const TextInput& text,
                 const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    DirectoryWriter writer(out);
    model::write_into(writer, model);
    text.write_into(writer);
    for (const auto& [name, content] : extra) writer.write(name, content);
    writer.commit();
}

inline void report(const train::Summary& summary, const std::filesystem::path& out) {
    std::cout << "wrote " << out.string() << " after " << summary.steps << " steps (loss "
              << summary.last.loss << ")\n";
}

}  // namespace detail

// The commands run on the backend that --device chose (main.cpp dispatches on it).
template <class Backend>
int run_train(const std::vector<std::string>& words) {
    auto valued = detail::training_valued;
    valued.insert("--data");
    const Args args("simnpo train", words, valued, detail::training_switches);
    if (args.help()) {
        std::cout << train_usage << training_flags << text_flags;
        return 0;
    }
    detail::Training t = detail::parse_training(args, 5e-5, "simnpo train");
    t.options.run_config = {{"objective", "nll"}, {"precision", precision_name(t.precision)}};
    const OutputLock lock(t.out);
    detail::prepare_output(t);
    const std::filesystem::path data_path = args.required("--data");
    return model::with_family(t.model_dir, [&]<class Family>(std::type_identity<Family>) {
        auto model = model::load<model::CausalLM<Family, Backend, float>>(t.model_dir, make_backend<Backend>(t.tf32));
        model.set_precision(t.precision);
        model.set_recompute(t.recompute);
        const TextInput text(args, t.model_dir);
        const auto examples = data::read_jsonl(data_path, model.config(), text.format());
        loss::NoReference none;
        const auto summary = detail::run_loop(model, none, loss::Objective<loss::NLL>{}, t, examples, {});
        detail::save_output(t.out, model, text);
        detail::report(summary, t.out);
        return 0;
    });
}

template <class Backend>
int run_unlearn(const std::vector<std::string>& words) {
    auto valued = detail::training_valued;
    valued.insert({"--forget", "--retain", "--forget-loss", "--retain-loss", "--beta", "--gamma", "--forget-weight",
                   "--retain-weight", "--reference", "--refusals", "--weights-dtype"});
    const Args args("simnpo unlearn", words, valued, detail::training_switches);
    if (args.help()) {
        std::cout << unlearn_usage << training_flags << text_flags;
        return 0;
    }
    detail::Training t = detail::parse_training(args, 1e-5, "simnpo unlearn");
    args.required("--forget-loss");
    const std::string forget_loss = args.choice("--forget-loss", "", {"ga", "npo", "simnpo", "dpo"});
    const std::string retain_loss = args.choice("--retain-loss", "none", {"none", "nll", "kl"});
    constexpr double huge = 1e300;
    const double beta = args.real("--beta", 0.1, std::numeric_limits<double>::min(), huge);
    const double gamma = args.real("--gamma", 0.0, -huge, huge);
    const double forget_weight = args.real("--forget-weight", 1.0, 0.0, huge);
    const double retain_weight = args.real("--retain-weight", 1.0, 0.0, huge);
    if (args.has("--beta") && forget_loss == "ga") fail("simnpo unlearn: --beta applies to npo, simnpo and dpo");
    if (args.has("--gamma") && forget_loss != "simnpo") fail("simnpo unlearn: --gamma applies to --forget-loss simnpo only");
    if (args.has("--refusals") != (forget_loss == "dpo"))
        fail("simnpo unlearn: ", forget_loss == "dpo" ? "--forget-loss dpo needs --refusals"
                                                      : "--refusals applies to --forget-loss dpo only");
    if (retain_loss == "none" && args.has("--retain"))
        fail("simnpo unlearn: --retain is given but --retain-loss is none (choose nll or kl)");
    if (retain_loss != "none" && !args.has("--retain")) fail("simnpo unlearn: --retain-loss ", retain_loss, " needs --retain");
    if (retain_loss == "none" && args.has("--retain-weight")) fail("simnpo unlearn: --retain-weight needs a retain loss");
    const bool needs_reference = forget_loss == "npo" || forget_loss == "dpo" || retain_loss == "kl";
    if (args.has("--reference") && !needs_reference)
        fail("simnpo unlearn: --reference applies to npo, dpo and kl only (", forget_loss, " and ", retain_loss, " use none)");
    if (args.has("--weights-dtype") && !needs_reference)
        fail("simnpo unlearn: --weights-dtype is the reference's, for npo, dpo and kl only (", forget_loss, " and ",
             retain_loss, " use none)");
    const WeightsDtype reference_weights =
        parse_weights_dtype(args.choice("--weights-dtype", "fp32", {"fp32", "bf16"}), "--weights-dtype");
    if (reference_weights == WeightsDtype::bf16 && t.precision != Precision::bf16)
        fail("simnpo unlearn: --weights-dtype bf16 needs --precision bf16 (the reference's products are then BF16)");
    if (reference_weights == WeightsDtype::bf16 && !std::is_same_v<Backend, simnpo::cpu>)
        fail("simnpo unlearn: --weights-dtype bf16 is built for --device cpu only so far");

    const OutputLock lock(t.out);
    detail::prepare_output(t);

    // What the loop cannot see of the run, for a resume to be checked against.
    t.options.run_config = {{"forget_loss", forget_loss}, {"retain_loss", retain_loss},
                            {"forget_weight", forget_weight}, {"retain_weight", retain_weight},
                            {"precision", precision_name(t.precision)}};
    if (forget_loss != "ga") t.options.run_config["beta"] = beta;
    if (forget_loss == "simnpo") t.options.run_config["gamma"] = gamma;
    if (needs_reference) t.options.run_config["reference"] = "model";  // the model as loaded; --reference replaces it
    // Recorded when not the default, so that checkpoints from before the flag still resume.
    if (reference_weights != WeightsDtype::fp32)
        t.options.run_config["reference_weights"] = weights_dtype_name(reference_weights);

    return model::with_family(t.model_dir, [&]<class Family>(std::type_identity<Family>) {
        using Model = model::CausalLM<Family, Backend, float>;
        Model model = model::load<Model>(t.model_dir, make_backend<Backend>(t.tf32));
        model.set_precision(t.precision);
        model.set_recompute(t.recompute);
        const TextInput text(args, t.model_dir);
        const auto forget = data::read_jsonl(args.required("--forget"), model.config(), text.format());
        const auto retain = args.has("--retain")
                                ? data::read_jsonl(args.required("--retain"), model.config(), text.format())
                                : std::vector<data::Example>{};

        // The reference is loaded before anything changes the model: --resume
        // loads the checkpoint into the model inside the loop.
        const auto run = [&](const auto& objective) {
            using Objective = std::remove_cvref_t<decltype(objective)>;
            if constexpr (Objective::needs_reference) {
                std::optional<loss::FrozenReference<Model>> reference;
                const typename loss::FrozenReference<Model>::Options options{.weights = reference_weights};
                if (args.has("--reference")) {
                    auto reference_model =
                        model::load<Model>(args.required("--reference"), make_backend<Backend>(t.tf32));
                    reference_model.set_precision(t.precision);
                    if (reference_model.config().vocab_size != model.config().vocab_size)
                        fail(args.required("--reference"), ": the reference's vocabulary differs from the model's");
                    t.options.run_config["reference"] = train::detail::model_fingerprint(reference_model);
                    reference.emplace(reference_model, options);
                } else {
                    reference.emplace(model, options);
                }
                return detail::run_loop(model, *reference, objective, t, forget, retain);
            } else {
                loss::NoReference none;
                return detail::run_loop(model, none, objective, t, forget, retain);
            }
        };
        const auto with_retain = [&](const auto& forget_term) {
            using Forget = std::remove_cvref_t<decltype(forget_term)>;
            const loss::ObjectiveWeights w{forget_weight, retain_weight};
            if (retain_loss == "nll") return run(loss::Objective<Forget, loss::NLL>(forget_term, loss::NLL{}, w));
            if (retain_loss == "kl") return run(loss::Objective<Forget, loss::KL>(forget_term, loss::KL{}, w));
            return run(loss::Objective<Forget>(forget_term, loss::NoRetain{}, w));
        };
        train::Summary summary;
        if (forget_loss == "ga") summary = with_retain(loss::GradAscent{});
        else if (forget_loss == "npo") summary = with_retain(loss::NPO({.beta = beta}));
        else if (forget_loss == "simnpo") summary = with_retain(loss::SimNPO({.beta = beta, .gamma = gamma}));
        else {
            loss::DPO dpo(data::read_refusals(args.required("--refusals"), model.config(), text.format()), {.beta = beta});
            Fingerprint refusals;
            for (const auto& answer : dpo.refusals()) refusals.add_values(std::span<const std::int32_t>(answer));
            t.options.run_config["refusals"] = refusals.hex();
            summary = with_retain(dpo);
        }
        detail::save_output(t.out, model, text);
        detail::report(summary, t.out);
        return 0;
    });
}

}  // namespace simnpo::cli
