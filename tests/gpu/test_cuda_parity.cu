// The CUDA backend against the CPU backend, its oracle (DESIGN §7): the same
// parameters and batches through Gpt<simnpo::cpu, float> and
// Gpt<simnpo::cuda, float> must give the same per-token log-probabilities,
// parameter gradients, membership-inference statistics, optimizer steps and a
// 20-step unlearning trajectory, within float tolerance. Without a GPU the
// program says so and exits 77, which ctest reports as skipped.
#define BOOST_TEST_MODULE cuda_parity
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
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
    simnpo::model::init_gpt2(model, seed);
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
void check_tensors(const simnpo::model::ParamLayout& layout, const std::vector<float>& expected,
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
    const auto loaded = simnpo::model::load<simnpo::cuda, float>(dir.path);
    BOOST_TEST(host(loaded, loaded.params()) == std::vector<float>(cpu.params().begin(), cpu.params().end()));
}

int main(int argc, char** argv) {
    if (simnpo::backend::cuda::device_count() == 0) {
        std::printf("test_cuda_parity: SKIPPED: no CUDA device on this machine; the CPU-vs-GPU parity was not checked\n");
        return 77;
    }
    return boost::unit_test::unit_test_main([] { return true; }, argc, argv);
}
