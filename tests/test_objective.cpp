// Objectives end to end through the model: for every forget × retain pair the
// parameter gradient (loss → dL/dℓ → token weights or logit gradient →
// backward) matches central differences of the loss in double; the frozen
// reference computes each example once; errors for compositions that cannot run.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include <simnpo.hpp>

BOOST_AUTO_TEST_SUITE(test_objective)

namespace sl = simnpo::loss;
namespace tt = boost::test_tools;
using simnpo::data::Example;
using Model = simnpo::model::Gpt<simnpo::cpu, double>;
using Llama = simnpo::model::Llama<simnpo::cpu, double>;
using Reference = sl::FrozenReference<Model>;

namespace {

simnpo::model::Config tiny_config() {
    return {.vocab_size = 13, .n_positions = 16, .n_embd = 8, .n_layer = 2, .n_head = 2};
}

// A Llama with everything the family has that changes a gradient: GQA, every
// bias, an untied head, a sliding window on one layer, rotary scaling.
simnpo::model::LlamaConfig tiny_llama_config() {
    simnpo::model::LlamaConfig c;
    c.model_type = "mistral";
    c.vocab_size = 13;
    c.hidden_size = 8;
    c.intermediate_size = 12;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 6;
    c.max_position_embeddings = 16;
    c.rope_scaling = {simnpo::model::RopeScaling::Kind::linear, 2.0};
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.sliding_window = {0, 3};
    return c;
}

template <class M>
typename M::config_type config_of() {
    if constexpr (std::is_same_v<M, Llama>) return tiny_llama_config();
    else return tiny_config();
}

// Answers of different lengths, so that length normalisation matters.
const std::vector<Example> forget_set{{{1, 2}, {3, 4, 5}}, {{6}, {7}}, {{8, 9, 10}, {11, 12, 0, 1, 2}}};
const std::vector<Example> retain_set{{{2}, {4, 6, 8}}, {{3, 5}, {7, 9}}};
const std::vector<std::vector<std::int32_t>> refusals{{10, 10}, {11}, {12, 0, 12}};

// |actual − expected| ≤ absolute + relative·|expected|.
void check_close(double actual, double expected, double relative, double absolute) {
    BOOST_TEST(std::abs(actual - expected) <= absolute + relative * std::abs(expected),
               actual << " vs " << expected);
}

// The model before unlearning, and the same model moved away from it, so that
// ℓ_θ ≠ ℓ_ref and KL > 0: at θ = θ_ref some terms would be trivially symmetric.
template <class M = Model>
struct Fixture {
    M model{config_of<M>()};
    sl::FrozenReference<M> reference;

    Fixture() : reference(init(model)) {
        simnpo::Rng rng(7);
        for (auto& p : model.params()) p += 0.05 * rng.normal();
    }
    static const M& init(M& model) {
        simnpo::model::init_weights(model, 3);
        // init_weights's small weights give near-uniform predictions; larger ones give a sharper model.
        for (auto& p : model.params()) p *= 3.0;
        return model;
    }
};

// The objective's gradient against central differences of its total, on
// parameters spread over every tensor of the model.
template <class M, class Objective>
void check_gradient_of(const Objective& objective, const std::vector<Example>& forget_set,
                       const std::vector<Example>& retain_set) {
    Fixture<M> f;
    const std::vector<Example> retain = Objective::has_retain ? retain_set : std::vector<Example>{};
    const auto report = objective.gradient(f.model, forget_set, retain, f.reference);
    BOOST_TEST(std::isfinite(report.total));
    const std::vector<double> exact(f.model.grads().begin(), f.model.grads().end());
    double worst = 0.0, largest = 0.0;
    for (const auto& slot : f.model.layout().slots()) {
        for (const std::size_t k : {std::size_t{0}, slot.size / 2, slot.size - 1}) {
            const std::size_t index = slot.offset + k;
            double& p = f.model.params()[index];
            const double saved = p, h = 1e-5;
            p = saved + h;
            const double plus = objective.gradient(f.model, forget_set, retain, f.reference).total;
            p = saved - h;
            const double minus = objective.gradient(f.model, forget_set, retain, f.reference).total;
            p = saved;
            const double numeric = (plus - minus) / (2 * h);
            worst = std::max(worst, std::abs(numeric - exact[index]) / (1e-6 + std::abs(numeric)));
            largest = std::max(largest, std::abs(numeric));
            check_close(exact[index], numeric, 1e-5, 1e-9);
        }
    }
    BOOST_TEST_MESSAGE("worst relative error " << worst << ", largest gradient " << largest);
    // A gradient that vanished everywhere would pass the comparison trivially.
    BOOST_TEST(largest > 1e-3);
}

// The same on both families.
template <class Objective>
void check_gradient(const Objective& objective, const std::vector<Example>& forget_set = forget_set,
                    const std::vector<Example>& retain_set = retain_set) {
    BOOST_TEST_CONTEXT("gpt2") { check_gradient_of<Model>(objective, forget_set, retain_set); }
    BOOST_TEST_CONTEXT("llama") { check_gradient_of<Llama>(objective, forget_set, retain_set); }
}

}  // namespace

