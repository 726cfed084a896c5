// The Llama family on the CPU, fp32, for comparison with eager PyTorch
// (benchmarks/torch_llama.py; benchmarks/compare_llama.py runs both sides in
// alternating rounds):
//
//   (a) llama_small: a Llama of GPT-2 small's size (L 12, C 768, 12 heads,
//       4 KV heads, intermediate 2048, vocabulary 32000, untied), B 4, T 64,
//       every position scored: forward, and forward+backward of the mean
//       token log-probability (as bench_gpt).
//   (b) llama_1b/unlearn_step: Llama-3.2-1B's shape (L 16, C 2048, 32 heads,
//       8 KV heads, head_dim 64, intermediate 8192, vocabulary 128256, tied,
//       rope_theta 500000 with llama3 rope scaling), random weights: one
//       SimNPO+GD step (β 2.5, γ 0; retain NLL token mean) on 2 forget + 2
//       retain rows of T 128 scored tokens, then AdamW (lr 1e-5, weight decay
//       0.01; no clipping). Its peak_rss_mib is the process's: run it alone
//       (--benchmark_filter=llama_1b). In fp32 the full model with gradients
//       and AdamW's moments is ~20 GB; --llama1b_layers=N keeps only the first
//       N decoder layers (the embedding, vocabulary and widths unchanged) for
//       machines where that does not fit; the benchmark refuses to start (an
//       error, no allocation) when its estimated peak exceeds MemAvailable.
//
// Extra flags, taken out before Google Benchmark reads the rest:
//   --threads=N          CPU threads (default 2)
//   --llama1b_layers=N   decoder layers of (b) (default 16)
//
// Usage:  BUILD/benchmarks/bench_llama [--threads=2] [--llama1b_layers=16]
//             [--benchmark_filter=llama_small|llama_1b] [--benchmark_repetitions=N] [...]
#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include <simnpo.hpp>

namespace {

namespace sl = simnpo::loss;
using Model = simnpo::model::Llama<simnpo::cpu, float>;

int threads = 2;
std::int64_t llama1b_layers = 16;

struct Shape {
    simnpo::model::LlamaConfig config;
    std::int64_t batch;      // rows (on each side, for the unlearning step)
    std::int64_t positions;  // scored tokens per row
};

// (a) GPT-2 small's size in the Llama family.
Shape small_shape() {
    simnpo::model::LlamaConfig c;
    c.vocab_size = 32000;
    c.hidden_size = 768;
    c.intermediate_size = 2048;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 4;
    c.head_dim = 64;
    c.max_position_embeddings = 2048;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = false;
    c.sliding_window.assign(static_cast<std::size_t>(c.num_hidden_layers), 0);
    return {c, 4, 64};
}

// (b) Llama-3.2-1B's shape (its config.json), with `layers` decoder layers.
Shape llama1b_shape(std::int64_t layers) {
    simnpo::model::LlamaConfig c;
    c.vocab_size = 128256;
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_hidden_layers = layers;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 64;
    c.max_position_embeddings = 131072;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000.0;
    c.rope_scaling = {.kind = simnpo::model::RopeScaling::Kind::llama3,
                      .factor = 32.0,
                      .low_freq_factor = 1.0,
                      .high_freq_factor = 4.0,
                      .original_max_position_embeddings = 8192};
    c.tie_word_embeddings = true;
    c.sliding_window.assign(static_cast<std::size_t>(c.num_hidden_layers), 0);
    return {c, 2, 128};
}

// A prompt of one token and an answer of `positions` tokens per row: every
// position of the [B, T] batch is scored, as in the PyTorch side.
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

double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

void run_small(benchmark::State& state, bool backward) {
    const Shape s = small_shape();
    simnpo::set_threads(threads);
    Model model(s.config);
    simnpo::model::init_weights(model, 1);
    const auto batch = simnpo::data::make_batch(examples(s, 1));
    model.forward(batch);
    if (model.scored_count() != s.batch * s.positions) state.SkipWithError("not every position is scored");
    // The PyTorch side's loss: the mean token log-probability.
    const std::vector<float> weights(static_cast<std::size_t>(model.scored_count()),
                                     1.0f / static_cast<float>(model.scored_count()));
    for (auto _ : state) {
        model.forward(batch);
        if (backward) model.backward(weights, simnpo::GradStore::overwrite);
        benchmark::DoNotOptimize(model.grads().data());
    }
    double loss = 0.0;
    for (const float lp : model.logprobs()) loss += static_cast<double>(lp);
    state.counters["loss"] = loss / static_cast<double>(model.scored_count());
    state.counters["params"] = static_cast<double>(model.params().size());
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(s.batch * s.positions),
                                                        benchmark::Counter::kIsIterationInvariantRate);
    state.counters["peak_rss_mib"] = peak_rss_mib();
}

