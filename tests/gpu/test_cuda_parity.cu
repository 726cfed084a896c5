// The CUDA backend against the CPU backend, its oracle (DESIGN §7): the same
// parameters and batches through Gpt<simnpo::cpu, float> and
// Gpt<simnpo::cuda, float> must give the same per-token log-probabilities,
// parameter gradients, membership-inference statistics, optimizer steps and a
// 20-step unlearning trajectory, within float tolerance; and the Llama family's
// kernels one by one on the same inputs. Without a GPU the program says so and
// exits 77, which ctest reports as skipped.
#define BOOST_TEST_MODULE cuda_parity
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <simnpo/cuda.hpp>

#include "support/temp_dir.hpp"

namespace {

using CpuModel = simnpo::model::Gpt<simnpo::cpu, float>;
using GpuModel = simnpo::model::Gpt<simnpo::cuda, float>;
namespace sl = simnpo::loss;

// Small enough for the CPU to be quick; sizes that are not multiples of the
// GPU's warp (C = 80) or block (V = 301) widths, so that tails are exercised.
simnpo::model::Config small_config() {
    return {.vocab_size = 301, .n_positions = 48, .n_embd = 80, .n_layer = 2, .n_head = 4};
}

template <class Model>
std::vector<float> host(const Model& model, const typename Model::template Buffer<float>& buffer) {
    std::vector<float> values(buffer.size());
    copy_to_host(model.backend(), std::span<float>(values), buffer.data());
    return values;
}

// Copies the CPU model's parameters into a new GPU model.
GpuModel to_gpu(const CpuModel& cpu, simnpo::cuda backend = {}) {
    GpuModel gpu(cpu.config(), backend);
    copy_to_device(gpu.backend(), gpu.params().data(), std::span<const float>(cpu.params()));
    return gpu;
}

CpuModel random_model(const simnpo::model::Config& config, std::uint64_t seed) {
    CpuModel model(config);
    simnpo::model::init_weights(model, seed);
    // Non-trivial LayerNorm parameters and biases, so that their gradients are tested in earnest.
    simnpo::Rng rng(seed + 1);
    for (const auto& slot : model.layout().slots())
        if (slot.name.find("bias") != std::string::npos || slot.name.find("ln_") != std::string::npos)
            for (std::size_t i = 0; i < slot.size; ++i) model.params()[slot.offset + i] += static_cast<float>(rng.normal(0.0, 0.1));
    return model;
}

// Ragged examples: right padding and rows of different lengths in every batch.
std::vector<simnpo::data::Example> examples(const simnpo::model::Config& config, int count, std::uint64_t seed,
                                            int longest) {
    simnpo::Rng rng(seed);
    std::vector<simnpo::data::Example> result;
    const auto token = [&] { return static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(config.vocab_size))); };
    for (int i = 0; i < count; ++i) {
        simnpo::data::Example example;
        const auto prompt = 1 + static_cast<int>(rng.below(6));
        const auto answer = 1 + static_cast<int>(rng.below(static_cast<std::uint64_t>(longest - 7)));
        for (int t = 0; t < prompt; ++t) example.prompt_ids.push_back(token());
        for (int t = 0; t < answer; ++t) example.answer_ids.push_back(token());
        result.push_back(example);
    }
    return result;
}

// max |a − b| over max(1, max |a|): float error relative to the values' scale.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    BOOST_REQUIRE_EQUAL(a.size(), b.size());
    double difference = 0.0, scale = 1e-30;
    for (std::size_t i = 0; i < a.size(); ++i) {
        difference = std::max(difference, static_cast<double>(std::abs(a[i] - b[i])));
        scale = std::max(scale, static_cast<double>(std::abs(a[i])));
    }
    return difference / scale;
}

// Each named tensor of two slabs laid out alike, compared on its own scale.
void check_tensors(const simnpo::model::TensorLayout& layout, const std::vector<float>& expected,
                   const std::vector<float>& actual, double tolerance, const std::string& what) {
    for (const auto& slot : layout.slots()) {
        const std::vector<float> e(expected.begin() + static_cast<std::ptrdiff_t>(slot.offset),
                                   expected.begin() + static_cast<std::ptrdiff_t>(slot.offset + slot.size));
        const std::vector<float> a(actual.begin() + static_cast<std::ptrdiff_t>(slot.offset),
                                   actual.begin() + static_cast<std::ptrdiff_t>(slot.offset + slot.size));
        const double error = relative_error(e, a);
        BOOST_TEST(error < tolerance, what << " " << slot.name << ": relative error " << error);
    }
}

std::vector<float> random_weights(std::size_t n, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    std::vector<float> weights(n);
    for (auto& w : weights) w = static_cast<float>(rng.normal(0.0, 1.0));
    return weights;
}

}  // namespace

