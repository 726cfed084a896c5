#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/model/llama.hpp"

namespace simnpo::model {

// Feeds a CPU Llama-family model one token at a time, keeping every layer's
// keys and values (a KV cache, grown as the sequence grows). Each token runs
// one row through the same kernels as LlamaTrunk::forward, with the rotary
// tables of its position and attention_decode against the cache in place of
// the full attention, in the model's precision (BF16 products in BF16 mode);
// test_llama checks the logits against the full forward.
template <class Scalar>
class LlamaDecoder {
public:
    using Row = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

    explicit LlamaDecoder(const Llama<simnpo::cpu, Scalar>& model) : model_(model) {
        const LlamaConfig& c = model.config();
        keys_.resize(static_cast<std::size_t>(c.num_hidden_layers));
        values_.resize(static_cast<std::size_t>(c.num_hidden_layers));
        inv_freq_ = c.inverse_frequencies();
        const auto C = c.hidden_size, I = c.intermediate_size;
        x_.resize(C);
        x2_.resize(C);
        normed_.resize(C);
        rstd_.resize(1);
        qkv_.resize(c.qkv_width());
        attended_.resize(c.num_attention_heads * c.head_dim);
        gate_up_.resize(2 * I);
        mlp_.resize(I);
        logits_.resize(c.vocab_size);
    }

    std::int64_t position() const { return position_; }
    void reset() {
        position_ = 0;
        for (auto& k : keys_) k.clear();
        for (auto& v : values_) v.clear();
    }

    // Reads `token` at the next position; returns the logits [V] of the token after it.
    const Row& feed(std::int32_t token) {
        const LlamaConfig& c = model_.config();
        const LlamaLayout& layout = model_.layout();
        const std::int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
        const std::int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
        const std::int64_t QKV = c.qkv_width();
        if (token < 0 || token >= V) fail("Decoder: token id ", token, " is outside the vocabulary [0, ", V, ")");
        if (position_ >= c.max_position_embeddings)
            fail("Decoder: the sequence is already max_position_embeddings = ", c.max_position_embeddings,
                 " tokens long");
        const simnpo::cpu cpu;
        const Parameters<Scalar> p = model_.parameters();
        const auto bias = [&](std::size_t offset) { return offset == LlamaBlockOffsets::none ? nullptr : p + offset; };
        const double eps = c.rms_norm_eps;
        backend::cpu::rope_tables(cos_, sin_, std::span<const double>(inv_freq_), position_, 1);
        const std::int32_t tokens[1] = {token};
        embedding_forward(cpu, x_.data(), tokens, p.weight(layout.embedding()), 1, C);
        const std::int64_t n = position_ + 1;
        for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
            const LlamaBlockOffsets& w = layout.block(static_cast<std::size_t>(l));
            auto& keys = keys_[static_cast<std::size_t>(l)];
            auto& values = values_[static_cast<std::size_t>(l)];
            rmsnorm_forward(cpu, normed_.data(), rstd_.data(), x_.data(), p + w.input_norm, 1, C, eps);
            linear_forward(cpu, qkv_.data(), normed_.data(), p.weight(w.qkv_weight), bias(w.qkv_bias), 1, C, QKV);
            rope_forward(cpu, qkv_.data(), cos_.data(), sin_.data(), 1, 1, H + KV, D, QKV);
            const Scalar* k = qkv_.data() + H * D;
            keys.insert(keys.end(), k, k + KV * D);
            values.insert(values.end(), k + KV * D, k + 2 * KV * D);
            attention_decode(cpu, attended_.data(), qkv_.data(), keys.data(), values.data(), n, H, KV, D,
                             c.sliding_window[static_cast<std::size_t>(l)]);
            linear_forward(cpu, x2_.data(), attended_.data(), p.weight(w.o_weight), bias(w.o_bias), 1, H * D, C);
            x2_ += x_;
            rmsnorm_forward(cpu, normed_.data(), rstd_.data(), x2_.data(), p + w.post_norm, 1, C, eps);
            linear_forward(cpu, gate_up_.data(), normed_.data(), p.weight(w.gate_up_weight), bias(w.gate_up_bias), 1, C,
                           2 * I);
            swiglu_forward(cpu, mlp_.data(), gate_up_.data(), 1, I);
            linear_forward(cpu, x_.data(), mlp_.data(), p.weight(w.down_weight), bias(w.down_bias), 1, I, C);
            x_ += x2_;
        }
        rmsnorm_forward(cpu, normed_.data(), rstd_.data(), x_.data(), p + layout.norm(), 1, C, eps);
        linear_forward(cpu, logits_.data(), normed_.data(), p.weight(layout.head()), static_cast<const Scalar*>(nullptr),
                       1, C, V);
        ++position_;
        return logits_;
    }

private:
    const Llama<simnpo::cpu, Scalar>& model_;
    std::vector<double> inv_freq_;
    std::vector<Scalar> cos_, sin_;                   // the rotary tables of the current position
    std::vector<std::vector<Scalar>> keys_, values_;  // per layer [position, KV·D], rotated keys
    Row x_, x2_, normed_, rstd_, qkv_, attended_, gate_up_, mlp_, logits_;
    std::int64_t position_ = 0;
};

}  // namespace simnpo::model
