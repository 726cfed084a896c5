// Optimizers, schedules and gradient clipping: golden parity with torch.optim
// (tests/reference/optim_reference.py) in float and double, and hand-worked values.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_optim)

namespace so = simnpo::optim;
namespace tt = boost::test_tools;

namespace {

// The least a model offers the optimizers: two slabs and a backend.
template <class Scalar>
struct SlabModel {
    using backend_type = simnpo::cpu;
    using scalar_type = Scalar;
    simnpo::cpu::Buffer<Scalar> parameters, gradients;
    simnpo::cpu tag;

    auto& params() { return parameters; }
    const auto& params() const { return parameters; }
    auto& grads() { return gradients; }
    const auto& grads() const { return gradients; }
    simnpo::cpu& backend() { return tag; }
    const simnpo::cpu& backend() const { return tag; }
};

template <class Scalar>
SlabModel<Scalar> slab_model(const std::vector<double>& params, const std::vector<double>& grads = {}) {
    SlabModel<Scalar> model;
    model.parameters.assign(params.begin(), params.end());
    model.gradients.assign(params.size(), Scalar{0});
    for (std::size_t i = 0; i < grads.size(); ++i) model.gradients[i] = static_cast<Scalar>(grads[i]);
    return model;
}

const nlohmann::json& reference() {
    static const nlohmann::json json =
        nlohmann::json::parse(simnpo::read_file(std::string(SIMNPO_FIXTURES_DIR) + "/optim/reference.json"));
    return json;
}

std::vector<double> row(const nlohmann::json& json, const char* key, std::size_t step) {
    return json.at(key).at(step).get<std::vector<double>>();
}

// |actual − expected| <= rtol · (|expected| + max |expected|) for every element, naming the first that
// is not. The second term is for elements that came out of cancellation: they carry the rounding of
// their larger operands, of the size of the vector's largest element.
template <class Buffer>
void check_close(const Buffer& actual, const std::vector<double>& expected, double rtol, const std::string& what) {
    BOOST_TEST_REQUIRE(actual.size() == expected.size(), what);
    double largest = 0.0;
    for (const double e : expected) largest = std::max(largest, std::abs(e));
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const double a = static_cast<double>(actual[i]), e = expected[i];
        if (!(std::abs(a - e) <= rtol * (std::abs(e) + largest))) {
            BOOST_ERROR(what << "[" << i << "] = " << a << ", expected " << e);
            return;
        }
    }
}

// A few float ulps (the same operations as PyTorch's, but FMA contraction and summation order may
// differ); in double the same operations in the same order agree to rounding.
template <class Scalar>
constexpr double rtol = std::is_same_v<Scalar, float> ? 1e-6 : 1e-13;

template <class Scalar>
void check_adamw_against_pytorch(const char* dtype) {
    const auto& fixture = reference();
    const auto& config = fixture.at("adamw");
    const auto& expected = config.at(dtype);
    auto model = slab_model<Scalar>(fixture.at("params0").get<std::vector<double>>());
    const so::AdamW adamw({.lr = config.at("lr"),
                           .beta1 = config.at("beta1"),
                           .beta2 = config.at("beta2"),
                           .eps = config.at("eps"),
                           .weight_decay = config.at("weight_decay")});
    const so::Schedule schedule{so::ScheduleKind::linear, config.at("warmup_steps"), config.at("total_steps")};
    auto state = adamw.state(model);
    // The training loop's way: the clipping factor handed to step(), applied as it reads the
    // gradients. It must give the bits of clip_grad_norm followed by step().
    auto fused = slab_model<Scalar>(fixture.at("params0").get<std::vector<double>>());
    auto fused_state = adamw.state(fused);
    const std::size_t steps = fixture.at("grads").size();
    for (std::size_t step = 0; step < steps; ++step) {
        const auto grads = row(fixture, "grads", step);
        model.gradients.assign(grads.begin(), grads.end());
        fused.gradients.assign(grads.begin(), grads.end());
        const double coefficient = so::clip_coefficient<Scalar>(so::grad_norm(fused), config.at("max_grad_norm"));
        const double norm = so::clip_grad_norm(model, config.at("max_grad_norm"));
        BOOST_TEST(norm == expected.at("norms").at(step).get<double>(), tt::tolerance(rtol<Scalar>));
        const double lr = adamw.params().lr * schedule.factor(static_cast<std::int64_t>(step));
        BOOST_TEST(lr == expected.at("lrs").at(step).get<double>(), tt::tolerance(1e-15));
        adamw.step(model, state, lr);
        adamw.step(fused, fused_state, lr, coefficient);
        BOOST_TEST((fused.parameters == model.parameters));
        BOOST_TEST(state.step == static_cast<std::int64_t>(step + 1));
        const std::string at = std::string(dtype) + " step " + std::to_string(step) + ": ";
        check_close(model.parameters, row(expected, "params", step), rtol<Scalar>, at + "params");
        check_close(state.exp_avg, row(expected, "exp_avg", step), rtol<Scalar>, at + "exp_avg");
        check_close(state.exp_avg_sq, row(expected, "exp_avg_sq", step), rtol<Scalar>, at + "exp_avg_sq");
    }
}