BOOST_AUTO_TEST_CASE(per_token_logprobs_match) {
    for (const bool tf32 : {false, true}) {
        const auto config = small_config();
        const CpuModel cpu_model = random_model(config, 3);
        CpuModel cpu = cpu_model;
        GpuModel gpu = to_gpu(cpu_model, simnpo::cuda{.tf32 = tf32});
        const auto rows = examples(config, 5, 11, 40);
        const auto batch = simnpo::data::make_batch(rows);
        cpu.forward(batch);
        gpu.forward(batch);
        const auto expected = cpu.logprobs(), actual = gpu.logprobs();
        BOOST_REQUIRE_EQUAL(expected.size(), actual.size());
        // fp32 products agree to rounding; TF32 rounds the inputs to 10 mantissa bits.
        const double tolerance = tf32 ? 2e-2 : 2e-5;
        for (std::size_t n = 0; n < expected.size(); ++n)
            BOOST_TEST(std::abs(expected[n] - actual[n]) <= tolerance * std::max(1.0f, std::abs(expected[n])),
                       "token " << n << ": CPU " << expected[n] << ", GPU " << actual[n] << " (tf32 " << tf32 << ")");
        BOOST_TEST(cpu.sequence_logprobs().size() == gpu.sequence_logprobs().size());
    }
}

// The membership-inference statistics read the GPU's logits back: the same
// per-token log π, μ and σ as on the CPU.
BOOST_AUTO_TEST_CASE(membership_statistics_match) {
    const auto config = small_config();
    CpuModel cpu = random_model(config, 5);
    GpuModel gpu = to_gpu(cpu);
    const auto rows = examples(config, 7, 17, 40);
    const auto expected = simnpo::eval::token_statistics(cpu, std::span(rows), 3);
    const auto actual = simnpo::eval::token_statistics(gpu, std::span(rows), 3);
    BOOST_REQUIRE_EQUAL(expected.size(), actual.size());
    const auto near = [](double a, double b) { return std::abs(a - b) <= 2e-5 * std::max(1.0, std::abs(a)); };
    for (std::size_t i = 0; i < expected.size(); ++i) {
        BOOST_REQUIRE_EQUAL(expected[i].logprob.size(), actual[i].logprob.size());
        for (std::size_t t = 0; t < expected[i].logprob.size(); ++t) {
            BOOST_TEST(near(expected[i].logprob[t], actual[i].logprob[t]), "example " << i << " token " << t);
            BOOST_TEST(near(expected[i].mean[t], actual[i].mean[t]), "example " << i << " token " << t);
            BOOST_TEST(near(expected[i].stddev[t], actual[i].stddev[t]), "example " << i << " token " << t);
        }
    }
}

BOOST_AUTO_TEST_CASE(every_parameter_gradient_matches) {
    const auto config = small_config();
    CpuModel cpu = random_model(config, 5);
    GpuModel gpu = to_gpu(cpu);
    const auto first = examples(config, 4, 21, 44), second = examples(config, 3, 22, 30);
    // Two backward passes: the first overwrites the slab, the second accumulates into it.
    for (const auto& [rows, store] : {std::pair{first, simnpo::GradStore::overwrite},
                                      std::pair{second, simnpo::GradStore::accumulate}}) {
        const auto batch = simnpo::data::make_batch(rows);
        cpu.forward(batch);
        gpu.forward(batch);
        const auto weights = random_weights(static_cast<std::size_t>(cpu.scored_count()), 7);
        cpu.backward(std::span<const float>(weights), store);
        gpu.backward(std::span<const float>(weights), store);
    }
    check_tensors(cpu.layout(), std::vector<float>(cpu.grads().begin(), cpu.grads().end()), host(gpu, gpu.grads()),
                  1e-4, "gradient");
}

BOOST_AUTO_TEST_CASE(long_rows_match) {
    // Rows up to GPT-2's 1024 positions: the attention kernels' widest register tiles.
    const simnpo::model::Config config{.vocab_size = 101, .n_positions = 1024, .n_embd = 32, .n_layer = 1, .n_head = 2};
    CpuModel cpu = random_model(config, 6);
    GpuModel gpu = to_gpu(cpu);
    std::vector<simnpo::data::Example> rows = examples(config, 2, 61, 40);
    rows[0].answer_ids.resize(1000, 7);  // T = 1000 + prompt, and a row of under 40 beside it
    const auto batch = simnpo::data::make_batch(rows);
    BOOST_TEST(batch.columns() > 512);
    cpu.forward(batch);
    gpu.forward(batch);
    BOOST_TEST(relative_error(cpu.logprobs(), gpu.logprobs()) < 2e-5);
    const auto weights = random_weights(static_cast<std::size_t>(cpu.scored_count()), 62);
    cpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
    gpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
    check_tensors(cpu.layout(), std::vector<float>(cpu.grads().begin(), cpu.grads().end()), host(gpu, gpu.grads()),
                  1e-4, "gradient, long rows");
}

BOOST_AUTO_TEST_CASE(kl_retain_gradient_matches) {
    // The distribution path: the reference's log-softmax, the KL kernel, backward_logits.
    const auto config = small_config();
    CpuModel cpu = random_model(config, 8);
    GpuModel gpu = to_gpu(cpu);
    sl::FrozenReference<CpuModel> cpu_reference(cpu);
    sl::FrozenReference<GpuModel> gpu_reference(gpu);
    // The model moves away from its reference, so that the KL is not zero.
    const CpuModel moved = random_model(config, 9);
    std::copy(moved.params().begin(), moved.params().end(), cpu.params().begin());
    copy_to_device(gpu.backend(), gpu.params().data(), std::span<const float>(moved.params()));
    const sl::SimNPO_KL objective(sl::SimNPO({.beta = 2.5, .gamma = 0.5}), sl::KL{}, {1.0, 0.7});
    const auto forget = examples(config, 3, 31, 30), retain = examples(config, 4, 32, 40);
    const auto expected = objective.gradient(cpu, forget, retain, cpu_reference);
    const auto actual = objective.gradient(gpu, forget, retain, gpu_reference);
    BOOST_TEST(expected.retain_loss > 0.01);
    BOOST_TEST(std::abs(expected.forget_loss - actual.forget_loss) <= 1e-5 * std::abs(expected.forget_loss));
    BOOST_TEST(std::abs(expected.retain_loss - actual.retain_loss) <= 1e-4 * expected.retain_loss);
    check_tensors(cpu.layout(), std::vector<float>(cpu.grads().begin(), cpu.grads().end()), host(gpu, gpu.grads()),
                  1e-4, "KL gradient");
}

