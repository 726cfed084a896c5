#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/config.hpp"
#include "simnpo/model/layout.hpp"

namespace simnpo::model {

// The compact GPT-2 (DESIGN §4) on backend `Backend` with scalar type `Scalar`.
//
// forward(batch) computes the log-probability of every scored target token and
// keeps what the backward needs; backward(weights) takes dL/dlogprob for each
// scored token and accumulates every parameter's gradient into grads().
// Parameters and gradients each live in one slab laid out by layout().
template <class Backend, class Scalar>
class Gpt {
public:
    using backend_type = Backend;
    using scalar_type = Scalar;
    template <class T>
    using Buffer = typename Backend::template Buffer<T>;

    explicit Gpt(Config config, Backend backend = {})
        : config_(std::move(config)), layout_(config_), backend_(backend) {
        config_.validate("model config");
        params_.assign(layout_.total(), Scalar{0});
        grads_.assign(layout_.total(), Scalar{0});
    }

    const Config& config() const { return config_; }
    const ParamLayout& layout() const { return layout_; }
    Backend& backend() { return backend_; }
    const Backend& backend() const { return backend_; }
    Buffer<Scalar>& params() { return params_; }
    const Buffer<Scalar>& params() const { return params_; }
    Buffer<Scalar>& grads() { return grads_; }
    const Buffer<Scalar>& grads() const { return grads_; }

    // Named views into the slabs, by Hugging Face tensor name ("h.0.ln_1.weight").
    // On a GPU backend they point to device memory.
    std::span<Scalar> param(std::string_view name) { return view(params_, name); }
    std::span<const Scalar> param(std::string_view name) const { return view(params_, name); }
    std::span<Scalar> grad(std::string_view name) { return view(grads_, name); }
    std::span<const Scalar> grad(std::string_view name) const { return view(grads_, name); }

    void zero_grad() { fill_zero(backend_, grads_.data(), grads_.size()); }

    void forward(const data::Batch& batch) {
        const std::int64_t B = batch.rows(), T = batch.columns();
        const std::int64_t C = config_.n_embd, V = config_.vocab_size, H = config_.n_head;
        const std::int64_t L = config_.n_layer;
        check_batch(batch);
        reserve(B, T);
        copy_to_device(backend_, tokens_.data(),
                       std::span<const std::int32_t>(batch.tokens.data(), batch.tokens.size()));
        copy_to_device(backend_, lengths_.data(), std::span<const std::int64_t>(batch.lengths));
        std::vector<std::int64_t> rows;
        std::vector<std::int32_t> targets;
        for (std::int64_t bt = 0; bt < B * T; ++bt)
            if (batch.targets.data()[bt] >= 0) {
                rows.push_back(bt);
                targets.push_back(batch.targets.data()[bt]);
            }
        scored_ = static_cast<std::int64_t>(rows.size());
        reserve_scored(scored_);
        copy_to_device(backend_, rows_.data(), std::span<const std::int64_t>(rows));
        copy_to_device(backend_, targets_.data(), std::span<const std::int32_t>(targets));
        host_rows_ = std::move(rows);

        const Scalar* p = params_.data();
        const std::int64_t BT = B * T;
        encoder_forward(backend_, act(residual_, 0), tokens_.data(), p + layout_.wte(), p + layout_.wpe(),
                        B, T, C);
        for (std::int64_t l = 0; l < L; ++l) {
            const BlockOffsets& w = layout_.block(static_cast<std::size_t>(l));
            Scalar* x = act(residual_, l);
            Scalar* ln1 = act(ln1_, l);
            Scalar* qkv = act(qkv_, l);
            Scalar* atty = act(atty_, l);
            Scalar* x2 = act(residual2_, l);
            Scalar* ln2 = act(ln2_, l);
            Scalar* fch = act(fch_, l);
            Scalar* fch_gelu = act(fch_gelu_, l);
            Scalar* x_next = act(residual_, l + 1);
            layernorm_forward(backend_, ln1, act(ln1_mean_, l), act(ln1_rstd_, l), x, p + w.ln_1_weight,
                              p + w.ln_1_bias, BT, C, config_.layer_norm_epsilon);
            matmul_forward(backend_, qkv, ln1, p + w.attn_weight, p + w.attn_bias, BT, C, 3 * C);
            attention_forward(backend_, atty, act(att_, l), qkv, lengths_.data(), B, T, C, H);
            matmul_forward(backend_, x2, atty, p + w.attn_proj_weight, p + w.attn_proj_bias, BT, C, C);
            residual_add(backend_, x2, x, BT * C);
            layernorm_forward(backend_, ln2, act(ln2_mean_, l), act(ln2_rstd_, l), x2, p + w.ln_2_weight,
                              p + w.ln_2_bias, BT, C, config_.layer_norm_epsilon);
            matmul_forward(backend_, fch, ln2, p + w.fc_weight, p + w.fc_bias, BT, C, 4 * C);
            gelu_forward(backend_, fch_gelu, fch, BT * 4 * C);
            matmul_forward(backend_, x_next, fch_gelu, p + w.fc_proj_weight, p + w.fc_proj_bias, BT, 4 * C, C);
            residual_add(backend_, x_next, x2, BT * C);
        }
        layernorm_forward(backend_, lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), act(residual_, L),
                          p + layout_.ln_f_weight(), p + layout_.ln_f_bias(), BT, C,
                          config_.layer_norm_epsilon);
        // The LM head runs on scored positions only: the loss reads nothing else.
        gather_rows(backend_, head_in_.data(), lnf_.data(), rows_.data(), scored_, C);
        lm_head_forward(backend_, logits_.data(), head_in_.data(), p + layout_.wte(), scored_, C, V);
        logsoftmax_gather(backend_, logprobs_.data(), logsumexp_.data(), logits_.data(), targets_.data(),
                          scored_, V);
        B_ = B;
        T_ = T;
    }

