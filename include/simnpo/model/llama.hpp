#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/grad_store.hpp"
#include "simnpo/model/causal_lm.hpp"
#include "simnpo/model/init.hpp"
#include "simnpo/model/layout.hpp"
#include "simnpo/model/llama_config.hpp"

namespace simnpo::model {

// Offsets of one Llama block's tensors in a slab. q, k and v weights (and
// biases) are laid out one after another, so that together they are the
// [(H + 2·KV)·D, C] matrix of one product, exactly Phi-3's fused qkv_proj;
// gate and up likewise form Phi-3's gate_up_proj [2I, C].
struct LlamaBlockOffsets {
    static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
    std::size_t input_norm;
    std::size_t qkv_weight, qkv_bias = none;
    std::size_t o_weight, o_bias = none;
    std::size_t post_norm;
    std::size_t gate_up_weight, gate_up_bias = none;
    std::size_t down_weight, down_bias = none;
};

// The Llama family's tensors under Hugging Face's names.
class LlamaLayout : public TensorLayout {
public:
    explicit LlamaLayout(const LlamaConfig& c) {
        const std::int64_t C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
        const std::int64_t Q = c.num_attention_heads * D, KV = c.num_key_value_heads * D;
        embed_ = add("model.embed_tokens.weight", {c.vocab_size, C});
        for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            LlamaBlockOffsets b{};
            b.input_norm = add(p + "input_layernorm.weight", {C});
            if (c.fused) {
                b.qkv_weight = add(p + "self_attn.qkv_proj.weight", {c.qkv_width(), C});
            } else {
                b.qkv_weight = add(p + "self_attn.q_proj.weight", {Q, C});
                add(p + "self_attn.k_proj.weight", {KV, C});
                add(p + "self_attn.v_proj.weight", {KV, C});
            }
            if (c.qkv_bias) {
                b.qkv_bias = add(p + "self_attn.q_proj.bias", {Q});
                add(p + "self_attn.k_proj.bias", {KV});
                add(p + "self_attn.v_proj.bias", {KV});
            }
            b.o_weight = add(p + "self_attn.o_proj.weight", {C, Q});
            if (c.o_bias) b.o_bias = add(p + "self_attn.o_proj.bias", {C});
            b.post_norm = add(p + "post_attention_layernorm.weight", {C});
            if (c.fused) {
                b.gate_up_weight = add(p + "mlp.gate_up_proj.weight", {2 * I, C});
            } else {
                b.gate_up_weight = add(p + "mlp.gate_proj.weight", {I, C});
                add(p + "mlp.up_proj.weight", {I, C});
            }
            if (c.mlp_bias) {
                b.gate_up_bias = add(p + "mlp.gate_proj.bias", {I});
                add(p + "mlp.up_proj.bias", {I});
            }
            b.down_weight = add(p + "mlp.down_proj.weight", {C, I});
            if (c.mlp_bias) b.down_bias = add(p + "mlp.down_proj.bias", {C});
            blocks_.push_back(b);
        }
        norm_ = add("model.norm.weight", {C});
        head_ = c.tie_word_embeddings ? embed_ : add("lm_head.weight", {c.vocab_size, C});
        tied_ = c.tie_word_embeddings;
    }

    std::size_t embedding() const { return embed_; }
    std::size_t embedding_slot() const { return 0; }
    std::size_t head() const { return head_; }
    bool tied() const { return tied_; }
    // A tied model has no lm_head of its own; a checkpoint may still hold a copy.
    static std::string_view tied_head_name(const LlamaConfig& c) { return c.tie_word_embeddings ? "lm_head.weight" : ""; }
    const LlamaBlockOffsets& block(std::size_t l) const { return blocks_[l]; }
    std::size_t norm() const { return norm_; }

private:
    std::vector<LlamaBlockOffsets> blocks_;
    std::size_t embed_ = 0, norm_ = 0, head_ = 0;
    bool tied_ = false;
};