BOOST_AUTO_TEST_CASE(one_optimizer_step_matches) {
    // The optimizer kernels on their own: both sides step from the same parameters and the same
    // gradient (the CPU's, copied over). From the two sides' own gradients AdamW would not do:
    // it divides each gradient by its own magnitude, so gradients that are zero but for rounding
    // (the key bias's: softmax ignores a shift shared by a row) move by ±lr on each side at random.
    const auto config = small_config();
    const CpuModel start = random_model(config, 12);
    CpuModel probe = start;
    probe.forward(simnpo::data::make_batch(examples(config, 4, 41, 40)));
    const auto weights = random_weights(static_cast<std::size_t>(probe.scored_count()), 13);
    probe.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
    const auto run = [&](auto& model, const auto& optimizer) {
        copy_to_device(model.backend(), model.grads().data(), std::span<const float>(probe.grads()));
        auto state = optimizer.state(model);
        const double norm = simnpo::optim::grad_norm(model);
        // Clipping at half the norm, applied in the step, as the training loop does.
        optimizer.step(model, state, 1e-2, simnpo::optim::clip_coefficient<float>(norm, norm / 2));
        optimizer.step(model, state, 1e-2);  // a second step uses the moments
        return norm;
    };
    const simnpo::optim::AdamW adamw({.lr = 1e-2, .weight_decay = 0.1});
    const simnpo::optim::SGD sgd({.lr = 1e-2, .momentum = 0.9, .weight_decay = 0.01});
    for (int which = 0; which < 2; ++which) {
        CpuModel cpu = start;
        GpuModel gpu = to_gpu(start);
        const double cpu_norm = which == 0 ? run(cpu, adamw) : run(cpu, sgd);
        const double gpu_norm = which == 0 ? run(gpu, adamw) : run(gpu, sgd);
        BOOST_TEST(std::abs(cpu_norm - gpu_norm) <= 1e-9 * cpu_norm);
        // The same arithmetic in float; the GPU may fuse a multiply and an add.
        check_tensors(cpu.layout(), std::vector<float>(cpu.params().begin(), cpu.params().end()),
                      host(gpu, gpu.params()), 1e-6, which == 0 ? "AdamW step" : "SGD step");
    }
}

BOOST_AUTO_TEST_CASE(unlearning_trajectory_matches) {
    // 20 steps of SimNPO + NLL with AdamW and clipping: the per-step losses and the final parameters.
    const auto config = small_config();
    const CpuModel start = random_model(config, 17);
    const auto forget = examples(config, 12, 51, 40), retain = examples(config, 16, 52, 40);
    const sl::SimNPO_GD objective(sl::SimNPO({.beta = 2.5, .gamma = 0.0}), sl::NLL{}, {1.0, 1.0});
    const simnpo::optim::AdamW optimizer({.lr = 1e-3, .weight_decay = 0.01});
    const simnpo::train::Options options{.steps = 20, .batch_size = 4, .seed = 3, .max_grad_norm = 1.0};
    struct Record {
        std::vector<double> losses, norms;
        void on_step(const simnpo::train::StepInfo& info) {
            losses.push_back(info.loss);
            norms.push_back(info.grad_norm);
        }
    };
    CpuModel cpu = start;
    GpuModel gpu = to_gpu(start);
    Record cpu_record, gpu_record;
    simnpo::train::unlearn(cpu, objective, optimizer, forget, retain, options, cpu_record);
    simnpo::train::unlearn(gpu, objective, optimizer, forget, retain, options, gpu_record);
    BOOST_REQUIRE_EQUAL(cpu_record.losses.size(), 20u);
    BOOST_REQUIRE_EQUAL(gpu_record.losses.size(), 20u);
    for (std::size_t step = 0; step < 20; ++step) {
        BOOST_TEST(std::abs(cpu_record.losses[step] - gpu_record.losses[step]) <= 1e-4 * std::abs(cpu_record.losses[step]) + 1e-5,
                   "step " << step + 1 << " loss: CPU " << cpu_record.losses[step] << ", GPU " << gpu_record.losses[step]);
        BOOST_TEST(std::abs(cpu_record.norms[step] - gpu_record.norms[step]) <= 1e-3 * cpu_record.norms[step],
                   "step " << step + 1 << " gradient norm: CPU " << cpu_record.norms[step] << ", GPU " << gpu_record.norms[step]);
    }
    // The run moved the parameters by far more than the tolerance.
    BOOST_TEST(relative_error(std::vector<float>(start.params().begin(), start.params().end()),
                              std::vector<float>(cpu.params().begin(), cpu.params().end())) > 1e-3);
    // AdamW amplifies rounding in gradients that are zero but for it (see the optimizer test),
    // so the parameters agree less closely than the losses.
    check_tensors(cpu.layout(), std::vector<float>(cpu.params().begin(), cpu.params().end()), host(gpu, gpu.params()),
                  1e-3, "parameters after 20 steps");
}

