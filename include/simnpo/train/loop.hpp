#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/loss/concepts.hpp"
#include "simnpo/loss/objective.hpp"
#include "simnpo/loss/reference.hpp"
#include "simnpo/optim/adamw.hpp"
#include "simnpo/optim/clip.hpp"
#include "simnpo/optim/schedule.hpp"
#include "simnpo/optim/sgd.hpp"
#include "simnpo/train/checkpoint.hpp"
#include "simnpo/train/order.hpp"

namespace simnpo::train {

// How long and how a run goes (DESIGN §6). Set steps or epochs, not both.
struct Options {
    std::int64_t steps = 0;       // optimizer steps
    std::int64_t epochs = 0;      // passes over the forget set (the training set for train())
    std::int64_t batch_size = 8;  // examples per micro-batch, on each side
    std::int64_t grad_accum = 1;  // micro-batches per optimizer step
    std::uint64_t seed = 0;       // data order
    bool group_by_length = false; // batch forget (training) examples of similar length: less padding (DataOrder)
    double max_grad_norm = 1.0;   // clip by global L2 norm, as PyTorch's clip_grad_norm_; 0 disables
    optim::ScheduleKind schedule = optim::ScheduleKind::constant;
    std::int64_t warmup_steps = 0;
    std::int64_t save_every = 0;              // a checkpoint every N steps (0: none)
    std::filesystem::path checkpoint_dir = {};  // where: checkpoint_dir/checkpoint-<step>
    std::filesystem::path resume = {};          // a checkpoint to continue from (empty: start afresh)
};

// What callbacks see after each optimizer step.
struct StepInfo {
    std::int64_t step = 0;         // steps done, 1-based
    std::int64_t total_steps = 0;
    double epoch = 0.0;            // passes over the forget set so far
    double loss = 0.0;             // w_f·L_forget + w_r·L_retain, mean over the step's micro-batches
    double forget_loss = 0.0;
    double retain_loss = 0.0;
    double lr = 0.0;               // the rate this step used
    double grad_norm = 0.0;        // before clipping
    std::int64_t tokens = 0;       // answer tokens scored, forget and retain
    double seconds = 0.0;          // this step's wall time
    double tokens_per_s = 0.0;
    double elapsed_s = 0.0;        // since the run (or its resumption) began
    double remaining_s = 0.0;      // estimated from the mean step time so far
    const loss::StepReport* report = nullptr;  // the last micro-batch's, with each example's weight
};

struct RunInfo {
    std::int64_t first_step = 0;   // steps already done (resumed runs)
    std::int64_t total_steps = 0;
};

struct Summary {
    std::int64_t steps = 0;        // steps done at the end
    bool stopped = false;          // a callback stopped the run
    StepInfo last;
};

// Callbacks are plain objects; each hook is optional and detected (DESIGN §7):
//   void on_begin(const RunInfo&)
//   bool on_step(const StepInfo&)   (true stops the run; a void on_step never does)
//   void on_end(const Summary&)
namespace detail {

template <class C>
void call_on_begin(C& callback, const RunInfo& info) {
    if constexpr (requires { callback.on_begin(info); }) callback.on_begin(info);
}

template <class C>
bool call_on_step(C& callback, const StepInfo& info) {
    if constexpr (requires { { callback.on_step(info) } -> std::convertible_to<bool>; })
        return static_cast<bool>(callback.on_step(info));
    else if constexpr (requires { callback.on_step(info); }) {
        callback.on_step(info);
        return false;
    } else {
        return false;
    }
}

template <class C>
void call_on_end(C& callback, const Summary& summary) {
    if constexpr (requires { callback.on_end(summary); }) callback.on_end(summary);
}

template <class Optimizer>
constexpr const char* optimizer_name() {
    if constexpr (std::same_as<Optimizer, optim::AdamW>) return "adamw";
    else if constexpr (std::same_as<Optimizer, optim::SGD>) return "sgd";
    else return "custom";
}

inline std::vector<data::Example> gather(std::span<const data::Example> set, const std::vector<std::size_t>& indices) {
    std::vector<data::Example> batch;
    batch.reserve(indices.size());
    for (const auto i : indices) batch.push_back(set[i]);
    return batch;
}

}  // namespace detail

// Unlearns `forget` from `model` with `objective`, keeping `retain`, with the
// given frozen reference (or loss::NoReference for objectives without one).
// Each optimizer step takes grad_accum micro-batches, each one forget batch and
// one retain batch. Returns when the steps are done or a callback stops it.
template <class Model, class Reference, class Objective, class Optimizer, class... Callbacks>
    requires std::same_as<Reference, loss::NoReference> || loss::ReferenceSource<Reference>
Summary unlearn(Model& model, Reference& reference, const Objective& objective, const Optimizer& optimizer,
                std::span<const data::Example> forget, std::span<const data::Example> retain,
                const Options& options, Callbacks&&... callbacks) {
    if (options.steps < 0 || options.epochs < 0) fail("train::Options: steps and epochs must not be negative");
    if ((options.steps > 0) == (options.epochs > 0)) fail("train::Options: set either steps or epochs");
    if (options.grad_accum < 1) fail("train::Options: grad_accum must be at least 1, got ", options.grad_accum);
    if (options.save_every < 0) fail("train::Options: save_every must not be negative");
    if (options.save_every > 0 && options.checkpoint_dir.empty())
        fail("train::Options: save_every needs a checkpoint_dir");
    if (!(options.max_grad_norm >= 0.0) || !std::isfinite(options.max_grad_norm))
        fail("train::Options: max_grad_norm must be finite and >= 0, got ", options.max_grad_norm);
    if (Objective::has_retain && retain.empty()) fail("unlearn: the objective has a retain loss but no retain set");
    if (!Objective::has_retain && !retain.empty())
        fail("unlearn: a retain set was given but the objective has no retain loss");

    std::vector<std::size_t> lengths;
    if (options.group_by_length)
        for (const auto& example : forget) lengths.push_back(example.prompt_ids.size() + example.answer_ids.size());
    DataOrder order(forget.size(), retain.size(), options.batch_size, options.seed, std::move(lengths));
    const std::int64_t accum = options.grad_accum;
    const std::int64_t total_steps =
        options.steps > 0 ? options.steps : (options.epochs * order.batches_per_pass() + accum - 1) / accum;
    if (options.warmup_steps < 0 || options.warmup_steps > total_steps)
        fail("train::Options: warmup_steps must lie in [0, ", total_steps, "], got ", options.warmup_steps);
    const optim::Schedule schedule{options.schedule, options.warmup_steps, total_steps};

    auto state = optimizer.state(model);
    TrainerState trainer{0,
                         options.seed,
                         options.batch_size,
                         accum,
                         static_cast<std::int64_t>(forget.size()),
                         static_cast<std::int64_t>(retain.size()),
                         detail::optimizer_name<Optimizer>(),
                         0,
                         options.group_by_length};
    if (!options.resume.empty()) {
        const TrainerState saved = load_checkpoint(options.resume, model, state);
        const auto same = [&](const char* what, auto a, auto b) {
            if (a != b)
                fail(options.resume.string(), ": the checkpoint's ", what, " is ", a, ", this run's ", b,
                     ": a resumed run must take the same batches");
        };
        same("seed", saved.seed, trainer.seed);
        same("batch size", saved.batch_size, trainer.batch_size);
        same("gradient accumulation", saved.grad_accum, trainer.grad_accum);
        same("forget set size", saved.forget_examples, trainer.forget_examples);
        same("retain set size", saved.retain_examples, trainer.retain_examples);
        same("optimizer", saved.optimizer, trainer.optimizer);
        same("grouping by length", saved.group_by_length, trainer.group_by_length);
        if (saved.step > total_steps)
            fail(options.resume.string(), ": the checkpoint is at step ", saved.step, ", past this run's ", total_steps);
        trainer.step = saved.step;
    }

    const RunInfo run{trainer.step, total_steps};
    (detail::call_on_begin(callbacks, run), ...);
    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    Summary summary;
    summary.steps = trainer.step;
    loss::StepReport report;
    for (std::int64_t step = trainer.step; step < total_steps; ++step) {
        const auto step_started = clock::now();
        StepInfo info;
        for (std::int64_t a = 0; a < accum; ++a) {
            const std::int64_t m = step * accum + a;
            const auto forget_batch = detail::gather(forget, order.forget_batch(m));
            const auto retain_batch = detail::gather(retain, order.retain_batch(m));
            try {
                report = objective.gradient(model, forget_batch, retain_batch, reference,
                                            a == 0 ? GradStore::overwrite : GradStore::accumulate,
                                            1.0 / static_cast<double>(accum));
            } catch (const Error& error) {
                fail("step ", step + 1, ": ", error.what());
            }
            info.loss += report.total / static_cast<double>(accum);
            info.forget_loss += report.forget_loss / static_cast<double>(accum);
            info.retain_loss += report.retain_loss / static_cast<double>(accum);
            info.tokens += report.forget_tokens + report.retain_tokens;
        }
        info.grad_norm = optim::grad_norm(model);
        if (!std::isfinite(info.grad_norm))
            fail("step ", step + 1, ": the gradient is not finite (norm ", info.grad_norm, ")");
        info.lr = optimizer.params().lr * schedule.factor(step);
        // Clipping is applied by the optimizer as it reads the gradients.
        optimizer.step(model, state, info.lr,
                       optim::clip_coefficient<typename Model::scalar_type>(info.grad_norm, options.max_grad_norm));

        const auto now = clock::now();
        info.step = step + 1;
        info.total_steps = total_steps;
        info.epoch = static_cast<double>(info.step * accum) / static_cast<double>(order.batches_per_pass());
        info.seconds = std::chrono::duration<double>(now - step_started).count();
        info.tokens_per_s = static_cast<double>(info.tokens) / std::max(info.seconds, 1e-9);
        info.elapsed_s = std::chrono::duration<double>(now - started).count();
        info.remaining_s = info.elapsed_s / static_cast<double>(info.step - run.first_step) *
                           static_cast<double>(total_steps - info.step);
        info.report = &report;
        trainer.step = info.step;
        trainer.optimizer_step = state.step;
        summary.steps = info.step;
        summary.last = info;

        if (options.save_every > 0 && (info.step % options.save_every == 0 || info.step == total_steps))
            save_checkpoint(options.checkpoint_dir / ("checkpoint-" + std::to_string(info.step)), model, state,
                            trainer);
        bool stop = false;
        ((stop = detail::call_on_step(callbacks, info) || stop), ...);
        if (stop) {
            summary.stopped = true;
            break;
        }
    }
    summary.last.report = nullptr;  // the report does not outlive the run
    (detail::call_on_end(callbacks, summary), ...);
    return summary;
}

// The same with the reference a reference-based objective needs made here:
// the model as it is now, frozen (DESIGN §3's default).
template <class Model, class Objective, class Optimizer, class... Callbacks>
    requires(!std::same_as<std::remove_cvref_t<Objective>, loss::NoReference> &&
             !loss::ReferenceSource<std::remove_cvref_t<Objective>>)
Summary unlearn(Model& model, const Objective& objective, const Optimizer& optimizer,
                std::span<const data::Example> forget, std::span<const data::Example> retain,
                const Options& options, Callbacks&&... callbacks) {
    if constexpr (Objective::needs_reference) {
        loss::FrozenReference<Model> reference(model);
        return unlearn(model, reference, objective, optimizer, forget, retain, options,
                       std::forward<Callbacks>(callbacks)...);
    } else {
        loss::NoReference none;
        return unlearn(model, none, objective, optimizer, forget, retain, options,
                       std::forward<Callbacks>(callbacks)...);
    }
}

// Fine-tuning: the token-mean NLL of DESIGN §3 on `examples`, with the same
// loop (its "forget set" is the training set).
template <class Model, class Optimizer, class... Callbacks>
Summary train(Model& model, const Optimizer& optimizer, std::span<const data::Example> examples,
              const Options& options, Callbacks&&... callbacks) {
    loss::NoReference none;
    return unlearn(model, none, loss::Objective<loss::NLL>{}, optimizer, examples, {}, options,
                   std::forward<Callbacks>(callbacks)...);
}

}  // namespace simnpo::train
