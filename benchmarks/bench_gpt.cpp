// Forward and forward+backward of the CPU transformer in fp32 and in BF16
// mixed precision, the rate of its matrix products, and oneDNN's own rates
// (sgemm 1024³; BF16 at the model's shapes), for comparison with PyTorch
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

// range(0): the shape; range(1): 0 fp32, 1 BF16.
simnpo::Precision precision(const benchmark::State& state) {
    return state.range(1) == 1 ? simnpo::Precision::bf16 : simnpo::Precision::fp32;
}

void run_model(benchmark::State& state, bool backward) {
    const Shape s = shape(static_cast<int>(state.range(0)));
    simnpo::set_threads(2);
    simnpo::model::Gpt<simnpo::cpu, float> model(s.config);
    simnpo::model::init_weights(model, 1);
    model.set_precision(precision(state));
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
// model's shapes and the model's kernels (BF16: the weights rounded once, as
// the model keeps them; the activations rounded in the kernels): the FLOP rate
// they reach.
void gpt2_small_matmuls(benchmark::State& state) {
    const Shape s = shape(0);
    simnpo::set_threads(2);
    const std::int64_t N = s.batch * s.positions, C = s.config.n_embd, V = s.config.vocab_size;
    const auto buffer = [](std::int64_t n) { return std::vector<float>(static_cast<std::size_t>(n), 0.01f); };
    auto x = buffer(N * 4 * C), y = buffer(N * 4 * C), dx = buffer(N * 4 * C), w = buffer(4 * C * C),
         dw = buffer(4 * C * C), wte = buffer(V * C), dwte = buffer(V * C), logits = buffer(N * V);
    const simnpo::cpu tag;
    const bool bf16 = precision(state) == simnpo::Precision::bf16;
    std::vector<simnpo::bf16> w16(bf16 ? w.size() : 0), wte16(bf16 ? wte.size() : 0);
    simnpo::round_to_bf16(w16.data(), w.data(), static_cast<std::int64_t>(w16.size()));
    simnpo::round_to_bf16(wte16.data(), wte.data(), static_cast<std::int64_t>(wte16.size()));
    const simnpo::Weight<float> weight(w.data(), bf16 ? w16.data() : nullptr),
        head(wte.data(), bf16 ? wte16.data() : nullptr);
    const std::int64_t shapes[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    double flops = 0;
    for (auto _ : state) {
        flops = 0;
        for (std::int64_t l = 0; l < s.config.n_layer; ++l)
            for (const auto& [in, out] : shapes) {
                simnpo::backend::cpu::matmul_forward(tag, y.data(), x.data(), weight, nullptr, N, in, out);
                simnpo::backend::cpu::matmul_backward(tag, dx.data(), dw.data(), nullptr, y.data(), x.data(), weight,
                                                      N, in, out, simnpo::GradStore::overwrite);
                flops += 3 * 2.0 * static_cast<double>(N * in * out);
            }
        simnpo::backend::cpu::lm_head_forward(tag, logits.data(), x.data(), head, N, C, V);
        simnpo::backend::cpu::lm_head_backward(tag, dx.data(), dwte.data(), logits.data(), x.data(), head, N, C, V,
                                               simnpo::GradStore::overwrite);
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

// oneDNN's own BF16 rate at the same products (one call each, operands
// rounded beforehand): what the model's BF16 products are measured against.
void bf16_gemm_rate(benchmark::State& state) {
    const Shape s = shape(0);
    simnpo::set_threads(2);
    const std::int64_t N = s.batch * s.positions, C = s.config.n_embd, V = s.config.vocab_size;
    const auto buffer = [](std::int64_t n) { return std::vector<simnpo::bf16>(static_cast<std::size_t>(n), {0x3c23}); };
    const auto x = buffer(N * 4 * C), dy = buffer(N * V), w = buffer(V * C);
    std::vector<float> out(static_cast<std::size_t>(V * C));
    const std::int64_t shapes[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    double flops = 0;
    for (auto _ : state) {
        flops = 0;
        // Forward, dinp and dweight of each layer, in the model's layouts:
        // Conv1D weights [in, out] in the blocks, the head [V, C].
        for (std::int64_t l = 0; l < s.config.n_layer; ++l)
            for (const auto& [in, o] : shapes) {
                simnpo::backend::cpu::gemm(false, false, false, N, o, in, x.data(), in, w.data(), o, out.data(), o);
                simnpo::backend::cpu::gemm(false, false, true, N, in, o, dy.data(), o, w.data(), o, out.data(), in);
                simnpo::backend::cpu::gemm(false, true, false, in, o, N, x.data(), in, dy.data(), o, out.data(), o);
                flops += 3 * 2.0 * static_cast<double>(N * in * o);
            }
        simnpo::backend::cpu::gemm(false, false, true, N, V, C, x.data(), C, w.data(), C, out.data(), V);
        simnpo::backend::cpu::gemm(false, false, false, N, C, V, dy.data(), V, w.data(), C, out.data(), C);
        simnpo::backend::cpu::gemm(false, true, false, V, C, N, dy.data(), V, x.data(), C, out.data(), C);
        flops += 3 * 2.0 * static_cast<double>(N * C * V);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["flops"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(forward)->Name("gpt2_small/forward")->Args({0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("gpt2_small/forward_backward")->Args({0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward)->Name("compact/forward")->Args({1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("compact/forward_backward")->Args({1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward)->Name("gpt2_small_bf16/forward")->Args({0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("gpt2_small_bf16/forward_backward")->Args({0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward)->Name("compact_bf16/forward")->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_backward)->Name("compact_bf16/forward_backward")->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(gpt2_small_matmuls)->Name("gpt2_small_matmuls")->Args({0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(gpt2_small_matmuls)->Name("gpt2_small_matmuls_bf16")->Args({0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bf16_gemm_rate)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sgemm_1024)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
