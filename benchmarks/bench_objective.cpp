// One unlearning gradient step (forget batch + retain batch, forward and
// backward) per objective, fp32: NPO with its cached ℓ_ref against SimNPO, and
// a KL retain term with the reference distributions cached against
// recomputed. Run with --benchmark_enable_random_interleaving=true and
// repetitions: the figures to compare come from the same run.
//
// unlearn_step is a whole optimizer step (SimNPO + NLL, clipping, AdamW) on
// GPT-2 small, the case benchmarks/compare_unlearn.py sets against PyTorch;
// its peak_rss_mib is the process's, meaningful when it runs alone.
#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <simnpo.hpp>

namespace {

namespace sl = simnpo::loss;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

struct Shape {
    simnpo::model::Config config;
    std::int64_t batch;      // examples on each side
    std::int64_t positions;  // answer tokens per example
};

// (0) GPT-2 small, (1) a compact model.
Shape shape(std::int64_t which) {
    if (which == 0)
        return {{.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12}, 4, 64};
    return {{.vocab_size = 512, .n_positions = 128, .n_embd = 128, .n_layer = 4, .n_head = 4}, 8, 64};
}

std::vector<simnpo::data::Example> examples(const Shape& s, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    const auto token = [&] {
        return static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(s.config.vocab_size)));
    };
    std::vector<simnpo::data::Example> result(static_cast<std::size_t>(s.batch));
    for (auto& example : result) {
        example.prompt_ids.push_back(token());
        for (std::int64_t t = 0; t < s.positions; ++t) example.answer_ids.push_back(token());
    }
    return result;
}

template <class Objective>
void step(benchmark::State& state, Objective objective, std::size_t distribution_cache_bytes) {
    const Shape s = shape(state.range(0));
    simnpo::set_threads(2);
    Model model(s.config);
    simnpo::model::init_weights(model, 1);
    sl::FrozenReference<Model> reference(model, {.distribution_cache_bytes = distribution_cache_bytes});
    const auto forget = examples(s, 1), retain = examples(s, 2);
    objective.gradient(model, forget, retain, reference);  // fills the reference's caches
    for (auto _ : state) {
        const auto report = objective.gradient(model, forget, retain, reference);
        benchmark::DoNotOptimize(report.total);
    }
    state.counters["reference_forwards"] = static_cast<double>(reference.forward_passes());
}

constexpr std::size_t unlimited = std::size_t{1} << 40;

void simnpo_gd(benchmark::State& state) { step(state, sl::SimNPO_GD{}, unlimited); }
void npo_gd(benchmark::State& state) { step(state, sl::NPO_GD{}, unlimited); }
void simnpo_kl_cached(benchmark::State& state) { step(state, sl::SimNPO_KL{}, unlimited); }
void simnpo_kl_recomputed(benchmark::State& state) { step(state, sl::SimNPO_KL{}, 0); }

// range(0): 0 fp32, 1 BF16 mixed precision.
void unlearn_step(benchmark::State& state) {
    const Shape s = shape(0);
    simnpo::set_threads(2);
    Model model(s.config);
    simnpo::model::init_weights(model, 1);
    model.set_precision(state.range(0) == 1 ? simnpo::Precision::bf16 : simnpo::Precision::fp32);
    const auto forget = examples(s, 1), retain = examples(s, 2);
    const sl::SimNPO_GD objective{sl::SimNPO({.beta = 2.5}), sl::NLL{}};
    const simnpo::optim::AdamW adamw({.lr = 1e-5, .weight_decay = 0.01});
    auto moments = adamw.state(model);
    // One step first, as the PyTorch side's warm-up: buffers are allocated on first use.
    objective.gradient(model, forget, retain);
    adamw.step(model, moments, 1e-5);
    for (auto _ : state) {
        const auto report = objective.gradient(model, forget, retain);
        const double norm = simnpo::optim::grad_norm(model);
        adamw.step(model, moments, 1e-5, simnpo::optim::clip_coefficient<float>(norm, 1.0));
        benchmark::DoNotOptimize(report.total);
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    state.counters["peak_rss_mib"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

BENCHMARK(unlearn_step)->ArgName("bf16")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

#define OBJECTIVE_BENCHMARK(name) \
    BENCHMARK(name)->ArgName("gpt2_small_0_compact_1")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()
OBJECTIVE_BENCHMARK(simnpo_gd);
OBJECTIVE_BENCHMARK(npo_gd);
OBJECTIVE_BENCHMARK(simnpo_kl_cached);
OBJECTIVE_BENCHMARK(simnpo_kl_recomputed);

BENCHMARK_MAIN();
