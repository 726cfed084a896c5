#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/model/gpt.hpp"

namespace simnpo::model {

// Feeds a CPU model one token at a time, keeping every layer's keys and values
// (a KV cache), so that each new token costs one row through the network
// instead of a forward over the whole prefix. The arithmetic is the forward's
// (DESIGN §4), row by row; test_generate checks the logits against Gpt::forward.
template <class Scalar>
class Decoder {
    using Row = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
    using Weights = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    using Vector = Eigen::Map<const Row>;
    using Cache = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

public:
    explicit Decoder(const Gpt<simnpo::cpu, Scalar>& model) : model_(model), config_(model.config()) {
        const auto P = config_.n_positions, C = config_.n_embd;
        keys_.assign(static_cast<std::size_t>(config_.n_layer), Cache(P, C));
        values_.assign(static_cast<std::size_t>(config_.n_layer), Cache(P, C));
        x_.resize(C);
        normed_.resize(C);
        qkv_.resize(3 * C);
        attended_.resize(C);
        scores_.resize(P);
        hidden_.resize(4 * C);
        logits_.resize(config_.vocab_size);
    }

    std::int64_t position() const { return position_; }
    void reset() { position_ = 0; }

    // Reads `token` at the next position; returns the logits [V] of the token after it.
    // Every row lives in the decoder: a token allocates nothing.
    const Row& feed(std::int32_t token) {
        const std::int64_t C = config_.n_embd, H = config_.n_head, D = C / H, V = config_.vocab_size;
        if (token < 0 || token >= V) fail("Decoder: token id ", token, " is outside the vocabulary [0, ", V, ")");
        if (position_ >= config_.n_positions)
            fail("Decoder: the sequence is already n_positions = ", config_.n_positions, " tokens long");
        const auto t = position_;
        const ParamLayout& layout = model_.layout();
        x_ = vector(layout.wte() + static_cast<std::size_t>(token * C), C) +
             vector(layout.wpe() + static_cast<std::size_t>(t * C), C);
        const Scalar scale = Scalar{1} / std::sqrt(static_cast<Scalar>(D));
        for (std::int64_t l = 0; l < config_.n_layer; ++l) {
            const BlockOffsets& w = model_.layout().block(static_cast<std::size_t>(l));
            auto& keys = keys_[static_cast<std::size_t>(l)];
            auto& values = values_[static_cast<std::size_t>(l)];
            layernorm(w.ln_1_weight, w.ln_1_bias);
            qkv_.noalias() = normed_ * weights(w.attn_weight, C, 3 * C);
            qkv_ += vector(w.attn_bias, 3 * C);
            keys.row(t) = qkv_.segment(C, C);
            values.row(t) = qkv_.segment(2 * C, C);
            auto p = scores_.head(t + 1);
            for (std::int64_t head = 0; head < H; ++head) {
                p.noalias() = qkv_.segment(head * D, D) * keys.block(0, head * D, t + 1, D).transpose();
                p *= scale;
                p = (p.array() - p.maxCoeff()).exp();
                p /= p.sum();
                attended_.segment(head * D, D).noalias() = p * values.block(0, head * D, t + 1, D);
            }
            x_.noalias() += attended_ * weights(w.attn_proj_weight, C, C);
            x_ += vector(w.attn_proj_bias, C);
            layernorm(w.ln_2_weight, w.ln_2_bias);
            hidden_.noalias() = normed_ * weights(w.fc_weight, C, 4 * C);
            hidden_ += vector(w.fc_bias, 4 * C);
            hidden_ = hidden_.unaryExpr([](Scalar u) { return gelu(u); });
            x_.noalias() += hidden_ * weights(w.fc_proj_weight, 4 * C, C);
            x_ += vector(w.fc_proj_bias, C);
        }
        layernorm(layout.ln_f_weight(), layout.ln_f_bias());
        logits_.noalias() = normed_ * weights(layout.wte(), V, C).transpose();
        ++position_;
        return logits_;
    }

private:
    static Scalar gelu(Scalar u) {
        const Scalar root_two_over_pi = static_cast<Scalar>(0.7978845608028654);
        return Scalar{0.5} * u * (Scalar{1} + std::tanh(root_two_over_pi * (u + Scalar{0.044715} * u * u * u)));
    }