BOOST_AUTO_TEST_CASE(gradient_ascent_with_every_retain_loss) {
    check_gradient(sl::Objective<sl::GradAscent>{});
    check_gradient(sl::GradDiff{sl::GradAscent{}, sl::NLL{}, {.forget_weight = 0.7, .retain_weight = 1.3}});
    check_gradient(sl::Objective<sl::GradAscent, sl::KL>{sl::GradAscent{}, sl::KL{}, {.retain_weight = 2.0}});
}

BOOST_AUTO_TEST_CASE(npo_with_every_retain_loss) {
    const sl::NPO npo({.beta = 0.5});
    check_gradient(sl::Objective<sl::NPO>{npo});
    check_gradient(sl::NPO_GD{npo, sl::NLL{}, {.retain_weight = 0.5}});
    check_gradient(sl::NPO_KL{npo, sl::KL{}, {.forget_weight = 2.0}});
}

BOOST_AUTO_TEST_CASE(simnpo_with_every_retain_loss) {
    const sl::SimNPO simnpo({.beta = 2.5, .gamma = 0.4});
    check_gradient(sl::Objective<sl::SimNPO>{simnpo});
    check_gradient(sl::SimNPO_GD{simnpo, sl::NLL{}, {.retain_weight = 0.5}});
    check_gradient(sl::SimNPO_KL{simnpo, sl::KL{}});
}

BOOST_AUTO_TEST_CASE(dpo_with_every_retain_loss) {
    const sl::DPO dpo(refusals, {.beta = 0.8});
    check_gradient(sl::Objective<sl::DPO>{dpo});
    check_gradient(sl::Objective<sl::DPO, sl::NLL>{dpo, sl::NLL{}});
    check_gradient(sl::Objective<sl::DPO, sl::KL>{dpo, sl::KL{}, {.retain_weight = 0.3}});
}

BOOST_AUTO_TEST_CASE(forget_and_retain_rows_in_one_pass) {
    // Rows of equal length: the objective runs forget and retain rows through
    // the model as one batch. The gradient must be the same as apart.
    const std::vector<Example> forget{{{1, 2}, {3, 4, 5}}, {{6, 7}, {8, 9, 10}}};
    const std::vector<Example> retain{{{2, 3}, {4, 6, 8}}, {{3, 5}, {7, 9, 11}}, {{12}, {1, 2, 3, 4}}};
    check_gradient(sl::NPO_GD{sl::NPO({.beta = 0.5}), sl::NLL{}, {.forget_weight = 0.7, .retain_weight = 1.6}},
                   forget, retain);
    check_gradient(sl::Objective<sl::DPO, sl::NLL>{sl::DPO(refusals, {.beta = 0.8}), sl::NLL{}}, forget, retain);
    Fixture<> f;
    sl::SimNPO_GD{}.gradient(f.model, forget, retain);
    BOOST_TEST(f.model.sequence_logprobs().size() == 5u);  // the last forward held all five rows
    // Rows of different lengths go apart: the last forward was the retain batch alone.
    sl::SimNPO_GD{}.gradient(f.model, forget_set, retain_set);
    BOOST_TEST(f.model.sequence_logprobs().size() == retain_set.size());
}

