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

#include <nlohmann/json.hpp>

#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/fingerprint.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/core/interrupt.hpp"
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
    // How the reference that unlearn(model, objective, ...) makes stores its
    // weights (loss::FrozenReference::Options::weights; bf16 needs a model in BF16 mode).
    WeightsDtype reference_weights = WeightsDtype::fp32;
    // The caller's part of the run configuration, for what the loop cannot see
    // (the objective and its settings, the reference): recorded in each
    // checkpoint's trainer_state.json with the loop's own keys, and compared
    // key by key when a run resumes.
    nlohmann::json run_config = nlohmann::json::object();
    // Keys of the run configuration a resumed run may change (its own value is
    // then used and recorded); any other difference is refused.
    std::vector<std::string> resume_overrides = {};
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

template <class Optimizer>
void add_optimizer_settings(nlohmann::json& run, const Optimizer& optimizer) {
    run["optimizer"] = optimizer_name<Optimizer>();
    if constexpr (std::same_as<Optimizer, optim::AdamW>) {
        const auto& p = optimizer.params();
        run.update({{"lr", p.lr}, {"adam_beta1", p.beta1}, {"adam_beta2", p.beta2}, {"adam_eps", p.eps},
                    {"weight_decay", p.weight_decay}});
    } else if constexpr (std::same_as<Optimizer, optim::SGD>) {
        const auto& p = optimizer.params();
        run.update({{"lr", p.lr}, {"momentum", p.momentum}, {"weight_decay", p.weight_decay}});
    } else {
        run["lr"] = optimizer.params().lr;
    }
}

inline std::string data_fingerprint(std::span<const data::Example> examples) {
    Fingerprint fingerprint;
    for (const auto& example : examples) {
        fingerprint.add_values(std::span<const std::int32_t>(example.prompt_ids));
        fingerprint.add_values(std::span<const std::int32_t>(example.answer_ids));
    }
    return fingerprint.hex();
}

// The parameters' fingerprint, read from the backend a slice at a time.
template <class Model>
std::string model_fingerprint(const Model& model) {
    using Scalar = typename Model::scalar_type;
    constexpr std::size_t slice = std::size_t{1} << 22;
    std::vector<Scalar> host;
    Fingerprint fingerprint;
    const auto& params = model.params();
    for (std::size_t begin = 0; begin < params.size(); begin += slice) {
        host.resize(std::min(slice, params.size() - begin));
        copy_to_host(model.backend(), std::span<Scalar>(host), params.data() + begin);
        fingerprint.add_values(std::span<const Scalar>(host));
    }
    return fingerprint.hex();
}

// Refuses to resume `saved` with a different configuration, key by key, except
// the keys the run overrides; `optimizer` cannot be: its saved state would not fit.
inline void check_same_run(const nlohmann::json& saved, const nlohmann::json& run, const Options& options) {
    const std::string where = (options.resume / "trainer_state.json").string();
    for (const auto& key : options.resume_overrides) {
        if (!saved.contains(key) && !run.contains(key))
            fail(where, ": cannot override '", key, "': not a key of the run's configuration");
        if (key == "optimizer") fail(where, ": the optimizer cannot be overridden: its saved state would not fit another");
    }
    std::vector<std::string> keys;
    for (const auto& [key, value] : saved.items()) keys.push_back(key);
    for (const auto& [key, value] : run.items())
        if (!saved.contains(key)) keys.push_back(key);
    for (const auto& key : keys) {
        const nlohmann::json before = saved.value(key, nlohmann::json()), now = run.value(key, nlohmann::json());
        if (before == now || std::ranges::find(options.resume_overrides, key) != options.resume_overrides.end()) continue;
        fail(where, ": the checkpoint's run has ", key, " = ", before.dump(), ", this one ", now.dump(),
             ": a resume continues the same run (override the key to change it: --resume-override ", key, ")");
    }
}

