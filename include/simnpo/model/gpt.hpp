#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

#include "simnpo/core/grad_store.hpp"
#include "simnpo/model/causal_lm.hpp"
#include "simnpo/model/config.hpp"
#include "simnpo/model/init.hpp"
#include "simnpo/model/layout.hpp"

namespace simnpo::model {

// The GPT-2 family's blocks (DESIGN §4): token and learned position
// embeddings, pre-LayerNorm blocks of causal multi-head attention and a GELU
// MLP with Conv1D-style [in, out] weights, a final LayerNorm; the LM head is
// tied to the token embedding.
template <class Backend, class Scalar>
struct Gpt2Trunk {
    template <class T>
    using Buffer = typename Backend::template Buffer<T>;

    using Activation = LayerActivation<Backend, Scalar>;

    // Sizes the buffers for [B, T], keeping what `keep` says for a backward.
    // Nothing is cleared: every kernel writes what it later reads.
    void reserve(const Config& config, std::int64_t B, std::int64_t T, Keep keep) {
        const std::int64_t BT = B * T, C = config.n_embd, H = config.n_head;
        const bool all = keep == Keep::all;
        const std::int64_t L = all ? config.n_layer : 1;
        // The residual stream keeps every layer's input when training; scoring
        // alternates two slices (a block's input and output).
        residual_.reserve(true, keep != Keep::nothing ? config.n_layer + 1 : 2, BT * C);
        ln1_.reserve(all, L, BT * C);
        ln1_mean_.reserve(all, L, BT);
        ln1_rstd_.reserve(all, L, BT);
        qkv_.reserve(all, L, BT * 3 * C);
        attention_cache_.reserve(all, L, causal_attention_cache_size(Backend{}, B, H, T));
        atty_.reserve(all, L, BT * C);
        residual2_.reserve(all, L, BT * C);
        ln2_.reserve(all, L, BT * C);
        ln2_mean_.reserve(all, L, BT);
        ln2_rstd_.reserve(all, L, BT);
        fch_.reserve(all, L, BT * 4 * C);
        fch_gelu_.reserve(all, L, BT * 4 * C);
        lnf_.resize(static_cast<std::size_t>(BT * C));
        lnf_mean_.resize(static_cast<std::size_t>(BT));
        lnf_rstd_.resize(static_cast<std::size_t>(BT));
        keep_ = keep;
    }

    std::size_t activation_bytes() const {
        std::size_t bytes = 0;
        for (const Activation* a : {&residual_, &ln1_, &ln1_mean_, &ln1_rstd_, &qkv_, &attention_cache_, &atty_,
                                    &residual2_, &ln2_, &ln2_mean_, &ln2_rstd_, &fch_, &fch_gelu_})
            bytes += a->bytes();
        return bytes;
    }

    // Returns the final hidden states [B·T, C] (after ln_f).
    const Scalar* forward(Backend backend, const Config& config, const ParamLayout& layout, Parameters<Scalar> p,
                          const std::int32_t* tokens, const std::int64_t* lengths, std::int64_t B, std::int64_t T) {
        const std::int64_t C = config.n_embd, L = config.n_layer, BT = B * T;
        const double eps = config.layer_norm_epsilon;
        encoder_forward(backend, residual_.at(0), tokens, p.weight(layout.wte()), p.weight(layout.wpe()), B, T, C);
        const bool stream = keep_ != Keep::nothing;  // every block's input kept
        for (std::int64_t l = 0; l < L; ++l)
            block_forward(backend, config, layout.block(static_cast<std::size_t>(l)), p, keep_ == Keep::all ? l : 0,
                          residual_.at(stream ? l : l % 2), residual_.at(stream ? l + 1 : (l + 1) % 2), lengths, B, T);
        final_input_ = residual_.at(stream ? L : L % 2);
        layernorm_forward(backend, lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), final_input_,
                          p + layout.ln_f_weight(), p + layout.ln_f_bias(), BT, C, eps);
        return lnf_.data();
    }

