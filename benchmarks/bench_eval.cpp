// Evaluation's hot paths on the TOFU study's compact model (4,096 tokens,
// C = 128, 4 layers, 256 positions): greedy decoding through the KV cache, one
// thread, and the membership-inference statistics of a scoring batch.
#include <benchmark/benchmark.h>

#include <simnpo.hpp>

namespace {

simnpo::model::Gpt<simnpo::cpu, float> compact_model() {
    simnpo::model::Gpt<simnpo::cpu, float> model(
        {.vocab_size = 4096, .n_positions = 256, .n_embd = 128, .n_layer = 4, .n_head = 4});
    simnpo::model::init_weights(model, 1);
    return model;
}

std::vector<std::int32_t> random_ids(std::size_t n, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    std::vector<std::int32_t> ids(n);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng.below(4096));
    return ids;
}

// A 24-token prompt and 64 new tokens (no stop token): TOFU's answers are 30-60 tokens.
void greedy_decode(benchmark::State& state) {
    simnpo::set_threads(1);
    const auto model = compact_model();
    const auto prompt = random_ids(24, 2);
    for (auto _ : state) {
        const auto ids = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt),
                                                        {.max_new_tokens = 64});
        benchmark::DoNotOptimize(ids.data());
    }
    state.counters["tokens_per_s"] =
        benchmark::Counter(24.0 + 64.0, benchmark::Counter::kIsIterationInvariantRate);
}

// 16 examples of a 24-token prompt and a 40-token answer: forward, logits to
// the host, and per token log π, μ and σ over the vocabulary.
void mia_statistics(benchmark::State& state) {
    simnpo::set_threads(2);
    auto model = compact_model();
    std::vector<simnpo::data::Example> examples;
    for (std::uint64_t i = 0; i < 16; ++i) examples.push_back({random_ids(24, 10 + i), random_ids(40, 100 + i)});
    for (auto _ : state) {
        const auto stats = simnpo::eval::token_statistics(model, std::span<const simnpo::data::Example>(examples), 16);
        benchmark::DoNotOptimize(stats.data());
    }
    state.counters["tokens_per_s"] = benchmark::Counter(16.0 * 40.0, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(greedy_decode)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(mia_statistics)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