// What trainer_state.json records of a run (TrainerState::run): the loop's own keys and the caller's.
template <class Model, class Optimizer>
nlohmann::json run_configuration(const Model& model, const Optimizer& optimizer, std::span<const data::Example> forget,
                                 std::span<const data::Example> retain, const Options& options,
                                 std::int64_t total_steps) {
    nlohmann::json run = {{"seed", options.seed},
                          {"batch_size", options.batch_size},
                          {"grad_accum", options.grad_accum},
                          {"group_by_length", options.group_by_length},
                          {"forget_examples", forget.size()},
                          {"retain_examples", retain.size()},
                          {"forget_data", data_fingerprint(forget)},
                          {"retain_data", data_fingerprint(retain)},
                          {"schedule", optim::schedule_name(options.schedule)},
                          {"warmup_steps", options.warmup_steps},
                          {"total_steps", total_steps},
                          {"max_grad_norm", options.max_grad_norm},
                          {"model", model_fingerprint(model)}};
    add_optimizer_settings(run, optimizer);
    if (!options.run_config.is_object()) fail("train::Options: run_config must be a JSON object");
    for (const auto& [key, value] : options.run_config.items()) {
        if (run.contains(key)) fail("train::Options: run_config key '", key, "' is one the loop records itself");
        run[key] = value;
    }
    return run;
}

// An update can overflow with finite gradients (a huge rate): such a model must never be saved. Checked
// before each save rather than each step: a step after one that overflowed fails its own gradient check.
template <class Model>
void check_parameters_finite(const Model& model, std::int64_t step) {
    const auto& params = model.params();
    if (!std::isfinite(sum_of_squares(model.backend(), params.data(), static_cast<std::int64_t>(params.size()))))
        fail("step ", step, ": the update made the parameters non-finite (the learning rate is too high?); "
             "nothing of this step was saved");
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
    // The run's configuration is recorded in checkpoints and compared on resume; a run with neither skips
    // fingerprinting the model and the data.
    TrainerState trainer{0, 0, {}};
    if (options.save_every > 0 || !options.resume.empty())
        trainer.run = detail::run_configuration(model, optimizer, forget, retain, options, total_steps);
    if (!options.resume.empty()) {
        const TrainerState saved = load_checkpoint(options.resume, model, state);
        detail::check_same_run(saved.run, trainer.run, options);
        if (saved.step > total_steps)
            fail(options.resume.string(), ": the checkpoint is at step ", saved.step, ", past this run's ", total_steps);
        trainer.step = saved.step;
    }

    const RunInfo begun{trainer.step, total_steps};
    (detail::call_on_begin(callbacks, begun), ...);
    const StopSection stop_on_signal;  // SIGINT/SIGTERM end the run after a whole step (core/interrupt.hpp)
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
        info.remaining_s = info.elapsed_s / static_cast<double>(info.step - begun.first_step) *
                           static_cast<double>(total_steps - info.step);
        info.report = &report;
        trainer.step = info.step;
        trainer.optimizer_step = state.step;
        summary.steps = info.step;
        summary.last = info;

        const int signal = take_interrupt();
        const auto checkpoint = options.checkpoint_dir / ("checkpoint-" + std::to_string(info.step));
        // An interrupted run saves where it stopped, so that nothing done is lost.
        if (options.save_every > 0 &&
            (info.step % options.save_every == 0 || info.step == total_steps || signal != 0)) {
            detail::check_parameters_finite(model, info.step);
            save_checkpoint(checkpoint, model, state, trainer);
        }
        if (signal != 0)
            throw Interrupted(signal, "after step " + std::to_string(info.step) +
                                          (options.save_every > 0 ? ", saved as " + checkpoint.string() : ""));
        bool stop = false;
        ((stop = detail::call_on_step(callbacks, info) || stop), ...);
        if (stop) {
            summary.stopped = true;
            break;
        }
    }
    if (summary.steps > begun.first_step) detail::check_parameters_finite(model, summary.steps);  // before the caller saves
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
        loss::FrozenReference<Model> reference(model, {.weights = options.reference_weights});
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