BOOST_AUTO_TEST_CASE(gradient_is_scaled_and_accumulated) {
    // Two half-scaled accumulating calls give the gradient of one call.
    Fixture<> f;
    const sl::NPO_GD objective{sl::NPO({.beta = 0.5}), sl::NLL{}};
    objective.gradient(f.model, forget_set, retain_set, f.reference);
    const std::vector<double> once(f.model.grads().begin(), f.model.grads().end());
    objective.gradient(f.model, forget_set, retain_set, f.reference, simnpo::GradStore::overwrite, 0.5);
    const auto report =
        objective.gradient(f.model, forget_set, retain_set, f.reference, simnpo::GradStore::accumulate, 0.5);
    for (std::size_t i = 0; i < once.size(); ++i)
        check_close(f.model.grads()[i], once[i], 1e-12, 1e-15);
    // The report is not scaled: total = w_f L_f + w_r L_r of the batch.
    BOOST_TEST(report.total == report.forget_loss + report.retain_loss, tt::tolerance(1e-14));
}

BOOST_AUTO_TEST_CASE(reports_show_each_examples_weight) {
    Fixture<> f;
    const double beta = 0.5;
    const auto npo = sl::NPO_GD{sl::NPO({.beta = beta}), sl::NLL{}}.gradient(f.model, forget_set, retain_set,
                                                                            f.reference);
    // Reference log-likelihoods from a separate forward of the unperturbed model.
    Model original(tiny_config());
    Fixture<>::init(original);
    original.forward(simnpo::data::make_batch(forget_set));
    const auto ref = original.sequence_logprobs();
    f.model.forward(simnpo::data::make_batch(forget_set));
    const auto now = f.model.sequence_logprobs();
    BOOST_TEST_REQUIRE(npo.forget_rows.size() == forget_set.size());
    for (std::size_t i = 0; i < forget_set.size(); ++i) {
        const auto& row = npo.forget_rows[i];
        BOOST_TEST(row.logprob == now[i], tt::tolerance(1e-12));
        BOOST_TEST(row.ref_logprob == ref[i], tt::tolerance(1e-12));
        BOOST_TEST(row.length == static_cast<std::int64_t>(forget_set[i].answer_ids.size()));
        // The paper's NPO weight, 2π^β/(π^β + π_ref^β), over the batch size.
        const double pi = std::exp(beta * now[i]), pi_ref = std::exp(beta * ref[i]);
        BOOST_TEST(row.weight == 2.0 * pi / (pi + pi_ref) / 3.0, tt::tolerance(1e-10));
    }
    // The three examples' weights differ: the check above is not of a constant.
    BOOST_TEST(std::abs(npo.forget_rows[0].weight - npo.forget_rows[2].weight) > 1e-3);

    const auto simnpo = sl::SimNPO_GD{}.gradient(f.model, forget_set, retain_set);
    for (const auto& row : simnpo.forget_rows) BOOST_TEST(std::isnan(row.ref_logprob));
    BOOST_TEST(simnpo.retain_tokens == 5);
    BOOST_TEST(simnpo.forget_tokens == 9);
}