BOOST_AUTO_TEST_CASE(save_and_load_round_trip_through_the_gpu) {
    const auto config = small_config();
    const CpuModel cpu = random_model(config, 23);
    const GpuModel gpu = to_gpu(cpu);
    const simnpo::testing::TempDir dir;
    simnpo::model::save(gpu, dir.path);
    const auto loaded = simnpo::model::load<simnpo::model::Gpt<simnpo::cuda, float>>(dir.path);
    BOOST_TEST(host(loaded, loaded.params()) == std::vector<float>(cpu.params().begin(), cpu.params().end()));
}

// Each Llama-family fixture (llama2, llama3 from BF16 shards, qwen2 tied with
// biases, mistral's window and head_dim, phi3's fused projections) loaded onto
// both backends: the same log-probabilities and every parameter gradient.
BOOST_AUTO_TEST_CASE(llama_family_models_match) {
    using CpuLlama = simnpo::model::Llama<simnpo::cpu, float>;
    using GpuLlama = simnpo::model::Llama<simnpo::cuda, float>;
    for (const std::string variant : {"llama2", "llama3", "qwen2", "mistral", "phi3"}) {
        BOOST_TEST_CONTEXT(variant) {
            // The device machine runs a copy of the tree elsewhere: SIMNPO_FIXTURES_DIR may name it.
            const char* fixtures = std::getenv("SIMNPO_FIXTURES_DIR");
            const std::string dir = std::string(fixtures != nullptr ? fixtures : SIMNPO_FIXTURES_DIR) + "/llama/" + variant;
            auto cpu = simnpo::model::load<CpuLlama>(dir);
            auto gpu = simnpo::model::load<GpuLlama>(dir);
            BOOST_TEST(host(gpu, gpu.params()) == std::vector<float>(cpu.params().begin(), cpu.params().end()));
            const auto batch = simnpo::data::make_batch(simnpo::data::read_jsonl(dir + "/data.jsonl", cpu.config()));
            cpu.forward(batch);
            gpu.forward(batch);
            BOOST_TEST(relative_error(cpu.logprobs(), gpu.logprobs()) < 1e-5);
            BOOST_TEST(relative_error(cpu.logprobs(), std::as_const(gpu).score(batch).logprobs) < 1e-5);
            const auto weights = random_weights(static_cast<std::size_t>(cpu.scored_count()), 3);
            cpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
            gpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
            check_tensors(cpu.layout(), std::vector<float>(cpu.grads().begin(), cpu.grads().end()),
                          host(gpu, gpu.grads()), 1e-4, "gradient");
        }
    }
}

// BF16 mode on both sides: the same rounded weights and (up to the fp32
// rounding of the activations before them) the same rounded activations,
// multiplied with fp32 sums; an activation a float ulp apart may round to the
// neighbouring bfloat16, so the bounds are looser than fp32's; and the GPU's
// BF16 must be nearer the CPU's BF16 than fp32 is (on the CPU BF16 moves these
// log-probabilities by 1.8e-4 (gpt2) and 1.9e-3 (llama3) of their scale).
BOOST_AUTO_TEST_CASE(bf16_models_match) {
    const auto check = [](auto& cpu, auto& gpu, const simnpo::data::Batch& batch) {
        cpu.forward(batch);
        const auto fp32 = cpu.logprobs();
        cpu.set_precision(simnpo::Precision::bf16);
        gpu.set_precision(simnpo::Precision::bf16);
        cpu.forward(batch);
        gpu.forward(batch);
        const double error = relative_error(cpu.logprobs(), gpu.logprobs());
        const double from_fp32 = relative_error(fp32, gpu.logprobs());
        BOOST_TEST(error < 1e-3, "log-probabilities: relative error " << error);
        BOOST_TEST(error < 0.25 * from_fp32, "the GPU's BF16 is " << error << " from the CPU's and " << from_fp32
                                                                  << " from fp32");
        const auto weights = random_weights(static_cast<std::size_t>(cpu.scored_count()), 3);
        cpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
        gpu.backward(std::span<const float>(weights), simnpo::GradStore::overwrite);
        check_tensors(cpu.layout(), std::vector<float>(cpu.grads().begin(), cpu.grads().end()), host(gpu, gpu.grads()),
                      1e-2, "BF16 gradient");
    };
    BOOST_TEST_CONTEXT("gpt2") {
        const auto config = small_config();
        CpuModel cpu = random_model(config, 3);
        GpuModel gpu = to_gpu(cpu);
        check(cpu, gpu, simnpo::data::make_batch(examples(config, 5, 11, 40)));
    }
    BOOST_TEST_CONTEXT("llama3") {
        const char* fixtures = std::getenv("SIMNPO_FIXTURES_DIR");
        const std::string dir = std::string(fixtures != nullptr ? fixtures : SIMNPO_FIXTURES_DIR) + "/llama/llama3";
        auto cpu = simnpo::model::load<simnpo::model::Llama<simnpo::cpu, float>>(dir);
        auto gpu = simnpo::model::load<simnpo::model::Llama<simnpo::cuda, float>>(dir);
        check(cpu, gpu, simnpo::data::make_batch(simnpo::data::read_jsonl(dir + "/data.jsonl", cpu.config())));
    }
}

