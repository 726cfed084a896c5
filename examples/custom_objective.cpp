// A user's own policy plugged into the library's objectives (DESIGN §3).
//
// SimNPO normalises an answer's log-likelihood by its length |y|, NPO not at
// all; here a user's own normalisation sits between them, N(ℓ) = ℓ/√|y|, and
// makes a forget loss with the library's Preference, paired with the NLL retain
// loss. A tiny GPT first learns two synthetic tasks, then unlearns one of them.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include <simnpo.hpp>

namespace sl = simnpo::loss;
using simnpo::data::Example;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

namespace {

// A normalisation policy is N(ℓ) and dN/dℓ for an answer of |y| tokens; that
// is all Preference asks of it.
struct SqrtLengthNormalized {
    static double normalize(double logprob, std::int64_t length) {
        return logprob / std::sqrt(static_cast<double>(length));
    }
    static double derivative(std::int64_t length) { return 1.0 / std::sqrt(static_cast<double>(length)); }
};

using SqrtSimNPO = sl::Preference<sl::ReferenceFree, SqrtLengthNormalized>;
static_assert(sl::ForgetLoss<SqrtSimNPO>);
static_assert(!SqrtSimNPO::needs_reference);  // so gradient() takes no frozen reference model
using Recipe = sl::Objective<SqrtSimNPO, sl::NLL>;

// Prompt (topic, start), answer: the numbers after `start`, counting up by one
// for topic 1 (the forget set) and down by one for topic 2 (the retain set).
// Numbers are tokens 3..15; answers are 2 to 4 tokens long, so the
// normalisation matters.
std::vector<Example> counting(std::int32_t topic, std::int32_t step) {
    std::vector<Example> examples;
    for (std::int32_t start = 3; start <= 15; ++start) {
        Example example{{topic, start}, {}};
        const std::int32_t length = 2 + start % 3;
        for (std::int32_t k = 1; k <= length; ++k) example.answer_ids.push_back(start + k * step);
        if (example.answer_ids.back() >= 3 && example.answer_ids.back() <= 15) examples.push_back(example);
    }
    return examples;
}

// Mean per-token log-likelihood ℓ/|y| over a set: what unlearning should
// lower on the forget set and keep on the retain set.
double mean_token_logprob(Model& model, std::span<const Example> examples) {
    model.forward(simnpo::data::make_batch(examples));
    const std::vector<double> logprobs = model.sequence_logprobs();
    double sum = 0.0;
    for (std::size_t i = 0; i < examples.size(); ++i)
        sum += logprobs[i] / static_cast<double>(examples[i].answer_ids.size());
    return sum / static_cast<double>(examples.size());
}

// There is no optimizer module yet: plain SGD over the parameter slab.
void sgd_step(Model& model, float lr) {
    auto& params = model.params();
    const auto& grads = model.grads();
    for (std::size_t i = 0; i < params.size(); ++i) params[i] -= lr * grads[i];
}

}  // namespace

int main() {
    Model model({.vocab_size = 16, .n_positions = 8, .n_embd = 32, .n_layer = 2, .n_head = 4});
    simnpo::model::init_weights(model, 7);
    const std::vector<Example> forget = counting(1, +1), retain = counting(2, -1);
    std::vector<Example> both(forget);
    both.insert(both.end(), retain.begin(), retain.end());

    // Fine-tune on both tasks until the model knows them: token-mean NLL, whose
    // gradient is weight −1/N on each of the N answer tokens.
    for (int step = 0; step < 300; ++step) {
        model.forward(simnpo::data::make_batch(both));
        const std::vector<float> weights(static_cast<std::size_t>(model.scored_count()),
                                         -1.0f / static_cast<float>(model.scored_count()));
        model.backward(std::span(weights), simnpo::GradStore::overwrite);
        sgd_step(model, 0.5f);
    }
    const double forget_before = mean_token_logprob(model, forget);
    const double retain_before = mean_token_logprob(model, retain);
    std::printf("fine-tuned: mean l/|y|: forget %.3f, retain %.3f\n", forget_before, retain_before);

    // Unlearn: forget the counting up, keep the counting down. The losses are
    // those of the step's gradient, the likelihoods those of the same parameters.
    const Recipe recipe{SqrtSimNPO{{.beta = 2.5, .gamma = 0.0}}, sl::NLL{},
                        {.forget_weight = 1.0, .retain_weight = 1.0}};
    std::printf("%4s %12s %12s %14s %14s\n", "step", "forget loss", "retain loss", "forget l/|y|", "retain l/|y|");
    // Small steps: at twice the rate the forget set's collapse dragged the retain set
    // down for several steps, and how far it recovered depended on the rounding.
    for (int step = 1; step <= 40; ++step) {
        const double forget_now = mean_token_logprob(model, forget);
        const double retain_now = mean_token_logprob(model, retain);
        const sl::StepReport report = recipe.gradient(model, forget, retain);
        sgd_step(model, 0.1f);
        std::printf("%4d %12.4f %12.4f %14.3f %14.3f\n", step, report.forget_loss, report.retain_loss, forget_now,
                    retain_now);
    }

    const double forget_after = mean_token_logprob(model, forget);
    const double retain_after = mean_token_logprob(model, retain);
    // exp(ℓ/|y|) is the per-token probability the model gives an answer (geometric mean).
    std::printf("per-token probability of the answers: forget %.3f -> %.3f, retain %.3f -> %.3f\n",
                std::exp(forget_before), std::exp(forget_after), std::exp(retain_before), std::exp(retain_after));
    if (!(forget_after < forget_before)) {
        std::fprintf(stderr, "FAILED: unlearning did not lower the forget set's likelihood\n");
        return 1;
    }
    if (!(retain_after > retain_before - 0.1)) {
        std::fprintf(stderr, "FAILED: unlearning lost the retain set\n");
        return 1;
    }
    return 0;
}
