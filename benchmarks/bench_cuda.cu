// The CUDA backend on GPT-2 small: one training step (forward, backward of the
// token-mean NLL, gradient clipping, AdamW) at B = 16, T = 1024, in fp32 and
// TF32, and the GPU's matrix rate through the same cuBLASLt path, for
// comparison with eager PyTorch on the same GPU (benchmarks/compare_cuda.py).
// Each iteration ends with the stream drained, so wall time is GPU time.
#include <cstdio>

#include <benchmark/benchmark.h>

#include <simnpo/cuda.hpp>

namespace {

using GpuModel = simnpo::model::Gpt<simnpo::cuda, float>;

const simnpo::model::Config gpt2_small{.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12,
                                       .n_head = 12};
constexpr std::int64_t batch_rows = 16, positions = 1024;

// Every position of every row: a prompt of one token and an answer of T − 1
// (the first position has nothing to predict from, so T − 1 are scored).
simnpo::data::Batch full_batch() {
    simnpo::Rng rng(1);
    std::vector<simnpo::data::Example> examples(static_cast<std::size_t>(batch_rows));
    const auto token = [&] { return static_cast<std::int32_t>(rng.below(gpt2_small.vocab_size)); };
    for (auto& example : examples) {
        example.prompt_ids.push_back(token());
        for (std::int64_t t = 1; t < positions; ++t) example.answer_ids.push_back(token());
    }
    return simnpo::data::make_batch(examples);
}

// Multiply-adds ×2 of the products one step computes, as computed (attention's
// masked half included): forward, and twice that backward.
double step_flops(std::int64_t scored) {
    const double N = batch_rows * positions, C = 768, L = 12, V = 50257, T = positions;
    const double blocks = 2 * N * (3 * C * C + C * C + 8 * C * C) + 2 * 2 * batch_rows * T * T * C;
    const double head = 2 * static_cast<double>(scored) * C * V;
    return 3 * (L * blocks + head);
}

// The whole step or, with `forward_only`, the forward pass alone (to split the time).
void step(benchmark::State& state, bool tf32, bool forward_only = false) {
    GpuModel model(gpt2_small, simnpo::cuda{.tf32 = tf32});
    simnpo::model::init_weights(model, 1);
    const auto batch = full_batch();
    const simnpo::optim::AdamW optimizer({.lr = 1e-4, .weight_decay = 0.01});
    auto optimizer_state = optimizer.state(model);
    model.forward(batch);
    const std::vector<float> weights(static_cast<std::size_t>(model.scored_count()),
                                     -1.0f / static_cast<float>(model.scored_count()));
    const auto run = [&] {
        model.forward(batch);
        if (forward_only) return simnpo::backend::cuda::Context::get().synchronize();
        model.backward(weights, simnpo::GradStore::overwrite);
        const double norm = simnpo::optim::grad_norm(model);
        optimizer.step(model, optimizer_state, 1e-4, simnpo::optim::clip_coefficient<float>(norm, 1.0));
        simnpo::backend::cuda::Context::get().synchronize();
    };
    run();  // warm-up: buffers, cuBLASLt's heuristics
    for (auto _ : state) run();
    const double tokens = static_cast<double>(batch_rows * positions);
    state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["TFLOPs"] = benchmark::Counter(step_flops(model.scored_count()) * (forward_only ? 1e-12 / 3 : 1e-12),
                                                  benchmark::Counter::kIsIterationInvariantRate);
    std::size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    state.counters["device_used_gib"] = static_cast<double>(total_bytes - free_bytes) / (1 << 30);
}

void step_fp32(benchmark::State& state) { step(state, false); }
void step_tf32(benchmark::State& state) { step(state, true); }
void forward_fp32(benchmark::State& state) { step(state, false, true); }
void forward_tf32(benchmark::State& state) { step(state, true, true); }

// The GPU's matrix rate through the model's own product path: n×n×n products.
void matmul(benchmark::State& state, bool tf32) {
    const std::int64_t n = 8192;
    simnpo::backend::cuda::DeviceBuffer<float> a(static_cast<std::size_t>(n * n), 0.01f),
        b(static_cast<std::size_t>(n * n), 0.02f), c(static_cast<std::size_t>(n * n));
    const simnpo::cuda tag{.tf32 = tf32};
    const auto run = [&] {
        simnpo::backend::cuda::gemm(tag, {.M = n, .N = n, .K = n, .A = a.data(), .lda = n, .B = b.data(), .ldb = n,
                                          .C = c.data(), .ldc = n});
        simnpo::backend::cuda::Context::get().synchronize();
    };
    run();
    for (auto _ : state) run();
    state.counters["TFLOPs"] = benchmark::Counter(2.0 * n * n * n * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void matmul_fp32(benchmark::State& state) { matmul(state, false); }
void matmul_tf32(benchmark::State& state) { matmul(state, true); }

}  // namespace

BENCHMARK(step_fp32)->Name("cuda/gpt2_small/step/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(step_tf32)->Name("cuda/gpt2_small/step/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_fp32)->Name("cuda/gpt2_small/forward/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_tf32)->Name("cuda/gpt2_small/forward/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(matmul_fp32)->Name("cuda/matmul_8192/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(matmul_tf32)->Name("cuda/matmul_8192/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    if (simnpo::backend::cuda::device_count() == 0) {
        std::fprintf(stderr, "bench_cuda: no CUDA device on this machine\n");
        return 1;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