// The Llama family's blocks, with Hugging Face's semantics: token embedding;
// per layer RMSNorm, q/k/v projections, rotary embeddings (rotate-half),
// grouped-query causal attention (with a sliding window where the config sets
// one), o_proj, residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm.
// All projections are nn.Linear: weights [out, in].
template <class Backend, class Scalar>
struct LlamaTrunk {
    template <class T>
    using Buffer = typename Backend::template Buffer<T>;

    using Activation = LayerActivation<Backend, Scalar>;

    void reserve(const LlamaConfig& c, std::int64_t B, std::int64_t T, Keep keep) {
        const std::int64_t BT = B * T, C = c.hidden_size, I = c.intermediate_size;
        const std::int64_t H = c.num_attention_heads, QD = H * c.head_dim;
        const bool all = keep == Keep::all;
        const std::int64_t L = all ? c.num_hidden_layers : 1;
        // The residual stream keeps every layer's input when training; scoring
        // alternates two slices (a block's input and output).
        residual_.reserve(true, keep != Keep::nothing ? c.num_hidden_layers + 1 : 2, BT * C);
        norm1_.reserve(all, L, BT * C);
        rstd1_.reserve(all, L, BT);
        qkv_.reserve(all, L, BT * c.qkv_width());
        attention_cache_.reserve(all, L, causal_attention_cache_size(Backend{}, B, H, T));
        atty_.reserve(all, L, BT * QD);
        residual2_.reserve(all, L, BT * C);
        norm2_.reserve(all, L, BT * C);
        rstd2_.reserve(all, L, BT);
        gate_up_.reserve(all, L, BT * 2 * I);
        mlp_.reserve(all, L, BT * I);
        hidden_.resize(static_cast<std::size_t>(BT * C));
        rstd_final_.resize(static_cast<std::size_t>(BT));
        if (T != rope_T_) {
            std::vector<Scalar> cos, sin;
            backend::cpu::rope_tables(cos, sin, std::span<const double>(c.inverse_frequencies()), 0, T);
            cos_.resize(cos.size());
            sin_.resize(sin.size());
            copy_to_device(Backend{}, cos_.data(), std::span<const Scalar>(cos));
            copy_to_device(Backend{}, sin_.data(), std::span<const Scalar>(sin));
            rope_T_ = T;
        }
        keep_ = keep;
    }

    std::size_t activation_bytes() const {
        std::size_t bytes = 0;
        for (const Activation* a : {&residual_, &norm1_, &rstd1_, &qkv_, &attention_cache_, &atty_, &residual2_,
                                    &norm2_, &rstd2_, &gate_up_, &mlp_})
            bytes += a->bytes();
        return bytes;
    }

    const Scalar* forward(Backend backend, const LlamaConfig& c, const LlamaLayout& layout, Parameters<Scalar> p,
                          const std::int32_t* tokens, const std::int64_t* lengths, std::int64_t B, std::int64_t T) {
        const std::int64_t C = c.hidden_size, BT = B * T, L = c.num_hidden_layers;
        const double eps = c.rms_norm_eps;
        embedding_forward(backend, residual_.at(0), tokens, p.weight(layout.embedding()), BT, C);
        const bool stream = keep_ != Keep::nothing;  // every block's input kept
        for (std::int64_t l = 0; l < L; ++l)
            block_forward(backend, c, l, layout.block(static_cast<std::size_t>(l)), p, keep_ == Keep::all ? l : 0,
                          residual_.at(stream ? l : l % 2), residual_.at(stream ? l + 1 : (l + 1) % 2), lengths, B, T);
        final_input_ = residual_.at(stream ? L : L % 2);
        rmsnorm_forward(backend, hidden_.data(), rstd_final_.data(), final_input_, p + layout.norm(), BT, C, eps);
        return hidden_.data();
    }

