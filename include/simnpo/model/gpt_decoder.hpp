#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/model/gpt.hpp"

namespace simnpo::model {

// Feeds a CPU GPT-2 one token at a time, keeping every layer's keys and values
// (a KV cache), so that each new token costs one row through the network
// instead of a forward over the whole prefix. The row runs through the same
// kernels as Gpt2Trunk::forward, with attention_decode against the cache in
// place of the full attention, in the model's precision (BF16 products in BF16
// mode); test_generate checks the logits against the full forward. Every row lives in the decoder: a token allocates nothing.
template <class Scalar>
class Gpt2Decoder {
public:
    using Row = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

    explicit Gpt2Decoder(const Gpt<simnpo::cpu, Scalar>& model) : model_(model) {
        const Config& c = model.config();
        const auto P = c.n_positions, C = c.n_embd;
        keys_.assign(static_cast<std::size_t>(c.n_layer), std::vector<Scalar>(static_cast<std::size_t>(P * C)));
        values_ = keys_;
        x_.resize(C);
        x2_.resize(C);
        normed_.resize(C);
        mean_.resize(1);
        rstd_.resize(1);
        qkv_.resize(3 * C);
        attended_.resize(C);
        hidden_.resize(4 * C);
        activated_.resize(4 * C);
        logits_.resize(c.vocab_size);
    }

    std::int64_t position() const { return position_; }
    void reset() { position_ = 0; }

    // Reads `token` at the next position; returns the logits [V] of the token after it.
    const Row& feed(std::int32_t token) {
        const Config& c = model_.config();
        const ParamLayout& layout = model_.layout();
        const std::int64_t C = c.n_embd, H = c.n_head, V = c.vocab_size;
        if (token < 0 || token >= V) fail("Decoder: token id ", token, " is outside the vocabulary [0, ", V, ")");
        if (position_ >= c.n_positions)
            fail("Decoder: the sequence is already n_positions = ", c.n_positions, " tokens long");
        const simnpo::cpu cpu;
        const Parameters<Scalar> p = model_.parameters();
        const double eps = c.layer_norm_epsilon;
        const std::int64_t t = position_;
        // The embedding of one token at position t: encoder_forward on one row, from wpe's row t.
        const std::int32_t tokens[1] = {token};
        encoder_forward(cpu, x_.data(), tokens, p.weight(layout.wte()), p.weight(layout.wpe() + t * C), 1, 1, C);
        for (std::int64_t l = 0; l < c.n_layer; ++l) {
            const BlockOffsets& w = layout.block(static_cast<std::size_t>(l));
            Scalar* keys = keys_[static_cast<std::size_t>(l)].data();
            Scalar* values = values_[static_cast<std::size_t>(l)].data();
            layernorm_forward(cpu, normed_.data(), mean_.data(), rstd_.data(), x_.data(), p + w.ln_1_weight,
                              p + w.ln_1_bias, 1, C, eps);
            matmul_forward(cpu, qkv_.data(), normed_.data(), p.weight(w.attn_weight), p + w.attn_bias, 1, C, 3 * C);
            std::copy_n(qkv_.data() + C, C, keys + t * C);
            std::copy_n(qkv_.data() + 2 * C, C, values + t * C);
            attention_decode(cpu, attended_.data(), qkv_.data(), keys, values, t + 1, H, H, C / H, std::int64_t{0});
            matmul_forward(cpu, x2_.data(), attended_.data(), p.weight(w.attn_proj_weight), p + w.attn_proj_bias, 1, C,
                           C);
            x2_ += x_;
            layernorm_forward(cpu, normed_.data(), mean_.data(), rstd_.data(), x2_.data(), p + w.ln_2_weight,
                              p + w.ln_2_bias, 1, C, eps);
            matmul_forward(cpu, hidden_.data(), normed_.data(), p.weight(w.fc_weight), p + w.fc_bias, 1, C, 4 * C);
            gelu_forward(cpu, activated_.data(), hidden_.data(), 4 * C);
            matmul_forward(cpu, x_.data(), activated_.data(), p.weight(w.fc_proj_weight), p + w.fc_proj_bias, 1, 4 * C,
                           C);
            x_ += x2_;
        }
        layernorm_forward(cpu, normed_.data(), mean_.data(), rstd_.data(), x_.data(), p + layout.ln_f_weight(),
                          p + layout.ln_f_bias(), 1, C, eps);
        lm_head_forward(cpu, logits_.data(), normed_.data(), p.weight(layout.head()), 1, C, V);
        ++position_;
        return logits_;
    }

private:
    const Gpt<simnpo::cpu, Scalar>& model_;
    std::vector<std::vector<Scalar>> keys_, values_;  // per layer [n_positions, C]
    Row x_, x2_, normed_, mean_, rstd_, qkv_, attended_, hidden_, activated_, logits_;
    std::int64_t position_ = 0;
};

}  // namespace simnpo::model