    // Scored positions of the last forward, as flat indices b·T + t in row order.
    std::span<const std::int64_t> scored_positions() const { return host_rows_; }
    std::int64_t scored_count() const { return scored_; }
    // T of the last forward's [B, T] batch: scored position p is row p / T.
    std::int64_t batch_columns() const { return T_; }

    // log π(target | context) of each scored position of the last forward, in
    // the order of scored_positions().
    std::vector<Scalar> logprobs() const {
        std::vector<Scalar> host(static_cast<std::size_t>(scored_));
        copy_to_host(backend_, std::span<Scalar>(host), logprobs_.data());
        return host;
    }

    // The same as a [B, T] array with 0 at positions that are not scored.
    xt::xtensor<Scalar, 2> token_logprobs() const {
        xt::xtensor<Scalar, 2> result = xt::zeros<Scalar>({static_cast<std::size_t>(B_),
                                                           static_cast<std::size_t>(T_)});
        const auto values = logprobs();
        for (std::size_t n = 0; n < values.size(); ++n) result.data()[host_rows_[n]] = values[n];
        return result;
    }

    // ℓ(b) = Σ over row b's scored tokens of log π, accumulated in double.
    std::vector<double> sequence_logprobs() const {
        std::vector<double> sums(static_cast<std::size_t>(B_), 0.0);
        const auto values = logprobs();
        for (std::size_t n = 0; n < values.size(); ++n)
            sums[static_cast<std::size_t>(host_rows_[n] / T_)] += static_cast<double>(values[n]);
        return sums;
    }

    // Logits [scored_count(), V] of the last forward (the scored positions only).
    const Buffer<Scalar>& logits() const { return logits_; }

    // Stores into grads() the gradient of Σ_n token_weights[n] · logprob[n] over
    // the scored positions of the last forward: added to what grads() holds, or,
    // with GradStore::overwrite, replacing it (no zero_grad() needed).
    void backward(std::span<const Scalar> token_weights, GradStore store = GradStore::accumulate) {
        if (B_ == 0) fail("Gpt::backward: no forward pass to differentiate");
        if (static_cast<std::int64_t>(token_weights.size()) != scored_)
            fail("Gpt::backward: ", token_weights.size(), " token weights for ", scored_,
                 " scored positions");
        copy_to_device(backend_, weights_.data(), token_weights);
        logprob_backward(backend_, dlogits_.data(), logits_.data(), logsumexp_.data(), targets_.data(),
                         weights_.data(), scored_, config_.vocab_size);
        backward_from_logit_grad(dlogits_.data(), store);
    }