// ---- The Llama family's kernels, each against its CPU twin (the oracle), in float.

namespace {

namespace cpu = simnpo::backend::cpu;
namespace gpu = simnpo::backend::cuda;
const simnpo::cpu on_cpu;
const simnpo::cuda on_gpu;

template <class T>
gpu::DeviceBuffer<T> to_device(const std::vector<T>& values) {
    gpu::DeviceBuffer<T> buffer(values.size());
    copy_to_device(on_gpu, buffer.data(), std::span<const T>(values));
    return buffer;
}

template <class T>
std::vector<T> to_host(const gpu::DeviceBuffer<T>& buffer) {
    std::vector<T> values(buffer.size());
    copy_to_host(on_gpu, std::span<T>(values), buffer.data());
    return values;
}

void check_near(const std::vector<float>& expected, const gpu::DeviceBuffer<float>& actual, double tolerance,
                const std::string& what) {
    const double error = relative_error(expected, to_host(actual));
    BOOST_TEST(error < tolerance, what << ": relative error " << error);
}

struct AttentionCase {
    std::int64_t B, T, H, KV, D, window;
    std::vector<std::int64_t> lengths;
    std::size_t qkv_size() const { return static_cast<std::size_t>(B * T * (H + 2 * KV) * D); }
    std::size_t out_size() const { return static_cast<std::size_t>(B * T * H * D); }
    std::size_t att_size() const { return static_cast<std::size_t>(B * H * T * T); }
};

// A product's inputs [N, IC], weight [OC, IC] (or [IC, OC]), bias [OC] and
// output gradient [N, OC], drawn from `seed` on, on both sides.
struct ProductInputs {
    static constexpr std::int64_t N = 37, IC = 80, OC = 301;
    std::vector<float> inp, weight, bias, dout;
    gpu::DeviceBuffer<float> inp_d, weight_d, bias_d, dout_d;
    explicit ProductInputs(std::uint64_t seed)
        : inp(random_weights(static_cast<std::size_t>(N * IC), seed)),
          weight(random_weights(static_cast<std::size_t>(OC * IC), seed + 1)),
          bias(random_weights(static_cast<std::size_t>(OC), seed + 2)),
          dout(random_weights(static_cast<std::size_t>(N * OC), seed + 3)),
          inp_d(to_device(inp)), weight_d(to_device(weight)), bias_d(to_device(bias)), dout_d(to_device(dout)) {}
};

std::string describe(const AttentionCase& c) {
    return "attention B " + std::to_string(c.B) + " T " + std::to_string(c.T) + " H " + std::to_string(c.H) + " KV " +
           std::to_string(c.KV) + " D " + std::to_string(c.D) + " window " + std::to_string(c.window);
}

}  // namespace

BOOST_AUTO_TEST_CASE(linear_kernels_match) {
    const ProductInputs in(101);
    const std::int64_t N = in.N, IC = in.IC, OC = in.OC;
    const auto& [inp, weight, bias, dout, inp_d, weight_d, bias_d, dout_d] = in;
    for (const bool with_bias : {true, false}) {
        std::vector<float> out(static_cast<std::size_t>(N * OC));
        gpu::DeviceBuffer<float> out_d(out.size());
        linear_forward(on_cpu, out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N, IC, OC);
        linear_forward(on_gpu, out_d.data(), inp_d.data(), weight_d.data(), with_bias ? bias_d.data() : nullptr, N, IC,
                       OC);
        check_near(out, out_d, 2e-5, with_bias ? "linear_forward" : "linear_forward without bias");
    }
    // Overwrite, then accumulate: the second pass doubles the parameter gradients.
    std::vector<float> dinp(static_cast<std::size_t>(N * IC)), dweight(static_cast<std::size_t>(OC * IC)),
        dbias(static_cast<std::size_t>(OC));
    gpu::DeviceBuffer<float> dinp_d(dinp.size(), 5.0f), dweight_d(dweight.size(), 5.0f), dbias_d(dbias.size(), 5.0f);
    for (const auto store : {simnpo::GradStore::overwrite, simnpo::GradStore::accumulate}) {
        linear_backward(on_cpu, dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), N, IC,
                        OC, store);
        linear_backward(on_gpu, dinp_d.data(), dweight_d.data(), dbias_d.data(), dout_d.data(), inp_d.data(),
                        weight_d.data(), N, IC, OC, store);
    }
    check_near(dinp, dinp_d, 1e-4, "linear_backward dinp");
    check_near(dweight, dweight_d, 1e-4, "linear_backward dweight");
    check_near(dbias, dbias_d, 1e-4, "linear_backward dbias");
    linear_backward(on_gpu, dinp_d.data(), dweight_d.data(), nullptr, dout_d.data(), inp_d.data(), weight_d.data(), N,
                    IC, OC, simnpo::GradStore::overwrite);
    for (auto& x : dweight) x /= 2;
    check_near(dweight, dweight_d, 1e-4, "linear_backward dweight, no bias");
}

