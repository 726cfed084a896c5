// The CUDA backend on GPT-2 small: one training step (forward, backward of the
// token-mean NLL, gradient clipping, AdamW) at B = 16, T = 1024, in fp32, TF32
// and BF16 (mixed precision: cuBLASLt's BF16 products), and the GPU's matrix
// rate through the same cuBLASLt path in each, for comparison with eager
// PyTorch on the same GPU (benchmarks/compare_cuda.py).
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

enum class Mode { fp32, tf32, bf16 };

// The whole step or, with `forward_only`, the forward pass alone (to split the time).
void step(benchmark::State& state, Mode mode, bool forward_only = false) {
    GpuModel model(gpt2_small, simnpo::cuda{.tf32 = mode == Mode::tf32});
    simnpo::model::init_weights(model, 1);
    if (mode == Mode::bf16) model.set_precision(simnpo::Precision::bf16);
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

void step_fp32(benchmark::State& state) { step(state, Mode::fp32); }
void step_tf32(benchmark::State& state) { step(state, Mode::tf32); }
void step_bf16(benchmark::State& state) { step(state, Mode::bf16); }
void forward_fp32(benchmark::State& state) { step(state, Mode::fp32, true); }
void forward_tf32(benchmark::State& state) { step(state, Mode::tf32, true); }
void forward_bf16(benchmark::State& state) { step(state, Mode::bf16, true); }

// The GPU's matrix rate through the model's own product path: n×n×n products
// (BF16: bfloat16 operands, fp32 sums and output).
void matmul(benchmark::State& state, Mode mode) {
    const std::int64_t n = 8192;
    const auto elements = static_cast<std::size_t>(n * n);
    simnpo::backend::cuda::DeviceBuffer<float> a(elements, 0.01f), b(elements, 0.02f), c(elements);
    simnpo::backend::cuda::DeviceBuffer<simnpo::bf16> a16(mode == Mode::bf16 ? elements : 0),
        b16(mode == Mode::bf16 ? elements : 0);
    const simnpo::cuda tag{.tf32 = mode == Mode::tf32};
    if (mode == Mode::bf16) {
        round_to_bf16(tag, a16.data(), a.data(), n * n);
        round_to_bf16(tag, b16.data(), b.data(), n * n);
    }
    const bool low = mode == Mode::bf16;
    const void* A = low ? static_cast<const void*>(a16.data()) : a.data();
    const void* B = low ? static_cast<const void*>(b16.data()) : b.data();
    const auto run = [&] {
        simnpo::backend::cuda::gemm(tag, {.M = n, .N = n, .K = n, .A = A, .lda = n, .B = B, .ldb = n, .C = c.data(),
                                          .ldc = n, .bf16_inputs = low});
        simnpo::backend::cuda::Context::get().synchronize();
    };
    run();
    for (auto _ : state) run();
    state.counters["TFLOPs"] = benchmark::Counter(2.0 * n * n * n * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void matmul_fp32(benchmark::State& state) { matmul(state, Mode::fp32); }
void matmul_tf32(benchmark::State& state) { matmul(state, Mode::tf32); }
void matmul_bf16(benchmark::State& state) { matmul(state, Mode::bf16); }

}  // namespace

BENCHMARK(step_fp32)->Name("cuda/gpt2_small/step/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(step_tf32)->Name("cuda/gpt2_small/step/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(step_bf16)->Name("cuda/gpt2_small/step/bf16")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_fp32)->Name("cuda/gpt2_small/forward/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_tf32)->Name("cuda/gpt2_small/forward/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(forward_bf16)->Name("cuda/gpt2_small/forward/bf16")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(matmul_fp32)->Name("cuda/matmul_8192/fp32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(matmul_tf32)->Name("cuda/matmul_8192/tf32")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(matmul_bf16)->Name("cuda/matmul_8192/bf16")->Unit(benchmark::kMillisecond)->UseRealTime();

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