void small_forward(benchmark::State& state) { run_small(state, false); }
void small_forward_backward(benchmark::State& state) { run_small(state, true); }

// (b)'s model, optimizer state and batches, built once and kept across
// repetitions (building and initialising 1.24B parameters takes longer than a step).
struct Unlearning {
    Shape shape = llama1b_shape(llama1b_layers);
    Model model{shape.config};
    sl::SimNPO_GD objective{sl::SimNPO({.beta = 2.5, .gamma = 0.0}), sl::NLL{}};
    simnpo::optim::AdamW adamw{{.lr = 1e-5, .weight_decay = 0.01}};
    simnpo::optim::AdamW::State<simnpo::cpu, float> moments;
    std::vector<simnpo::data::Example> forget = examples(shape, 1), retain = examples(shape, 2);
    double first_loss = 0.0;

    Unlearning() {
        simnpo::model::init_weights(model, 1);
        moments = adamw.state(model);
        // One step first, as the PyTorch side's warm-up: buffers are allocated on first use.
        first_loss = step();
    }

    double step() {
        const auto report = objective.gradient(model, forget, retain);
        adamw.step(model, moments, 1e-5);
        return report.total;
    }
};

// MemAvailable of /proc/meminfo in MiB (a large number where there is none).
double mem_available_mib() {
    std::ifstream meminfo("/proc/meminfo");
    std::string line;
    while (std::getline(meminfo, line))  // "MemAvailable:   23301000 kB"
        if (line.starts_with("MemAvailable:")) return std::strtod(line.c_str() + 13, nullptr) / 1024.0;
    return 1e12;
}

void llama1b_unlearn_step(benchmark::State& state) {
    simnpo::set_threads(threads);
    // Parameters, gradients and AdamW's two moments (16 bytes a parameter), the activations
    // (~80 MiB a layer) and ~1 GiB more: never start what the machine cannot hold.
    const auto config = llama1b_shape(llama1b_layers).config;
    const double need = 16.0 * static_cast<double>(config.parameter_count("bench")) / (1 << 20) +
                        96.0 * static_cast<double>(llama1b_layers) + 1024.0;
    static bool built = false;
    if (!built && need > mem_available_mib()) {
        state.SkipWithError(("needs ~" + std::to_string(static_cast<long>(need)) + " MiB, MemAvailable is " +
                             std::to_string(static_cast<long>(mem_available_mib())) +
                             " MiB: fewer layers with --llama1b_layers=N")
                                .c_str());
        return;
    }
    built = true;
    static Unlearning run;  // the first repetition builds it (outside the timed loop)
    double loss = 0.0;
    for (auto _ : state) {
        loss = run.step();
        benchmark::DoNotOptimize(loss);
    }
    state.counters["loss"] = loss;
    state.counters["first_loss"] = run.first_loss;
    state.counters["layers"] = static_cast<double>(run.shape.config.num_hidden_layers);
    state.counters["params"] = static_cast<double>(run.model.params().size());
    state.counters["peak_rss_mib"] = peak_rss_mib();
}

// Takes --name=value out of argv; true when it was there.
bool take_flag(int& argc, char** argv, std::string_view name, std::string& value) {
    const std::string prefix = "--" + std::string(name) + "=";
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg(argv[i]);
        if (!arg.starts_with(prefix)) continue;
        value = std::string(arg.substr(prefix.size()));
        for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
        --argc;
        return true;
    }
    return false;
}

}  // namespace

BENCHMARK(small_forward)->Name("llama_small/forward")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(small_forward_backward)->Name("llama_small/forward_backward")->Unit(benchmark::kMillisecond)->UseRealTime();
// One step per repetition: a step takes seconds; use --benchmark_repetitions for more.
BENCHMARK(llama1b_unlearn_step)
    ->Name("llama_1b/unlearn_step")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
    std::string value;
    if (take_flag(argc, argv, "threads", value)) threads = std::atoi(value.c_str());
    if (take_flag(argc, argv, "llama1b_layers", value)) llama1b_layers = std::atoll(value.c_str());
    if (threads < 1 || llama1b_layers < 1) {
        std::fprintf(stderr, "bench_llama: --threads and --llama1b_layers must be positive integers\n");
        return 2;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("threads", std::to_string(threads));
    benchmark::AddCustomContext("llama1b_layers", std::to_string(llama1b_layers));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