// The BF16 products alone: the GPU rounds the weights to the CPU's bits, and
// both multiply the same rounded inputs with fp32 sums (in their own orders).
BOOST_AUTO_TEST_CASE(bf16_product_kernels_match) {
    const ProductInputs in(111);
    const std::int64_t N = in.N, IC = in.IC, OC = in.OC;
    const auto& [inp, weight, bias, dout, inp_d, weight_d, bias_d, dout_d] = in;
    std::vector<simnpo::bf16> rounded(weight.size());
    cpu::round_to_bf16(on_cpu, rounded.data(), weight.data(), static_cast<std::int64_t>(weight.size()));
    gpu::DeviceBuffer<simnpo::bf16> rounded_d(weight.size());
    gpu::round_to_bf16(on_gpu, rounded_d.data(), weight_d.data(), static_cast<std::int64_t>(weight.size()));
    const auto device_rounding = to_host(rounded_d);
    bool same_bits = true;
    for (std::size_t i = 0; i < rounded.size(); ++i) same_bits = same_bits && rounded[i].bits == device_rounding[i].bits;
    BOOST_TEST(same_bits, "the GPU rounds the weights to other bfloat16 values than the CPU");
    const simnpo::Weight<float> w{weight.data(), rounded.data()}, w_d{weight_d.data(), rounded_d.data()};
    const auto size = [](std::int64_t n) { return static_cast<std::size_t>(n); };
    // [IC, OC] as matmul_* read it, [OC, IC] as linear_* and (with OC as V, IC as C) the LM head do.
    std::vector<float> out(size(N * OC)), dinp(size(N * IC)), dweight(weight.size(), 1.0f), dbias(size(OC), 1.0f);
    gpu::DeviceBuffer<float> out_d(out.size()), dinp_d(dinp.size()), dweight_d(dweight.size(), 1.0f),
        dbias_d(dbias.size(), 1.0f);
    const auto compare = [&](const char* what) {
        check_near(out, out_d, 2e-5, std::string(what) + " forward");
        check_near(dinp, dinp_d, 2e-5, std::string(what) + " dinp");
        check_near(dweight, dweight_d, 2e-5, std::string(what) + " dweight");
    };
    matmul_forward(on_cpu, out.data(), inp.data(), w, bias.data(), N, IC, OC);
    matmul_forward(on_gpu, out_d.data(), inp_d.data(), w_d, bias_d.data(), N, IC, OC);
    matmul_backward(on_cpu, dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), w, N, IC, OC,
                    simnpo::GradStore::accumulate);
    matmul_backward(on_gpu, dinp_d.data(), dweight_d.data(), dbias_d.data(), dout_d.data(), inp_d.data(), w_d, N, IC,
                    OC, simnpo::GradStore::accumulate);
    compare("matmul");
    check_near(dbias, dbias_d, 2e-5, "matmul dbias");
    linear_forward(on_cpu, out.data(), inp.data(), w, bias.data(), N, IC, OC);
    linear_forward(on_gpu, out_d.data(), inp_d.data(), w_d, bias_d.data(), N, IC, OC);
    linear_backward(on_cpu, dinp.data(), dweight.data(), nullptr, dout.data(), inp.data(), w, N, IC, OC,
                    simnpo::GradStore::overwrite);
    linear_backward(on_gpu, dinp_d.data(), dweight_d.data(), nullptr, dout_d.data(), inp_d.data(), w_d, N, IC, OC,
                    simnpo::GradStore::overwrite);
    compare("linear");
    lm_head_forward(on_cpu, out.data(), inp.data(), w, N, IC, OC);
    lm_head_forward(on_gpu, out_d.data(), inp_d.data(), w_d, N, IC, OC);
    lm_head_backward(on_cpu, dinp.data(), dweight.data(), dout.data(), inp.data(), w, N, IC, OC,
                     simnpo::GradStore::overwrite);
    lm_head_backward(on_gpu, dinp_d.data(), dweight_d.data(), dout_d.data(), inp_d.data(), w_d, N, IC, OC,
                     simnpo::GradStore::overwrite);
    compare("lm_head");
    // The products ran in BF16: fp32 weights give visibly other outputs.
    gpu::DeviceBuffer<float> fp32_d(out.size());
    lm_head_forward(on_gpu, fp32_d.data(), inp_d.data(), weight_d.data(), N, IC, OC);
    BOOST_TEST(relative_error(to_host(fp32_d), to_host(out_d)) > 1e-3);
}

