// Forward and forward+backward of the CPU transformer, fp32, and the machine's
// sgemm rate through the same product path, for comparison with PyTorch
// (benchmarks/compare.py runs both side by side).
#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <simnpo.hpp>

namespace {

struct Shape {
    simnpo::model::Config config;
    std::int64_t batch;
    std::int64_t positions;
};

// (a) GPT-2 small and (b) the compact model of the issue.
Shape shape(int which) {
    if (which == 0)
        return {{.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12}, 4, 64};
    return {{.vocab_size = 512, .n_positions = 64, .n_embd = 128, .n_layer = 4, .n_head = 4}, 32, 64};
}

// Every position of every row scored, as in the PyTorch side: a prompt of one
// token and an answer of T tokens.
simnpo::data::Batch full_batch(const Shape& s) {
    simnpo::Rng rng(1);
    std::vector<simnpo::data::Example> examples(static_cast<std::size_t>(s.batch));
    for (auto& example : examples) {
        example.prompt_ids.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(s.config.vocab_size))));
        for (std::int64_t t = 0; t < s.positions; ++t)
            example.answer_ids.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(s.config.vocab_size))));
    }
    return simnpo::data::make_batch(examples);
}

double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

void run_model(benchmark::State& state, bool backward) {
    const Shape s = shape(static_cast<int>(state.range(0)));
    simnpo::set_threads(2);
    simnpo::model::Gpt<simnpo::cpu, float> model(s.config);
    simnpo::model::init_weights(model, 1);
    const auto batch = full_batch(s);
    model.forward(batch);
    // Mean token log-probability, as the PyTorch side's loss.
    const std::vector<float> weights(static_cast<std::size_t>(model.scored_count()),
                                     1.0f / static_cast<float>(model.scored_count()));
    for (auto _ : state) {
        model.forward(batch);
        if (backward) model.backward(weights, simnpo::GradStore::overwrite);
        benchmark::DoNotOptimize(model.grads().data());
    }
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(s.batch * s.positions),
                                                        benchmark::Counter::kIsIterationInvariantRate);
    state.counters["peak_rss_mib"] = peak_rss_mib();
}

void forward(benchmark::State& state) { run_model(state, false); }
void forward_backward(benchmark::State& state) { run_model(state, true); }

// Only the matrix products of one GPT-2 small forward+backward, with the
// model's shapes and the model's kernels: the FLOP rate they reach.
void gpt2_small_matmuls(benchmark::State& state) {
    const Shape s = shape(0);
    simnpo::set_threads(2);
    const std::int64_t N = s.batch * s.positions, C = s.config.n_embd, V = s.config.vocab_size;
    const auto buffer = [](std::int64_t n) { return std::vector<float>(static_cast<std::size_t>(n), 0.01f); };
    auto x = buffer(N * 4 * C), y = buffer(N * 4 * C), dx = buffer(N * 4 * C), w = buffer(4 * C * C),
         dw = buffer(4 * C * C), wte = buffer(V * C), dwte = buffer(V * C), logits = buffer(N * V);
    const simnpo::cpu tag;
    const std::int64_t shapes[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    double flops = 0;
    for (auto _ : state) {
        flops = 0;
        for (std::int64_t l = 0; l < s.config.n_layer; ++l)
            for (const auto& [in, out] : shapes) {
                simnpo::backend::cpu::matmul_forward(tag, y.data(), x.data(), w.data(), nullptr, N, in, out);
                simnpo::backend::cpu::matmul_backward(tag, dx.data(), dw.data(), nullptr, y.data(), x.data(),
                                                      w.data(), N, in, out, simnpo::GradStore::overwrite);
                flops += 3 * 2.0 * static_cast<double>(N * in * out);
            }
        simnpo::backend::cpu::lm_head_forward(tag, logits.data(), x.data(), wte.data(), N, C, V);
        simnpo::backend::cpu::lm_head_backward(tag, dx.data(), dwte.data(), logits.data(), x.data(), wte.data(), N, C,
                                               V, simnpo::GradStore::overwrite);
        flops += 3 * 2.0 * static_cast<double>(N * C * V);
        benchmark::DoNotOptimize(dwte.data());
    }
    state.counters["flops"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// The machine's single-precision GEMM rate at n = 1024 through the same path.
void sgemm_1024(benchmark::State& state) {
    simnpo::set_threads(2);
    const std::int64_t n = 1024;
    std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
    for (auto _ : state) {
        simnpo::backend::cpu::matmul_forward(simnpo::cpu{}, c.data(), a.data(), b.data(), nullptr, n, n, n);
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["flops"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(forward)->Name("gpt2_small/forward")->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("gpt2_small/forward_backward")->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward)->Name("compact/forward")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("compact/forward_backward")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(gpt2_small_matmuls)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sgemm_1024)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