template <class Scalar>
void check_sgd_against_pytorch(const char* dtype) {
    const auto& fixture = reference();
    const auto& config = fixture.at("sgd");
    const auto& expected = config.at(dtype);
    auto model = slab_model<Scalar>(fixture.at("params0").get<std::vector<double>>());
    const so::SGD sgd(
        {.lr = config.at("lr"), .momentum = config.at("momentum"), .weight_decay = config.at("weight_decay")});
    auto state = sgd.state(model);
    const std::size_t steps = fixture.at("grads").size();
    for (std::size_t step = 0; step < steps; ++step) {
        const auto grads = row(fixture, "grads", step);
        model.gradients.assign(grads.begin(), grads.end());
        sgd.step(model, state, sgd.params().lr);
        const std::string at = std::string(dtype) + " step " + std::to_string(step) + ": ";
        check_close(model.parameters, row(expected, "params", step), rtol<Scalar>, at + "params");
        check_close(state.momentum_buffer, row(expected, "momentum_buffer", step), rtol<Scalar>,
                    at + "momentum_buffer");
    }
}

bool names(const simnpo::Error& error, const std::string& word) {
    return std::string(error.what()).find(word) != std::string::npos;
}

simnpo::model::Config tiny_config() {
    return {.vocab_size = 11, .n_positions = 8, .n_embd = 8, .n_layer = 1, .n_head = 2};
}

}  // namespace

// --- Golden parity with torch.optim: clipping, LambdaLR schedule, moments, every step. ---

BOOST_AUTO_TEST_CASE(adamw_with_clipping_and_schedule_matches_pytorch_float) {
    check_adamw_against_pytorch<float>("float32");
}

BOOST_AUTO_TEST_CASE(adamw_with_clipping_and_schedule_matches_pytorch_double) {
    check_adamw_against_pytorch<double>("float64");
}

BOOST_AUTO_TEST_CASE(sgd_with_momentum_matches_pytorch_float) { check_sgd_against_pytorch<float>("float32"); }

BOOST_AUTO_TEST_CASE(sgd_with_momentum_matches_pytorch_double) { check_sgd_against_pytorch<double>("float64"); }

// --- Hand-worked steps on the real model. ---

BOOST_AUTO_TEST_CASE(adamw_first_step_moves_each_parameter_by_lr_against_its_gradient_sign) {
    // t = 1: m̂ = g and v̂ = g², so without decay θ moves by −lr · g / (|g| + ε).
    simnpo::model::Gpt<simnpo::cpu, double> model(tiny_config());
    for (std::size_t i = 0; i < model.params().size(); ++i) {
        model.params()[i] = 1.0 + 0.01 * static_cast<double>(i % 17);  // no cancellation against the step
        model.grads()[i] = (i % 3 == 0 ? -1.0 : 1.0) * 1e-3 * static_cast<double>(1 + i % 5);
    }
    const auto before = model.params();
    const so::AdamW adamw({.lr = 0.1, .weight_decay = 0.0});
    auto state = adamw.state(model);
    BOOST_TEST(state.exp_avg.size() == model.layout().total());
    BOOST_TEST(state.exp_avg_sq.size() == model.layout().total());
    adamw.step(model, state, 0.1);
    std::vector<double> expected(before.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
        const double g = model.grads()[i];
        expected[i] = before[i] - 0.1 * g / (std::abs(g) + 1e-8);
    }
    check_close(model.params(), expected, 1e-14, "params");
}