    // The same for a loss over whole next-token distributions (KL): dlogits
    // [scored_count(), V], in backend memory, is the loss's gradient with
    // respect to logits() of the last forward.
    void backward_logits(std::span<const Scalar> dlogits, GradStore store = GradStore::accumulate) {
        if (B_ == 0) fail("Gpt::backward_logits: no forward pass to differentiate");
        if (static_cast<std::int64_t>(dlogits.size()) != scored_ * config_.vocab_size)
            fail("Gpt::backward_logits: ", dlogits.size(), " logit gradients for ", scored_,
                 " scored positions of ", config_.vocab_size, " tokens");
        backward_from_logit_grad(dlogits.data(), store);
    }

private:
    // Backpropagates dlogits [scored_, V] through the network.
    void backward_from_logit_grad(const Scalar* dlogits, GradStore store) {
        const std::int64_t B = B_, T = T_, BT = B_ * T_;
        const std::int64_t C = config_.n_embd, V = config_.vocab_size, H = config_.n_head;
        const std::int64_t L = config_.n_layer;
        const Scalar* p = params_.data();
        Scalar* g = grads_.data();
        fill_zero(backend_, dresidual_.data(), dresidual_.size());
        fill_zero(backend_, dlnf_.data(), dlnf_.size());

        lm_head_backward(backend_, dhead_in_.data(), g + layout_.wte(), dlogits, head_in_.data(),
                         p + layout_.wte(), scored_, C, V, store);
        scatter_add_rows(backend_, dlnf_.data(), dhead_in_.data(), rows_.data(), scored_, C);
        Scalar* dx = dresidual_.data();
        layernorm_backward(backend_, dx, g + layout_.ln_f_weight(), g + layout_.ln_f_bias(), dlnf_.data(),
                           act(residual_, L), p + layout_.ln_f_weight(), lnf_mean_.data(), lnf_rstd_.data(),
                           BT, C, store);
        for (std::int64_t l = L - 1; l >= 0; --l) {
            const BlockOffsets& w = layout_.block(static_cast<std::size_t>(l));
            // dx holds dL/d(block output); each branch adds its part, leaving dL/d(block input).
            // The matmul and GELU backwards write their input gradients (one
            // producer each); attention's and the layernorms' accumulate.
            matmul_backward(backend_, dfch_gelu_.data(), g + w.fc_proj_weight, g + w.fc_proj_bias, dx,
                            act(fch_gelu_, l), p + w.fc_proj_weight, BT, 4 * C, C, store);
            gelu_backward(backend_, dfch_.data(), dfch_gelu_.data(), act(fch_, l), BT * 4 * C);
            matmul_backward(backend_, dln_.data(), g + w.fc_weight, g + w.fc_bias, dfch_.data(),
                            act(ln2_, l), p + w.fc_weight, BT, C, 4 * C, store);
            layernorm_backward(backend_, dx, g + w.ln_2_weight, g + w.ln_2_bias, dln_.data(),
                               act(residual2_, l), p + w.ln_2_weight, act(ln2_mean_, l), act(ln2_rstd_, l),
                               BT, C, store);
            fill_zero(backend_, dqkv_.data(), dqkv_.size());
            matmul_backward(backend_, datty_.data(), g + w.attn_proj_weight, g + w.attn_proj_bias, dx,
                            act(atty_, l), p + w.attn_proj_weight, BT, C, C, store);
            attention_backward(backend_, dqkv_.data(), datty_.data(), act(qkv_, l), act(att_, l),
                               lengths_.data(), B, T, C, H);
            matmul_backward(backend_, dln_.data(), g + w.attn_weight, g + w.attn_bias, dqkv_.data(),
                            act(ln1_, l), p + w.attn_weight, BT, C, 3 * C, store);
            layernorm_backward(backend_, dx, g + w.ln_1_weight, g + w.ln_1_bias, dln_.data(),
                               act(residual_, l), p + w.ln_1_weight, act(ln1_mean_, l), act(ln1_rstd_, l),
                               BT, C, store);
        }
        encoder_backward(backend_, g + layout_.wte(), g + layout_.wpe(), dx, tokens_.data(), B, T, C,
                         config_.n_positions, store);
    }

    template <class Slab>
    auto view(Slab& slab, std::string_view name) const {
        const TensorSlot* slot = layout_.find(name);
        if (slot == nullptr) fail("Gpt: no parameter named '", name, "'");
        return std::span(slab.data() + slot->offset, slot->size);
    }

    void check_batch(const data::Batch& batch) const {
        const std::int64_t B = batch.rows(), T = batch.columns();
        if (B == 0 || T == 0) fail("Gpt::forward: empty batch");
        if (T > config_.n_positions)
            fail("Gpt::forward: batch of ", T, " positions is longer than n_positions = ", config_.n_positions);
        if (batch.targets.shape() != batch.tokens.shape())
            fail("Gpt::forward: tokens and targets differ in shape");
        if (static_cast<std::int64_t>(batch.lengths.size()) != B)
            fail("Gpt::forward: ", batch.lengths.size(), " lengths for ", B, " rows");
        for (std::int64_t b = 0; b < B; ++b) {
            const std::int64_t length = batch.lengths[static_cast<std::size_t>(b)];
            if (length < 1 || length > T) fail("Gpt::forward: row ", b, " has length ", length);
            for (std::int64_t t = 0; t < T; ++t) {
                const std::int32_t token = batch.tokens(b, t), target = batch.targets(b, t);
                if (token < 0 || token >= config_.vocab_size)
                    fail("Gpt::forward: token id ", token, " at (", b, ", ", t, ") is outside the vocabulary");
                if (target >= config_.vocab_size || target < -1)
                    fail("Gpt::forward: target id ", target, " at (", b, ", ", t, ") is outside the vocabulary");
                if (target >= 0 && t >= length)
                    fail("Gpt::forward: position (", b, ", ", t, ") is padding but scored");
            }
        }
    }