BOOST_AUTO_TEST_CASE(rmsnorm_kernels_match) {
    const std::int64_t N = 300, C = 80;  // several chunks of rows
    const auto inp = random_weights(static_cast<std::size_t>(N * C), 111);
    const auto weight = random_weights(static_cast<std::size_t>(C), 112);
    const auto dout = random_weights(static_cast<std::size_t>(N * C), 113);
    auto dinp = random_weights(static_cast<std::size_t>(N * C), 114);  // the residual gradient, accumulated into
    const auto inp_d = to_device(inp), weight_d = to_device(weight), dout_d = to_device(dout);
    auto dinp_d = to_device(dinp);
    std::vector<float> out(inp.size()), rstd(static_cast<std::size_t>(N)), dweight(static_cast<std::size_t>(C));
    gpu::DeviceBuffer<float> out_d(out.size()), rstd_d(rstd.size()), dweight_d(dweight.size(), 5.0f);
    rmsnorm_forward(on_cpu, out.data(), rstd.data(), inp.data(), weight.data(), N, C, 1e-6);
    rmsnorm_forward(on_gpu, out_d.data(), rstd_d.data(), inp_d.data(), weight_d.data(), N, C, 1e-6);
    check_near(out, out_d, 2e-5, "rmsnorm_forward out");
    check_near(rstd, rstd_d, 2e-6, "rmsnorm_forward rstd");
    for (const auto store : {simnpo::GradStore::overwrite, simnpo::GradStore::accumulate}) {
        rmsnorm_backward(on_cpu, dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(), rstd.data(), N, C,
                         store);
        rmsnorm_backward(on_gpu, dinp_d.data(), dweight_d.data(), dout_d.data(), inp_d.data(), weight_d.data(),
                         rstd_d.data(), N, C, store);
    }
    check_near(dinp, dinp_d, 1e-4, "rmsnorm_backward dinp");
    check_near(dweight, dweight_d, 1e-4, "rmsnorm_backward dweight");
}

BOOST_AUTO_TEST_CASE(rope_kernels_match) {
    // Queries and keys of packed qkv rows (6 of 8 heads), D 10, positions from 17.
    const std::int64_t B = 3, T = 20, H = 4, KV = 2, D = 10, stride = (H + 2 * KV) * D;
    std::vector<double> inv_freq;
    for (std::int64_t i = 0; i < D / 2; ++i) inv_freq.push_back(std::pow(10000.0, -2.0 * static_cast<double>(i) / D));
    std::vector<float> cos, sin;
    cpu::rope_tables(cos, sin, std::span<const double>(inv_freq), 17, T);
    const auto cos_d = to_device(cos), sin_d = to_device(sin);
    auto x = random_weights(static_cast<std::size_t>(B * T * stride), 121);
    auto x_d = to_device(x);
    rope_forward(on_cpu, x.data(), cos.data(), sin.data(), B, T, H + KV, D, stride);
    rope_forward(on_gpu, x_d.data(), cos_d.data(), sin_d.data(), B, T, H + KV, D, stride);
    check_near(x, x_d, 1e-6, "rope_forward");
    rope_backward(on_cpu, x.data(), cos.data(), sin.data(), B, T, H + KV, D, stride);
    rope_backward(on_gpu, x_d.data(), cos_d.data(), sin_d.data(), B, T, H + KV, D, stride);
    check_near(x, x_d, 1e-6, "rope_backward");
}

BOOST_AUTO_TEST_CASE(attention_kernels_match) {
    // Grouped queries, windows shorter than the rows, padded rows, D not a power of two, and
    // rows longer than a warp (several values a lane); the last is GPT-2's layout (KV = H).
    const std::vector<AttentionCase> cases{{2, 7, 4, 2, 5, 0, {7, 4}},
                                           {3, 70, 4, 1, 6, 20, {70, 33, 1}},
                                           {2, 40, 6, 2, 12, 9, {40, 25}},
                                           {2, 48, 3, 3, 16, 0, {30, 48}}};
    for (const auto& c : cases) {
        const auto qkv = random_weights(c.qkv_size(), 131), dout = random_weights(c.out_size(), 132);
        auto dqkv = random_weights(c.qkv_size(), 133);  // accumulated into
        const auto qkv_d = to_device(qkv), dout_d = to_device(dout);
        auto dqkv_d = to_device(dqkv);
        std::vector<float> out(c.out_size()), att(c.att_size(), 0.0f);  // the GPU writes every att row, zeros where masked
        gpu::DeviceBuffer<float> out_d(out.size()), att_d(att.size());
        attention_forward(on_cpu, out.data(), att.data(), qkv.data(), c.lengths.data(), c.B, c.T, c.H, c.KV, c.D,
                          c.window);
        const auto lengths_d = to_device(c.lengths);
        attention_forward(on_gpu, out_d.data(), att_d.data(), qkv_d.data(), lengths_d.data(), c.B, c.T, c.H, c.KV, c.D,
                          c.window);
        check_near(out, out_d, 2e-5, describe(c) + " out");
        check_near(att, att_d, 2e-5, describe(c) + " att");
        attention_backward(on_cpu, dqkv.data(), dout.data(), qkv.data(), att.data(), c.lengths.data(), c.B, c.T, c.H,
                           c.KV, c.D, c.window);
        attention_backward(on_gpu, dqkv_d.data(), dout_d.data(), qkv_d.data(), att_d.data(), lengths_d.data(), c.B, c.T,
                           c.H, c.KV, c.D, c.window);
        check_near(dqkv, dqkv_d, 1e-4, describe(c) + " dqkv");
    }
}