    // From dhidden [B·T, C], the gradient of the final hidden states, stores
    // every parameter's gradient per `store`; a tied embedding's adds to the
    // head's, which the caller has stored already.
    void backward(Backend backend, const LlamaConfig& c, const LlamaLayout& layout, Parameters<Scalar> p, Scalar* g,
                  const Scalar* dhidden, const std::int32_t* tokens, const std::int64_t* lengths, std::int64_t B,
                  std::int64_t T, GradStore store) {
        if (keep_ == Keep::nothing) fail("backward: the last forward pass only scored (it kept no activations)");
        const std::int64_t C = c.hidden_size, I = c.intermediate_size, BT = B * T;
        const std::int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
        const std::int64_t QKV = c.qkv_width(), L = c.num_hidden_layers;
        const auto grad_bias = [&](std::size_t offset) { return offset == LlamaBlockOffsets::none ? nullptr : g + offset; };
        dresidual_.resize(static_cast<std::size_t>(BT * C));
        dnorm_.resize(static_cast<std::size_t>(BT * C));
        datty_.resize(static_cast<std::size_t>(BT * H * D));
        dqkv_.resize(static_cast<std::size_t>(BT * QKV));
        dgate_up_.resize(static_cast<std::size_t>(BT * 2 * I));
        dmlp_.resize(static_cast<std::size_t>(BT * I));
        fill_zero(backend, dresidual_.data(), dresidual_.size());
        Scalar* dx = dresidual_.data();
        rmsnorm_backward(backend, dx, g + layout.norm(), dhidden, final_input_, p + layout.norm(), rstd_final_.data(),
                         BT, C, store);
        for (std::int64_t l = L - 1; l >= 0; --l) {
            const LlamaBlockOffsets& w = layout.block(static_cast<std::size_t>(l));
            // Recomputation: the block's activations again from its kept input.
            if (keep_ == Keep::block_inputs)
                block_forward(backend, c, l, w, p, 0, residual_.at(l), nullptr, lengths, B, T);
            // dx holds dL/d(block output); each branch adds its part through
            // the RMSNorm backward, leaving dL/d(block input).
            linear_backward(backend, dmlp_.data(), g + w.down_weight, grad_bias(w.down_bias), dx, mlp_.at(l),
                            p.weight(w.down_weight), BT, I, C, store);
            swiglu_backward(backend, dgate_up_.data(), dmlp_.data(), gate_up_.at(l), BT, I);
            linear_backward(backend, dnorm_.data(), g + w.gate_up_weight, grad_bias(w.gate_up_bias), dgate_up_.data(),
                            norm2_.at(l), p.weight(w.gate_up_weight), BT, C, 2 * I, store);
            rmsnorm_backward(backend, dx, g + w.post_norm, dnorm_.data(), residual2_.at(l), p + w.post_norm,
                             rstd2_.at(l), BT, C, store);
            linear_backward(backend, datty_.data(), g + w.o_weight, grad_bias(w.o_bias), dx, atty_.at(l),
                            p.weight(w.o_weight), BT, H * D, C, store);
            fill_zero(backend, dqkv_.data(), dqkv_.size());
            causal_attention_backward(backend, dqkv_.data(), datty_.data(), qkv_.at(l), atty_.at(l),
                                      attention_cache_.at(l), lengths, B, T, H, KV, D,
                                      c.sliding_window[static_cast<std::size_t>(l)]);
            rope_backward(backend, dqkv_.data(), cos_.data(), sin_.data(), B, T, H + KV, D, QKV);
            linear_backward(backend, dnorm_.data(), g + w.qkv_weight, grad_bias(w.qkv_bias), dqkv_.data(),
                            norm1_.at(l), p.weight(w.qkv_weight), BT, C, QKV, store);
            rmsnorm_backward(backend, dx, g + w.input_norm, dnorm_.data(), residual_.at(l), p + w.input_norm,
                             rstd1_.at(l), BT, C, store);
        }
        embedding_backward(backend, g + layout.embedding(), dx, tokens, BT, C, c.vocab_size,
                           layout.tied() ? GradStore::accumulate : store);
    }

private:
    // Block l from its input x to its output x_next, its activations in slice k.
    // With x_next null (recomputation) it stops at the SwiGLU: the backward
    // needs no product past it, and the block's output is kept already.
    void block_forward(Backend backend, const LlamaConfig& c, std::int64_t l, const LlamaBlockOffsets& w,
                       Parameters<Scalar> p, std::int64_t k, const Scalar* x, Scalar* x_next,
                       const std::int64_t* lengths, std::int64_t B, std::int64_t T) {
        const std::int64_t C = c.hidden_size, I = c.intermediate_size, BT = B * T;
        const std::int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
        const std::int64_t QKV = c.qkv_width();
        const double eps = c.rms_norm_eps;
        const auto bias = [&](std::size_t offset) { return offset == LlamaBlockOffsets::none ? nullptr : p + offset; };
        Scalar* qkv = qkv_.at(k);
        Scalar* x2 = residual2_.at(k);
        rmsnorm_forward(backend, norm1_.at(k), rstd1_.at(k), x, p + w.input_norm, BT, C, eps);
        linear_forward(backend, qkv, norm1_.at(k), p.weight(w.qkv_weight), bias(w.qkv_bias), BT, C, QKV);
        rope_forward(backend, qkv, cos_.data(), sin_.data(), B, T, H + KV, D, QKV);
        causal_attention_forward(backend, atty_.at(k), attention_cache_.at(k), qkv, lengths, B, T, H, KV, D,
                                 c.sliding_window[static_cast<std::size_t>(l)]);
        linear_forward(backend, x2, atty_.at(k), p.weight(w.o_weight), bias(w.o_bias), BT, H * D, C);
        residual_add(backend, x2, x, BT * C);
        rmsnorm_forward(backend, norm2_.at(k), rstd2_.at(k), x2, p + w.post_norm, BT, C, eps);
        linear_forward(backend, gate_up_.at(k), norm2_.at(k), p.weight(w.gate_up_weight), bias(w.gate_up_bias), BT, C,
                       2 * I);
        swiglu_forward(backend, mlp_.at(k), gate_up_.at(k), BT, I);
        if (x_next == nullptr) return;
        linear_forward(backend, x_next, mlp_.at(k), p.weight(w.down_weight), bias(w.down_bias), BT, I, C);
        residual_add(backend, x_next, x2, BT * C);
    }