    // From dhidden [B·T, C], the gradient of the final hidden states (it is
    // consumed), stores every parameter's gradient per `store`; wte's adds to
    // the tied head's, which the caller has stored already.
    void backward(Backend backend, const Config& config, const ParamLayout& layout, Parameters<Scalar> p, Scalar* g,
                  const Scalar* dhidden, const std::int32_t* tokens, const std::int64_t* lengths, std::int64_t B,
                  std::int64_t T, GradStore store) {
        if (keep_ == Keep::nothing) fail("backward: the last forward pass only scored (it kept no activations)");
        const std::int64_t C = config.n_embd, H = config.n_head, L = config.n_layer, BT = B * T;
        dresidual_.resize(static_cast<std::size_t>(BT * C));
        dln_.resize(static_cast<std::size_t>(BT * C));
        datty_.resize(static_cast<std::size_t>(BT * C));
        dqkv_.resize(static_cast<std::size_t>(BT * 3 * C));
        dfch_.resize(static_cast<std::size_t>(BT * 4 * C));
        dfch_gelu_.resize(static_cast<std::size_t>(BT * 4 * C));
        fill_zero(backend, dresidual_.data(), dresidual_.size());
        Scalar* dx = dresidual_.data();
        layernorm_backward(backend, dx, g + layout.ln_f_weight(), g + layout.ln_f_bias(), dhidden, final_input_,
                           p + layout.ln_f_weight(), lnf_mean_.data(), lnf_rstd_.data(), BT, C, store);
        for (std::int64_t l = L - 1; l >= 0; --l) {
            const BlockOffsets& w = layout.block(static_cast<std::size_t>(l));
            // Recomputation: the block's activations again from its kept input.
            if (keep_ == Keep::block_inputs)
                block_forward(backend, config, w, p, 0, residual_.at(l), nullptr, lengths, B, T);
            // dx holds dL/d(block output); each branch adds its part, leaving dL/d(block input).
            // The matmul and GELU backwards write their input gradients (one
            // producer each); attention's and the layernorms' accumulate.
            matmul_backward(backend, dfch_gelu_.data(), g + w.fc_proj_weight, g + w.fc_proj_bias, dx, fch_gelu_.at(l),
                            p.weight(w.fc_proj_weight), BT, 4 * C, C, store);
            gelu_backward(backend, dfch_.data(), dfch_gelu_.data(), fch_.at(l), BT * 4 * C);
            matmul_backward(backend, dln_.data(), g + w.fc_weight, g + w.fc_bias, dfch_.data(), ln2_.at(l),
                            p.weight(w.fc_weight), BT, C, 4 * C, store);
            layernorm_backward(backend, dx, g + w.ln_2_weight, g + w.ln_2_bias, dln_.data(), residual2_.at(l),
                               p + w.ln_2_weight, ln2_mean_.at(l), ln2_rstd_.at(l), BT, C, store);
            fill_zero(backend, dqkv_.data(), dqkv_.size());
            matmul_backward(backend, datty_.data(), g + w.attn_proj_weight, g + w.attn_proj_bias, dx, atty_.at(l),
                            p.weight(w.attn_proj_weight), BT, C, C, store);
            causal_attention_backward(backend, dqkv_.data(), datty_.data(), qkv_.at(l), atty_.at(l),
                                      attention_cache_.at(l), lengths, B, T, H, H, C / H, std::int64_t{0});
            matmul_backward(backend, dln_.data(), g + w.attn_weight, g + w.attn_bias, dqkv_.data(), ln1_.at(l),
                            p.weight(w.attn_weight), BT, C, 3 * C, store);
            layernorm_backward(backend, dx, g + w.ln_1_weight, g + w.ln_1_bias, dln_.data(), residual_.at(l),
                               p + w.ln_1_weight, ln1_mean_.at(l), ln1_rstd_.at(l), BT, C, store);
        }
        encoder_backward(backend, g + layout.wte(), g + layout.wpe(), dx, tokens, B, T, C, config.n_positions, store);
    }

private:
    // One block from its input x to its output x_next, its activations in slice k.
    // With x_next null (recomputation) it stops at the MLP's activation: the
    // backward needs no product past it, and the block's output is kept already.
    void block_forward(Backend backend, const Config& config, const BlockOffsets& w, Parameters<Scalar> p,
                   std::int64_t k, const Scalar* x, Scalar* x_next, const std::int64_t* lengths, std::int64_t B,
                   std::int64_t T) {
        const std::int64_t C = config.n_embd, H = config.n_head, BT = B * T;
        const double eps = config.layer_norm_epsilon;
        Scalar* ln1 = ln1_.at(k);
        Scalar* qkv = qkv_.at(k);
        Scalar* atty = atty_.at(k);
        Scalar* x2 = residual2_.at(k);
        Scalar* ln2 = ln2_.at(k);
        Scalar* fch = fch_.at(k);
        Scalar* fch_gelu = fch_gelu_.at(k);
        layernorm_forward(backend, ln1, ln1_mean_.at(k), ln1_rstd_.at(k), x, p + w.ln_1_weight, p + w.ln_1_bias,
                          BT, C, eps);
        matmul_forward(backend, qkv, ln1, p.weight(w.attn_weight), p + w.attn_bias, BT, C, 3 * C);
        causal_attention_forward(backend, atty, attention_cache_.at(k), qkv, lengths, B, T, H, H, C / H,
                                 std::int64_t{0});
        matmul_forward(backend, x2, atty, p.weight(w.attn_proj_weight), p + w.attn_proj_bias, BT, C, C);
        residual_add(backend, x2, x, BT * C);
        layernorm_forward(backend, ln2, ln2_mean_.at(k), ln2_rstd_.at(k), x2, p + w.ln_2_weight, p + w.ln_2_bias,
                          BT, C, eps);
        matmul_forward(backend, fch, ln2, p.weight(w.fc_weight), p + w.fc_bias, BT, C, 4 * C);
        gelu_forward(backend, fch_gelu, fch, BT * 4 * C);
        if (x_next == nullptr) return;
        matmul_forward(backend, x_next, fch_gelu, p.weight(w.fc_proj_weight), p + w.fc_proj_bias, BT, 4 * C, C);
        residual_add(backend, x_next, x2, BT * C);
    }