    // Views of the parameter slab at a layout offset.
    Weights weights(std::size_t offset, std::int64_t rows, std::int64_t columns) const {
        return Weights(model_.params().data() + offset, rows, columns);
    }
    Vector vector(std::size_t offset, std::int64_t size) const { return Vector(model_.params().data() + offset, size); }

    // normed_ = LayerNorm(x_) with the weight and bias at these offsets.
    void layernorm(std::size_t weight, std::size_t bias) {
        const auto C = x_.size();
        const Scalar mean = x_.mean();
        normed_ = x_.array() - mean;
        const Scalar variance = normed_.squaredNorm() / static_cast<Scalar>(C);
        const Scalar rstd = Scalar{1} / std::sqrt(variance + static_cast<Scalar>(config_.layer_norm_epsilon));
        normed_ = (normed_ * rstd).cwiseProduct(vector(weight, C)) + vector(bias, C);
    }

    const Gpt<simnpo::cpu, Scalar>& model_;
    Config config_;
    std::vector<Cache> keys_, values_;  // per layer [n_positions, C]
    Row x_, normed_, qkv_, attended_, hidden_;  // the residual stream and one layer's rows
    Row scores_;                                 // one head's attention over the prefix [n_positions]
    Row logits_;
    std::int64_t position_ = 0;
};

struct GenerateOptions {
    std::int64_t max_new_tokens = 128;
    std::optional<std::int32_t> stop_token = std::nullopt;  // ends the generation; not part of the result
};

// The greedy continuation of `prompt`: the most probable token at each step
// (the lowest id on a tie), until the stop token, max_new_tokens, or the
// model's n_positions.
template <class Scalar>
std::vector<std::int32_t> generate_greedy(const Gpt<simnpo::cpu, Scalar>& model, std::span<const std::int32_t> prompt,
                                          const GenerateOptions& options = {}) {
    if (prompt.empty()) fail("generate_greedy: empty prompt");
    if (static_cast<std::int64_t>(prompt.size()) > model.config().n_positions)
        fail("generate_greedy: prompt of ", prompt.size(), " tokens is longer than n_positions = ",
             model.config().n_positions);
    Decoder<Scalar> decoder(model);
    const auto* logits = &decoder.feed(prompt.front());
    for (const auto token : prompt.subspan(1)) logits = &decoder.feed(token);
    std::vector<std::int32_t> generated;
    while (static_cast<std::int64_t>(generated.size()) < options.max_new_tokens) {
        // NaN compares false: maxCoeff would pick token 0 at every step.
        if (!logits->allFinite())
            fail("generate_greedy: the model's logits are not finite after ", decoder.position(), " tokens");
        Eigen::Index best = 0;
        logits->maxCoeff(&best);
        const auto token = static_cast<std::int32_t>(best);
        if (options.stop_token == token) break;
        generated.push_back(token);
        if (decoder.position() == model.config().n_positions) break;
        logits = &decoder.feed(token);
    }
    return generated;
}

// The greedy continuation of each prompt, the prompts spread over the threads.
template <class Scalar>
std::vector<std::vector<std::int32_t>> generate_greedy(const Gpt<simnpo::cpu, Scalar>& model,
                                                       std::span<const std::vector<std::int32_t>> prompts,
                                                       const GenerateOptions& options = {}) {
    std::vector<std::vector<std::int32_t>> results(prompts.size());
    std::vector<std::string> errors(prompts.size());
#pragma omp parallel for schedule(dynamic)
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        try {
            results[i] = generate_greedy(model, std::span<const std::int32_t>(prompts[i]), options);
        } catch (const Error& error) {
            errors[i] = error.what();  // an exception must not leave the parallel region
        } catch (const std::bad_alloc&) {
            errors[i] = "out of memory for the decoder's key-value cache";
        }
    }
    for (std::size_t i = 0; i < prompts.size(); ++i)
        if (!errors[i].empty()) fail("prompt ", i + 1, ": ", errors[i]);
    return results;
}

}  // namespace simnpo::model