    Keep keep_ = Keep::nothing;
    std::int64_t rope_T_ = -1;
    const Scalar* final_input_ = nullptr;  // the residual stream entering model.norm
    Activation residual_, norm1_, rstd1_, qkv_, attention_cache_, atty_, residual2_, norm2_, rstd2_, gate_up_, mlp_;
    Buffer<Scalar> hidden_, rstd_final_, cos_, sin_;
    Buffer<Scalar> dresidual_, dnorm_, datty_, dqkv_, dgate_up_, dmlp_;  // reused layer after layer
};

template <class Scalar>
class LlamaDecoder;  // model/llama_decoder.hpp

struct LlamaFamily {
    using Config = LlamaConfig;
    using Layout = LlamaLayout;
    static constexpr std::string_view model_type = "llama";  // also mistral, qwen2 and phi3
    template <class Backend, class Scalar>
    using Trunk = LlamaTrunk<Backend, Scalar>;
    template <class Scalar>
    using Decoder = LlamaDecoder<Scalar>;

    static bool handles(std::string_view type) {
        return type == "llama" || type == "mistral" || type == "qwen2" || type == "phi3";
    }
    static Config read_config(const std::filesystem::path& path) { return read_llama_config(path); }
    static nlohmann::json config_json(const Config& config) { return llama_config_to_json(config); }
    // Hugging Face's initialisation: N(0, initializer_range) for projections
    // and embeddings, RMSNorm weights 1, biases 0.
    static InitRule init_rule(const Config& config, std::string_view name) {
        if (name.ends_with("norm.weight")) return {InitRule::Kind::constant, 1.0};
        if (name.ends_with(".bias")) return {InitRule::Kind::constant, 0.0};
        return {InitRule::Kind::normal, detail::config_number(config.extra, "initializer_range", 0.02, "config")};
    }
    static std::string_view canonical_name(std::string_view name) { return name; }
    // Older checkpoints store each layer's rotary inv_freq: a constant of the config, not a parameter.
    static bool skipped_tensor(std::string_view name) { return name.ends_with(".self_attn.rotary_emb.inv_freq"); }
};

template <class Backend, class Scalar>
using Llama = CausalLM<LlamaFamily, Backend, Scalar>;

}  // namespace simnpo::model