    Keep keep_ = Keep::nothing;
    const Scalar* final_input_ = nullptr;  // the residual stream entering ln_f
    Activation residual_, ln1_, ln1_mean_, ln1_rstd_, qkv_, attention_cache_, atty_, residual2_, ln2_, ln2_mean_,
        ln2_rstd_, fch_, fch_gelu_;
    Buffer<Scalar> lnf_, lnf_mean_, lnf_rstd_;
    Buffer<Scalar> dresidual_, dln_, datty_, dqkv_, dfch_, dfch_gelu_;  // reused layer after layer
};

template <class Scalar>
class Gpt2Decoder;  // model/gpt_decoder.hpp

struct Gpt2Family {
    using Config = model::Config;
    using Layout = ParamLayout;
    static constexpr std::string_view model_type = "gpt2";

    static bool handles(std::string_view type) { return type == "gpt2"; }
    static Config read_config(const std::filesystem::path& path) { return model::read_config(path); }
    static nlohmann::json config_json(const Config& config) { return config_to_json(config); }
    // GPT-2's initialisation: weights N(0, 0.02), the two residual projections
    // of each block N(0, 0.02/√(2L)), LayerNorm weights 1, every bias 0.
    static InitRule init_rule(const Config& config, std::string_view name) {
        if (name.find("ln_") != std::string_view::npos)
            return {InitRule::Kind::constant, name.ends_with(".weight") ? 1.0 : 0.0};
        if (name.ends_with(".bias")) return {InitRule::Kind::constant, 0.0};
        if (name.ends_with("c_proj.weight"))
            return {InitRule::Kind::normal, 0.02 / std::sqrt(2.0 * static_cast<double>(config.n_layer))};
        return {InitRule::Kind::normal, 0.02};
    }
    // A tensor's name without Hugging Face's optional "transformer." prefix.
    static std::string_view canonical_name(std::string_view name) {
        if (name.starts_with("transformer.")) name.remove_prefix(std::string_view("transformer.").size());
        return name;
    }
    // Hugging Face's causal-mask buffers, h.N.attn.bias and h.N.attn.masked_bias:
    // constants of the architecture, not parameters. (h.N.attn.c_attn.bias is one.)
    static bool skipped_tensor(std::string_view name) {
        name = canonical_name(name);
        if (!name.starts_with("h.")) return false;
        name.remove_prefix(2);
        std::size_t digits = 0;
        while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9') ++digits;
        if (digits == 0) return false;
        name.remove_prefix(digits);
        return name == ".attn.bias" || name == ".attn.masked_bias";
    }

    template <class Backend, class Scalar>
    using Trunk = Gpt2Trunk<Backend, Scalar>;
    template <class Scalar>
    using Decoder = Gpt2Decoder<Scalar>;
};

// The compact GPT-2 on backend `Backend` with scalar type `Scalar`.
template <class Backend, class Scalar>
using Gpt = CausalLM<Gpt2Family, Backend, Scalar>;

}  // namespace simnpo::model