BOOST_AUTO_TEST_CASE(adamw_decay_is_decoupled_from_the_gradient) {
    // A zero gradient leaves m = v = 0: only θ · (1 − lr·wd) remains, 2 · (1 − 0.5·0.1) = 1.9.
    auto model = slab_model<double>({2.0, -4.0});
    const so::AdamW adamw({.lr = 0.5, .weight_decay = 0.1});
    auto state = adamw.state(model);
    adamw.step(model, state, 0.5);
    BOOST_TEST(model.parameters[0] == 1.9, tt::tolerance(1e-15));
    BOOST_TEST(model.parameters[1] == -3.8, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(sgd_without_momentum_is_plain_descent_with_decay) {
    // θ ← θ − lr·(g + wd·θ): 1 − 0.5·(2 + 0.1·1) = −0.05; −2 − 0.5·(−1 + 0.1·(−2)) = −1.4.
    simnpo::model::Gpt<simnpo::cpu, float> model(tiny_config());
    std::fill(model.params().begin(), model.params().end(), 0.0f);
    model.params()[0] = 1.0f;
    model.params()[1] = -2.0f;
    model.grads()[0] = 2.0f;
    model.grads()[1] = -1.0f;
    const so::SGD sgd({.lr = 0.5, .weight_decay = 0.1});
    auto state = sgd.state(model);
    BOOST_TEST(state.momentum_buffer.empty());  // no memory spent without momentum
    sgd.step(model, state, 0.5);
    BOOST_TEST(model.params()[0] == -0.05f, tt::tolerance(1e-6f));
    BOOST_TEST(model.params()[1] == -1.4f, tt::tolerance(1e-6f));
    BOOST_TEST(model.params()[2] == 0.0f);
    BOOST_TEST(state.step == 1);
}

BOOST_AUTO_TEST_CASE(sgd_momentum_buffer_starts_as_the_first_gradient) {
    // μ = 0.9, lr = 1, g = 1 twice: b = 1 then 1.9; θ = 0 − 1 − 1.9 = −2.9.
    auto model = slab_model<double>({0.0}, {1.0});
    const so::SGD sgd({.lr = 1.0, .momentum = 0.9});
    auto state = sgd.state(model);
    sgd.step(model, state, 1.0);
    BOOST_TEST(state.momentum_buffer[0] == 1.0);
    sgd.step(model, state, 1.0);
    BOOST_TEST(state.momentum_buffer[0] == 1.9, tt::tolerance(1e-15));
    BOOST_TEST(model.parameters[0] == -2.9, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(states_name_their_tensors_for_checkpoints) {
    auto model = slab_model<float>({1.0, 2.0, 3.0});
    std::vector<std::string> seen;
    auto adamw_state = so::AdamW().state(model);
    adamw_state.for_each_tensor([&](const char* name, auto& buffer) {
        seen.emplace_back(name);
        BOOST_TEST(buffer.size() == 3u);
    });
    auto sgd_state = so::SGD({.momentum = 0.5}).state(model);
    sgd_state.for_each_tensor([&](const char* name, auto& buffer) {
        seen.emplace_back(name);
        BOOST_TEST(buffer.size() == 3u);
    });
    BOOST_TEST(seen == (std::vector<std::string>{"exp_avg", "exp_avg_sq", "momentum_buffer"}),
               tt::per_element());
}

BOOST_AUTO_TEST_CASE(a_state_from_another_model_is_an_error) {
    auto small = slab_model<double>({1.0, 2.0});
    auto large = slab_model<double>({1.0, 2.0, 3.0});
    const so::AdamW adamw;
    auto state = adamw.state(small);
    BOOST_CHECK_THROW(adamw.step(large, state, 1e-3), simnpo::Error);
    const so::SGD sgd({.momentum = 0.9});
    auto sgd_state = sgd.state(small);
    BOOST_CHECK_THROW(sgd.step(large, sgd_state, 1e-3), simnpo::Error);
}

// --- Clipping. ---

BOOST_AUTO_TEST_CASE(clipping_below_the_limit_leaves_gradients_alone) {
    auto model = slab_model<double>({0.0, 0.0}, {3.0, 4.0});
    BOOST_TEST(so::clip_grad_norm(model, 10.0) == 5.0, tt::tolerance(1e-15));
    BOOST_TEST(model.gradients[0] == 3.0);
    BOOST_TEST(model.gradients[1] == 4.0);
    BOOST_TEST(so::clip_grad_norm(model, 0.0) == 5.0, tt::tolerance(1e-15));  // 0 disables clipping
    BOOST_TEST(so::clip_grad_norm(model, -1.0) == 5.0, tt::tolerance(1e-15));
    BOOST_TEST(model.gradients[1] == 4.0);
}

BOOST_AUTO_TEST_CASE(clipping_above_the_limit_scales_to_the_limit) {
    // Norm 5, limit 1: factor 1 / (5 + 1e-6), as PyTorch's; returns the norm before clipping.
    auto model = slab_model<double>({0.0, 0.0}, {3.0, 4.0});
    BOOST_TEST(so::clip_grad_norm(model, 1.0) == 5.0, tt::tolerance(1e-15));
    BOOST_TEST(model.gradients[0] == 3.0 / (5.0 + 1e-6), tt::tolerance(1e-15));
    BOOST_TEST(model.gradients[1] == 4.0 / (5.0 + 1e-6), tt::tolerance(1e-15));
    BOOST_TEST(so::clip_grad_norm(model, 1.0) == 5.0 / (5.0 + 1e-6), tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(clipping_sums_a_large_slab_in_double) {
    // Over several summation blocks and both threads; a float accumulator would be far off here.
    const std::size_t n = 100'003;
    const double g = static_cast<double>(0.1f);
    auto model = slab_model<float>(std::vector<double>(n, 0.0), std::vector<double>(n, g));
    BOOST_TEST(so::clip_grad_norm(model, 0.0) == std::sqrt(static_cast<double>(n)) * g, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(a_float_slab_whose_norm_exceeds_float_range_is_still_clipped) {
    // Norm √23 · 1e38 = 4.8e38 > FLT_MAX (3.4e38), finite in double: the gradients are still
    // scaled by 1 / norm, not zeroed by a float coefficient of 1 / inf.
    auto model = slab_model<float>({0.0, 0.0, 0.0, 0.0}, {3e38, 3e38, 2e38, 1e38});
    BOOST_TEST(so::clip_grad_norm(model, 1.0) == 4.795831523312719e38, tt::tolerance(1e-6));
    BOOST_TEST(model.gradients[0] == 3e38 / 4.795831523312719e38, tt::tolerance(1e-5));
    BOOST_TEST(model.gradients[3] == 1e38 / 4.795831523312719e38, tt::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(a_non_finite_norm_is_returned_and_nothing_is_scaled) {
    auto model = slab_model<double>({0.0, 0.0}, {std::numeric_limits<double>::infinity(), 1.0});
    BOOST_TEST(std::isinf(so::clip_grad_norm(model, 1.0)));
    BOOST_TEST(model.gradients[1] == 1.0);
    model.gradients[0] = std::numeric_limits<double>::quiet_NaN();
    BOOST_TEST(std::isnan(so::clip_grad_norm(model, 1.0)));
    BOOST_TEST(model.gradients[1] == 1.0);
}

// --- Schedules (Hugging Face's formulas, worked by hand). ---

BOOST_AUTO_TEST_CASE(linear_schedule_with_warmup) {
    const so::Schedule linear{so::ScheduleKind::linear, 10, 100};
    BOOST_TEST(linear.factor(0) == 0.0);
    BOOST_TEST(linear.factor(5) == 0.5);
    BOOST_TEST(linear.factor(10) == 1.0);
    BOOST_TEST(linear.factor(55) == 0.5);    // (100 − 55) / 90
    BOOST_TEST(linear.factor(99) == 1.0 / 90.0, tt::tolerance(1e-15));
    BOOST_TEST(linear.factor(100) == 0.0);
    BOOST_TEST(linear.factor(150) == 0.0);  // never negative
}

BOOST_AUTO_TEST_CASE(cosine_schedule_with_warmup) {
    const so::Schedule cosine{so::ScheduleKind::cosine, 10, 110};
    BOOST_TEST(cosine.factor(5) == 0.5);
    BOOST_TEST(cosine.factor(10) == 1.0);
    BOOST_TEST(cosine.factor(35) == 0.8535533905932737, tt::tolerance(1e-15));  // ½(1 + cos(π/4))
    BOOST_TEST(cosine.factor(60) == 0.5, tt::tolerance(1e-15));                 // the midpoint
    BOOST_TEST(std::abs(cosine.factor(110)) < 1e-15);
}

BOOST_AUTO_TEST_CASE(constant_schedule_with_and_without_warmup) {
    const so::Schedule warm{so::ScheduleKind::constant, 4, 0};
    BOOST_TEST(warm.factor(0) == 0.0);
    BOOST_TEST(warm.factor(2) == 0.5);
    BOOST_TEST(warm.factor(4) == 1.0);
    BOOST_TEST(warm.factor(1000) == 1.0);
    BOOST_TEST(so::Schedule{}.factor(0) == 1.0);
    const so::Schedule no_warmup{so::ScheduleKind::linear, 0, 4};
    BOOST_TEST(no_warmup.factor(0) == 1.0);
    BOOST_TEST(no_warmup.factor(1) == 0.75);
}

BOOST_AUTO_TEST_CASE(schedule_kinds_by_name) {
    BOOST_TEST((so::schedule_kind("constant") == so::ScheduleKind::constant));
    BOOST_TEST((so::schedule_kind("linear") == so::ScheduleKind::linear));
    BOOST_TEST((so::schedule_kind("cosine") == so::ScheduleKind::cosine));
    BOOST_CHECK_EXCEPTION(so::schedule_kind("Cosine"), simnpo::Error,
                          [](const simnpo::Error& e) { return names(e, "'Cosine'") && names(e, "linear"); });
    BOOST_CHECK_THROW(so::schedule_kind(""), simnpo::Error);
}

// --- Invalid hyperparameters: one-line errors that name the parameter. ---

BOOST_AUTO_TEST_CASE(invalid_adamw_parameters_are_errors) {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    const auto rejects = [](so::AdamW::Params params, const char* name) {
        BOOST_CHECK_EXCEPTION(so::AdamW{params}, simnpo::Error,
                              [&](const simnpo::Error& e) { return names(e, name); });
    };
    rejects({.lr = -1e-3}, "lr");
    rejects({.lr = inf}, "lr");
    rejects({.lr = nan}, "lr");
    rejects({.beta1 = 1.0}, "beta1");
    rejects({.beta1 = -0.1}, "beta1");
    rejects({.beta2 = 1.0}, "beta2");
    rejects({.beta2 = nan}, "beta2");
    rejects({.eps = 0.0}, "eps");
    rejects({.weight_decay = -0.01}, "weight_decay");
    BOOST_CHECK_NO_THROW(so::AdamW({.lr = 0.0, .beta1 = 0.0, .beta2 = 0.0, .weight_decay = 0.0}));

    auto model = slab_model<double>({1.0});
    const so::AdamW adamw;
    auto state = adamw.state(model);
    BOOST_CHECK_THROW(adamw.step(model, state, -1.0), simnpo::Error);  // a scheduled rate is checked too
    BOOST_CHECK_THROW(adamw.step(model, state, nan), simnpo::Error);
    BOOST_TEST(state.step == 0);
}

BOOST_AUTO_TEST_CASE(invalid_sgd_parameters_are_errors) {
    const auto rejects = [](so::SGD::Params params, const char* name) {
        BOOST_CHECK_EXCEPTION(so::SGD{params}, simnpo::Error, [&](const simnpo::Error& e) { return names(e, name); });
    };
    rejects({.lr = -1.0}, "lr");
    rejects({.momentum = -0.5}, "momentum");
    rejects({.weight_decay = -1.0}, "weight_decay");
    rejects({.weight_decay = std::numeric_limits<double>::infinity()}, "weight_decay");
}

BOOST_AUTO_TEST_SUITE_END()  // test_optim
