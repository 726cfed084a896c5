// The compact model that the studies (markov_study, tofu_study) train from
// scratch, in the family that --family names.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>

#include <simnpo.hpp>

namespace study {

// The CPU model of `Family` that the studies train.
template <class Family>
using Model = simnpo::model::CausalLM<Family, simnpo::cpu, float>;

// `gpt2` itself, or the Llama of its size, so that the families compare at
// one scale: the same width, layers, heads and positions; grouped-query
// attention with half as many key/value heads where the heads pair up; a
// SwiGLU width I of 8C/3 rounded to a multiple of 8, whose three C×I matrices
// hold about as many parameters as GPT-2's two C×4C; the head tied, as GPT-2's.
template <class Family>
typename Family::Config in_family(const simnpo::model::Config& gpt2) {
    if constexpr (std::same_as<Family, simnpo::model::Gpt2Family>) {
        return gpt2;
    } else {
        static_assert(std::same_as<Family, simnpo::model::LlamaFamily>);
        simnpo::model::LlamaConfig c;
        c.model_type = "llama";
        c.vocab_size = gpt2.vocab_size;
        c.hidden_size = gpt2.n_embd;
        c.intermediate_size = 8 * std::llround(static_cast<double>(gpt2.n_embd) / 3.0);
        c.num_hidden_layers = gpt2.n_layer;
        c.num_attention_heads = gpt2.n_head;
        c.num_key_value_heads = gpt2.n_head % 2 == 0 ? gpt2.n_head / 2 : gpt2.n_head;
        c.head_dim = gpt2.head_dim();
        c.max_position_embeddings = gpt2.n_positions;
        c.rms_norm_eps = 1e-5;
        c.rope_theta = 10000.0;
        c.tie_word_embeddings = true;
        c.sliding_window.assign(static_cast<std::size_t>(c.num_hidden_layers), 0);
        c.validate("the Llama of the study's size");
        return c;
    }
}

}  // namespace study