BOOST_AUTO_TEST_CASE(reference_log_likelihoods_are_computed_once) {
    Fixture<> f;
    const sl::NPO_KL npo{sl::NPO{}, sl::KL{}};
    for (int step = 0; step < 4; ++step) npo.gradient(f.model, forget_set, retain_set, f.reference);
    // One forward per distinct example (the reference runs each alone): the forget batch's ℓ_ref and the
    // retain batch's distributions on the first step, then none.
    const auto distinct = static_cast<std::int64_t>(forget_set.size() + retain_set.size());
    BOOST_TEST(f.reference.forward_passes() == distinct);
    // A batch with a new example and a repeated one scores only the new one.
    const std::vector<Example> mixed{forget_set[0], {{1}, {1, 1}}};
    sl::Objective<sl::NPO>{}.gradient(f.model, mixed, {}, f.reference);
    BOOST_TEST(f.reference.forward_passes() == distinct + 1);

    // DPO's refusal rows are fixed per example, so they are cached as well.
    Fixture<> g;
    const sl::Objective<sl::DPO> dpo{sl::DPO(refusals)};
    for (int step = 0; step < 3; ++step) dpo.gradient(g.model, forget_set, {}, g.reference);
    BOOST_TEST(g.reference.forward_passes() == static_cast<std::int64_t>(2 * forget_set.size()));
}

BOOST_AUTO_TEST_CASE(kl_distributions_cached_or_recomputed_agree) {
    Fixture<> cached, recomputed;
    Reference uncached(recomputed.reference.model(), {.distribution_cache_bytes = 0});
    const sl::SimNPO_KL objective{};
    for (int step = 0; step < 2; ++step) {
        const auto a = objective.gradient(cached.model, forget_set, retain_set, cached.reference);
        const auto b = objective.gradient(recomputed.model, forget_set, retain_set, uncached);
        BOOST_TEST(a.retain_loss == b.retain_loss, tt::tolerance(1e-12));
        BOOST_TEST(a.retain_loss > 1e-3);
        for (std::size_t i = 0; i < cached.model.grads().size(); ++i)
            check_close(cached.model.grads()[i], recomputed.model.grads()[i], 1e-10, 1e-14);
    }
    const auto retained = static_cast<std::int64_t>(retain_set.size());
    BOOST_TEST(cached.reference.forward_passes() == retained);
    BOOST_TEST(uncached.forward_passes() == 2 * retained);  // one forward per example, each step
}

namespace {

// KL through the fused head (CausalLM::backward_kl, what Objective runs on the
// CPU) against KL on the kept logits of both models (KL::evaluate and
// backward_logits, what it runs elsewhere): the same loss and gradient, up to
// the order of the vocabulary sums.
template <class M>
void check_fused_kl_against_kept_logits() {
    Fixture<M> f;
    const auto batch = simnpo::data::make_batch(retain_set);
    const double weight = 0.7;
    f.model.forward(batch, simnpo::model::Logits::keep);
    const std::int64_t N = f.model.scored_count(), V = f.model.config().vocab_size;
    const std::span<double> ref = f.reference.distributions(retain_set);
    std::vector<double> per_position(static_cast<std::size_t>(N));
    const sl::Distributions<double> d{f.model.logits().data(), ref.data(), ref.data(), per_position.data(), N, V,
                                      weight};
    const double kept_loss = sl::KL{}.evaluate(f.model.backend(), d);
    f.model.backward_logits(std::span<const double>(ref), simnpo::GradStore::overwrite);
    const std::vector<double> kept(f.model.grads().begin(), f.model.grads().end());

    f.model.forward(batch);
    const auto states = f.reference.head_states(retain_set);
    const std::vector<double> kl = f.model.backward_kl(f.reference.model(), states.inputs, states.logsumexp,
                                                       weight / static_cast<double>(N), simnpo::GradStore::overwrite);
    BOOST_TEST_REQUIRE(kl.size() == per_position.size());
    double fused_loss = 0.0;
    for (std::size_t n = 0; n < kl.size(); ++n) {
        check_close(kl[n], per_position[n], 1e-12, 1e-15);
        fused_loss += kl[n] / static_cast<double>(N);
    }
    check_close(fused_loss, kept_loss, 1e-12, 1e-15);
    BOOST_TEST(kept_loss > 1e-3);
    for (std::size_t i = 0; i < kept.size(); ++i) check_close(f.model.grads()[i], kept[i], 1e-10, 1e-14);
    // The head's gradient is not all zero: the comparison above is not of zeros.
    BOOST_TEST(std::abs(f.model.grads()[f.model.layout().head()]) > 1e-6);

    // A forward that kept its logits has no fused head to run KL through.
    f.model.forward(batch, simnpo::model::Logits::keep);
    BOOST_CHECK_THROW(f.model.backward_kl(f.reference.model(), states.inputs, states.logsumexp, 1.0), simnpo::Error);
    f.model.forward(batch);
    BOOST_CHECK_THROW(f.model.backward_kl(f.reference.model(), states.inputs.subspan(1), states.logsumexp, 1.0),
                      simnpo::Error);
}

}  // namespace