    // A per-layer activation: layer l's slice of a [L(+1), B·T·width] buffer.
    struct Activation {
        Buffer<Scalar> data;
        std::int64_t stride = 0;
    };
    Scalar* act(Activation& a, std::int64_t l) { return a.data.data() + l * a.stride; }

    // Sizes the buffers for a batch shape. Nothing is cleared: every kernel
    // writes what it later reads, and the backward zeroes its own accumulators.
    void reserve(std::int64_t B, std::int64_t T) {
        if (B == B_ && T == T_) return;
        const std::int64_t BT = B * T, C = config_.n_embd, L = config_.n_layer, H = config_.n_head;
        const auto sized = [&](Activation& a, std::int64_t layers, std::int64_t per_layer) {
            a.stride = per_layer;
            a.data.resize(static_cast<std::size_t>(layers * per_layer));
        };
        sized(residual_, L + 1, BT * C);
        sized(ln1_, L, BT * C);
        sized(ln1_mean_, L, BT);
        sized(ln1_rstd_, L, BT);
        sized(qkv_, L, BT * 3 * C);
        sized(att_, L, B * H * T * T);
        sized(atty_, L, BT * C);
        sized(residual2_, L, BT * C);
        sized(ln2_, L, BT * C);
        sized(ln2_mean_, L, BT);
        sized(ln2_rstd_, L, BT);
        sized(fch_, L, BT * 4 * C);
        sized(fch_gelu_, L, BT * 4 * C);
        lnf_.resize(static_cast<std::size_t>(BT * C));
        lnf_mean_.resize(static_cast<std::size_t>(BT));
        lnf_rstd_.resize(static_cast<std::size_t>(BT));
        tokens_.resize(static_cast<std::size_t>(BT));
        lengths_.resize(static_cast<std::size_t>(B));
        // Activation gradients, reused layer after layer.
        dresidual_.resize(static_cast<std::size_t>(BT * C));
        dlnf_.resize(static_cast<std::size_t>(BT * C));
        dln_.resize(static_cast<std::size_t>(BT * C));
        datty_.resize(static_cast<std::size_t>(BT * C));
        dqkv_.resize(static_cast<std::size_t>(BT * 3 * C));
        dfch_.resize(static_cast<std::size_t>(BT * 4 * C));
        dfch_gelu_.resize(static_cast<std::size_t>(BT * 4 * C));
        B_ = T_ = 0;  // set again when the forward completes
    }

    void reserve_scored(std::int64_t N) {
        const std::int64_t C = config_.n_embd, V = config_.vocab_size;
        if (static_cast<std::int64_t>(rows_.size()) == N) return;
        rows_.resize(static_cast<std::size_t>(N));
        targets_.resize(static_cast<std::size_t>(N));
        weights_.resize(static_cast<std::size_t>(N));
        head_in_.resize(static_cast<std::size_t>(N * C));
        dhead_in_.resize(static_cast<std::size_t>(N * C));
        logits_.resize(static_cast<std::size_t>(N * V));
        dlogits_.resize(static_cast<std::size_t>(N * V));
        logprobs_.resize(static_cast<std::size_t>(N));
        logsumexp_.resize(static_cast<std::size_t>(N));
    }

    Config config_;
    ParamLayout layout_;
    Backend backend_;
    Buffer<Scalar> params_, grads_;

    std::int64_t B_ = 0, T_ = 0, scored_ = 0;
    Activation residual_, ln1_, ln1_mean_, ln1_rstd_, qkv_, att_, atty_, residual2_, ln2_, ln2_mean_,
        ln2_rstd_, fch_, fch_gelu_;
    Buffer<Scalar> lnf_, lnf_mean_, lnf_rstd_;
    Buffer<std::int32_t> tokens_, targets_;
    Buffer<std::int64_t> lengths_, rows_;
    std::vector<std::int64_t> host_rows_;
    Buffer<Scalar> head_in_, logits_, logprobs_, logsumexp_, weights_;
    Buffer<Scalar> dresidual_, dlnf_, dln_, datty_, dqkv_, dfch_, dfch_gelu_, dhead_in_, dlogits_;
};

}  // namespace simnpo::model