BOOST_AUTO_TEST_CASE(gpt2_attention_on_the_gpu_is_the_general_one) {
    const std::int64_t B = 2, T = 40, C = 48, H = 4;
    const AttentionCase c{B, T, H, H, C / H, 0, {40, 17}};
    const auto qkv_d = to_device(random_weights(c.qkv_size(), 141)), dout_d = to_device(random_weights(c.out_size(), 142));
    const auto lengths_d = to_device(c.lengths);
    const auto run = [&](bool gpt2) {
        gpu::DeviceBuffer<float> out(c.out_size()), att(c.att_size()), dqkv(c.qkv_size(), 0.5f);
        if (gpt2) {
            attention_forward(on_gpu, out.data(), att.data(), qkv_d.data(), lengths_d.data(), B, T, C, H);
            attention_backward(on_gpu, dqkv.data(), dout_d.data(), qkv_d.data(), att.data(), lengths_d.data(), B, T, C,
                               H);
        } else {
            attention_forward(on_gpu, out.data(), att.data(), qkv_d.data(), lengths_d.data(), B, T, H, H, C / H,
                              std::int64_t{0});
            attention_backward(on_gpu, dqkv.data(), dout_d.data(), qkv_d.data(), att.data(), lengths_d.data(), B, T, H,
                               H, C / H, std::int64_t{0});
        }
        auto values = to_host(out);
        const auto gradients = to_host(dqkv);
        values.insert(values.end(), gradients.begin(), gradients.end());
        return values;
    };
    BOOST_TEST((run(true) == run(false)));
}

BOOST_AUTO_TEST_CASE(attention_decode_matches) {
    const std::int64_t n = 50, H = 4, KV = 2, D = 12;
    const auto q = random_weights(static_cast<std::size_t>(H * D), 151);
    const auto keys = random_weights(static_cast<std::size_t>(n * KV * D), 152);
    const auto values = random_weights(static_cast<std::size_t>(n * KV * D), 153);
    const auto q_d = to_device(q), keys_d = to_device(keys), values_d = to_device(values);
    for (const std::int64_t window : {0, 16}) {
        std::vector<float> out(static_cast<std::size_t>(H * D));
        gpu::DeviceBuffer<float> out_d(out.size());
        attention_decode(on_cpu, out.data(), q.data(), keys.data(), values.data(), n, H, KV, D, window);
        attention_decode(on_gpu, out_d.data(), q_d.data(), keys_d.data(), values_d.data(), n, H, KV, D, window);
        check_near(out, out_d, 2e-5, "attention_decode window " + std::to_string(window));
    }
}

BOOST_AUTO_TEST_CASE(swiglu_kernels_match) {
    const std::int64_t N = 33, I = 301;
    auto gate_up = random_weights(static_cast<std::size_t>(N * 2 * I), 161);
    for (std::size_t i = 0; i < gate_up.size(); i += 7) gate_up[i] *= 40.0f;  // far into both tails of the sigmoid
    const auto dout = random_weights(static_cast<std::size_t>(N * I), 162);
    const auto gate_up_d = to_device(gate_up), dout_d = to_device(dout);
    std::vector<float> out(static_cast<std::size_t>(N * I)), dgate_up(gate_up.size());
    gpu::DeviceBuffer<float> out_d(out.size()), dgate_up_d(dgate_up.size());
    swiglu_forward(on_cpu, out.data(), gate_up.data(), N, I);
    swiglu_forward(on_gpu, out_d.data(), gate_up_d.data(), N, I);
    check_near(out, out_d, 2e-6, "swiglu_forward");
    swiglu_backward(on_cpu, dgate_up.data(), dout.data(), gate_up.data(), N, I);
    swiglu_backward(on_gpu, dgate_up_d.data(), dout_d.data(), gate_up_d.data(), N, I);
    check_near(dgate_up, dgate_up_d, 2e-6, "swiglu_backward");
}

BOOST_AUTO_TEST_CASE(embedding_kernels_match_bit_for_bit) {
    // Tokens that repeat many times: both backends add each token's rows in row order, with no atomics.
    const std::int64_t N = 200, C = 80, V = 301;
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(N));
    simnpo::Rng rng(171);
    for (auto& token : tokens) token = static_cast<std::int32_t>(rng.below(12)) * 25;
    const auto weight = random_weights(static_cast<std::size_t>(V * C), 172);
    const auto dout = random_weights(static_cast<std::size_t>(N * C), 173);
    const auto tokens_d = to_device(tokens);
    const auto weight_d = to_device(weight), dout_d = to_device(dout);
    std::vector<float> out(static_cast<std::size_t>(N * C)), dweight(weight.size(), 5.0f);
    gpu::DeviceBuffer<float> out_d(out.size()), dweight_d(dweight.size(), 5.0f);
    embedding_forward(on_cpu, out.data(), tokens.data(), weight.data(), N, C);
    embedding_forward(on_gpu, out_d.data(), tokens_d.data(), weight_d.data(), N, C);
    BOOST_TEST((to_host(out_d) == out));
    for (const auto store : {simnpo::GradStore::overwrite, simnpo::GradStore::accumulate}) {
        embedding_backward(on_cpu, dweight.data(), dout.data(), tokens.data(), N, C, V, store);
        embedding_backward(on_gpu, dweight_d.data(), dout_d.data(), tokens_d.data(), N, C, V, store);
        BOOST_TEST((to_host(dweight_d) == dweight));
    }
}

int main(int argc, char** argv) {
    if (simnpo::backend::cuda::device_count() == 0) {
        std::printf("test_cuda_parity: SKIPPED: no CUDA device on this machine; the CPU-vs-GPU parity was not checked\n");
        return 77;
    }
    return boost::unit_test::unit_test_main([] { return true; }, argc, argv);
}