BOOST_AUTO_TEST_CASE(kl_through_the_fused_head_equals_kl_on_kept_logits) {
    BOOST_TEST_CONTEXT("gpt2") { check_fused_kl_against_kept_logits<Model>(); }
    BOOST_TEST_CONTEXT("llama") { check_fused_kl_against_kept_logits<Llama>(); }
}

BOOST_AUTO_TEST_CASE(kl_vanishes_at_the_reference) {
    // Unlearning starts at θ = θ_ref: KL is 0 and NPO weighs every example 2σ(0)/B = 1/B.
    Model model(tiny_config());
    Fixture<>::init(model);
    Reference reference(model);
    const auto report = sl::NPO_KL{}.gradient(model, forget_set, retain_set, reference);
    BOOST_TEST(std::abs(report.retain_loss) < 1e-12);
    for (const auto& row : report.forget_rows) BOOST_TEST(row.weight == 1.0 / 3.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(compositions_that_cannot_run_are_errors) {
    Fixture<> f;
    BOOST_CHECK_THROW((sl::SimNPO_GD{sl::SimNPO{}, sl::NLL{}, {.forget_weight = -1.0}}), simnpo::Error);
    BOOST_CHECK_THROW((sl::SimNPO_GD{sl::SimNPO{}, sl::NLL{}, {.retain_weight = NAN}}), simnpo::Error);
    BOOST_CHECK_THROW(sl::SimNPO_GD{}.gradient(f.model, forget_set, {}), simnpo::Error);
    BOOST_CHECK_THROW(sl::Objective<sl::SimNPO>{}.gradient(f.model, forget_set, retain_set), simnpo::Error);
    BOOST_CHECK_THROW(sl::Objective<sl::SimNPO>{}.gradient(f.model, {}, {}), simnpo::Error);
    BOOST_CHECK_THROW(sl::DPO({}), simnpo::Error);
    BOOST_CHECK_THROW(sl::DPO(std::vector<std::vector<std::int32_t>>{{1}, {}}), simnpo::Error);
    BOOST_CHECK_THROW(sl::DPO({{1}}, {.beta = 0.0}), simnpo::Error);
}

namespace {

// A user's loss with a bug: one weight too few. The objective must catch it.
struct ShortLoss {
    static constexpr bool needs_reference = false;
    sl::LossResult evaluate(const sl::SequenceStats& stats) const {
        return {0.0, std::vector<double>(stats.size() - 1, 0.0)};
    }
};
static_assert(sl::ForgetLoss<ShortLoss> && sl::RetainLoss<ShortLoss>);
static_assert(sl::RetainLoss<sl::KL> && sl::RetainLoss<sl::NoRetain> && !sl::ForgetLoss<sl::KL>);
static_assert(sl::ExpandsRows<sl::DPO> && !sl::ExpandsRows<sl::NPO>);
static_assert(!sl::ForgetLoss<int>);

}  // namespace

BOOST_AUTO_TEST_CASE(a_wrong_user_loss_is_caught) {
    Fixture<> f;
    BOOST_CHECK_THROW(sl::Objective<ShortLoss>{}.gradient(f.model, forget_set, {}), simnpo::Error);
}

BOOST_AUTO_TEST_SUITE_END()  // test_objective
