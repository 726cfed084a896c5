#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <numbers>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/config.hpp"

namespace simnpo::model {

// Rotary embeddings' frequency scaling (config.json's rope_scaling).
struct RopeScaling {
    enum class Kind { none, linear, llama3 };
    Kind kind = Kind::none;
    double factor = 1.0;
    double low_freq_factor = 1.0, high_freq_factor = 4.0;     // llama3
    double original_max_position_embeddings = 8192;           // llama3
};

// The Llama family's shape, with Hugging Face's key names: LlamaConfig,
// MistralConfig, Qwen2Config and Phi3Config, which differ only in defaults,
// in which projections carry biases, in Phi-3's fused projections and in the
// sliding window.
struct LlamaConfig {
    std::string model_type = "llama";  // llama, mistral, qwen2 or phi3
    std::int64_t vocab_size = 0;
    std::int64_t hidden_size = 0;
    std::int64_t intermediate_size = 0;
    std::int64_t num_hidden_layers = 0;
    std::int64_t num_attention_heads = 0;
    std::int64_t num_key_value_heads = 0;
    std::int64_t head_dim = 0;
    std::int64_t max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    RopeScaling rope_scaling;
    bool tie_word_embeddings = false;
    bool qkv_bias = false;     // q/k/v projections (Qwen2; Llama's attention_bias)
    bool o_bias = false;       // o_proj (Llama's attention_bias)
    bool mlp_bias = false;     // gate/up/down (Llama's mlp_bias)
    bool fused = false;        // Phi-3's qkv_proj and gate_up_proj
    // Each layer's sliding window (0: none): query i sees keys j with i − j < window.
    std::vector<std::int64_t> sliding_window;
    // Every key of config.json as read, so that unknown keys survive a save.
    nlohmann::json extra = nlohmann::json::object();

    // The seam's names (model/causal_lm.hpp).
    std::int64_t width() const { return hidden_size; }
    std::int64_t max_positions() const { return max_position_embeddings; }
    operator data::Limits() const { return {vocab_size, max_position_embeddings, "max_position_embeddings"}; }
    // The packed q, k, v rows' width: H query heads, then KV key and KV value heads.
    std::int64_t qkv_width() const { return (num_attention_heads + 2 * num_key_value_heads) * head_dim; }

    void validate(const std::string& where) const {
        const auto positive = [&](const char* key, std::int64_t value) {
            if (value <= 0) fail(where, ": '", key, "' must be a positive integer, got ", value);
        };
        positive("vocab_size", vocab_size);
        positive("hidden_size", hidden_size);
        positive("intermediate_size", intermediate_size);
        positive("num_hidden_layers", num_hidden_layers);
        positive("num_attention_heads", num_attention_heads);
        positive("num_key_value_heads", num_key_value_heads);
        positive("head_dim", head_dim);
        positive("max_position_embeddings", max_position_embeddings);
        if (num_attention_heads % num_key_value_heads != 0)
            fail(where, ": 'num_key_value_heads' (", num_key_value_heads, ") does not divide 'num_attention_heads' (",
                 num_attention_heads, ")");
        if (head_dim % 2 != 0) fail(where, ": 'head_dim' (", head_dim, ") must be even for rotary embeddings");
        if (vocab_size > std::int64_t{1} << 31)
            fail(where, ": 'vocab_size' ", vocab_size, " does not fit 32-bit token ids");
        if (!(rms_norm_eps > 0.0) || !std::isfinite(rms_norm_eps))
            fail(where, ": 'rms_norm_eps' must be positive and finite");
        if (!(rope_theta > 1.0) || !std::isfinite(rope_theta)) fail(where, ": 'rope_theta' must be finite and above 1");
        if (static_cast<std::int64_t>(sliding_window.size()) != num_hidden_layers)
            fail(where, ": one sliding window per layer expected");
        parameter_count(where);
    }

    // The parameters LlamaLayout lays out, computed without laying them out;
    // Error naming `where` when the count overflows int64.
    std::int64_t parameter_count(const std::string& where) const {
        detail::CheckedCount count;
        // Every size is a factor of its own: no product is formed unchecked.
        const std::int64_t C = hidden_size, I = intermediate_size, L = num_hidden_layers;
        const std::int64_t H = num_attention_heads, KV = num_key_value_heads, D = head_dim;
        count.add({vocab_size, C});                            // embed_tokens
        if (!tie_word_embeddings) count.add({vocab_size, C});  // lm_head
        count.add({L, 2, C});                                  // the two norms
        count.add({L, H, D, C});                               // q_proj
        count.add({L, 2, KV, D, C});                           // k_proj, v_proj
        if (qkv_bias) {
            count.add({L, H, D});
            count.add({L, 2, KV, D});
        }
        count.add({L, C, H, D});  // o_proj
        if (o_bias) count.add({L, C});
        count.add({L, 3, I, C});  // gate, up, down
        if (mlp_bias) {
            count.add({L, 2, I});
            count.add({L, C});
        }
        count.add({C});  // model.norm
        if (count.overflowed) fail(where, ": the sizes give more parameters than a 64-bit count holds");
        return count.total;
    }

    // The rotary frequencies inv_freq[i], i < head_dim/2, with rope_scaling
    // applied (Hugging Face's default, linear and llama3 rules).
    std::vector<double> inverse_frequencies() const {
        const auto half = static_cast<std::size_t>(head_dim / 2);
        std::vector<double> inv(half);
        for (std::size_t i = 0; i < half; ++i)
            inv[i] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
        const RopeScaling& s = rope_scaling;
        if (s.kind == RopeScaling::Kind::linear) {
            for (auto& f : inv) f /= s.factor;
        } else if (s.kind == RopeScaling::Kind::llama3) {
            const double low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            const double high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for (auto& f : inv) {
                const double wavelen = 2.0 * std::numbers::pi / f;
                if (wavelen > low_freq_wavelen) {
                    f /= s.factor;
                } else if (wavelen >= high_freq_wavelen) {  // between the two: interpolate
                    const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                                          (s.high_freq_factor - s.low_freq_factor);
                    f = (1.0 - smooth) * f / s.factor + smooth * f;
                }
            }
        }
        return inv;
    }
};

namespace detail {

// A JSON number from a config, or its default when the key is absent or null.
inline double config_number(const nlohmann::json& json, const char* key, double fallback, const std::string& where) {
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) return fallback;
    if (!it->is_number()) fail(where, ": '", key, "' must be a number");
    return it->get<double>();
}

inline bool config_bool(const nlohmann::json& json, const char* key, bool fallback, const std::string& where) {
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(where, ": '", key, "' must be true or false");
    return it->get<bool>();
}

inline std::int64_t config_integer(const nlohmann::json& json, const char* key, std::int64_t fallback,
                                   const std::string& where) {
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) {
        if (fallback < 0) fail(where, ": missing required key '", key, "'");
        return fallback;
    }
    return json_int64(*it, where + ": '" + key + "'");
}

inline RopeScaling rope_scaling_from_json(const nlohmann::json& json, const std::string& where) {
    RopeScaling scaling;
    const auto it = json.find("rope_scaling");
    if (it == json.end() || it->is_null()) return scaling;
    if (!it->is_object()) fail(where, ": 'rope_scaling' must be an object or null");
    const auto& r = *it;
    const std::string at = where + ": 'rope_scaling'";
    std::string type;
    for (const char* key : {"rope_type", "type"})
        if (const auto t = r.find(key); t != r.end()) {
            if (!t->is_string()) fail(at, ": '", key, "' must be a string");
            type = t->get<std::string>();
            break;
        }
    if (type.empty()) fail(at, ": has no 'rope_type' (or 'type')");
    if (type == "default") return scaling;
    if (type != "linear" && type != "llama3")
        fail(at, ": rope type '", type, "' is not supported (default, linear and llama3 are)");
    scaling.kind = type == "linear" ? RopeScaling::Kind::linear : RopeScaling::Kind::llama3;
    scaling.factor = config_number(r, "factor", -1.0, at);
    if (!(scaling.factor >= 1.0) || !std::isfinite(scaling.factor))
        fail(at, ": 'factor' must be a finite number of at least 1");
    if (scaling.kind == RopeScaling::Kind::llama3) {
        for (const char* key : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
            if (!r.contains(key)) fail(at, ": missing '", key, "' (llama3 scaling needs it)");
        scaling.low_freq_factor = config_number(r, "low_freq_factor", 1.0, at);
        scaling.high_freq_factor = config_number(r, "high_freq_factor", 4.0, at);
        scaling.original_max_position_embeddings = config_number(r, "original_max_position_embeddings", 8192, at);
        if (!(scaling.low_freq_factor > 0.0) || !(scaling.high_freq_factor > scaling.low_freq_factor) ||
            !(scaling.original_max_position_embeddings > 0.0) || !std::isfinite(scaling.high_freq_factor) ||
            !std::isfinite(scaling.original_max_position_embeddings))
            fail(at, ": needs 0 < low_freq_factor < high_freq_factor and a positive original_max_position_embeddings");
    }
    return scaling;
}

}  // namespace detail

// More layers than any model has: a config beyond it is refused before a per-layer table is allocated.
inline constexpr std::int64_t max_layers = std::int64_t{1} << 20;

// Reads a Llama-family config object (model_type llama, mistral, qwen2 or
// phi3) with Hugging Face's defaults for that type; `where` names its source.
inline LlamaConfig llama_config_from_json(const nlohmann::json& json, const std::string& where) {
    using detail::config_bool;
    using detail::config_integer;
    using detail::config_number;
    if (!json.is_object()) fail(where, ": expected a JSON object");
    LlamaConfig c;
    c.extra = json;
    const auto type = json.find("model_type");
    if (type == json.end() || !type->is_string()) fail(where, ": 'model_type' is missing or not a string");
    c.model_type = type->get<std::string>();
    const std::string& t = c.model_type;
    if (t != "llama" && t != "mistral" && t != "qwen2" && t != "phi3")
        fail(where, ": 'model_type' '", t, "' is not a Llama-family model (llama, mistral, qwen2, phi3)");

    if (const auto act = json.find("hidden_act"); act != json.end() && act->is_string() && *act != "silu")
        fail(where, ": 'hidden_act' '", act->get<std::string>(), "' is not supported (the Llama family's is silu)");
    else if (act != json.end() && !act->is_string())
        fail(where, ": 'hidden_act' must be a string");
    if (config_number(json, "partial_rotary_factor", 1.0, where) != 1.0)
        fail(where, ": 'partial_rotary_factor' other than 1 is not supported");

    c.vocab_size = config_integer(json, "vocab_size", -1, where);
    c.hidden_size = config_integer(json, "hidden_size", -1, where);
    c.intermediate_size = config_integer(json, "intermediate_size", -1, where);
    c.num_hidden_layers = config_integer(json, "num_hidden_layers", -1, where);
    c.num_attention_heads = config_integer(json, "num_attention_heads", -1, where);
    c.num_key_value_heads = config_integer(json, "num_key_value_heads", c.num_attention_heads, where);
    if (c.num_attention_heads <= 0) fail(where, ": 'num_attention_heads' must be a positive integer");
    if (!json.contains("head_dim") || json["head_dim"].is_null()) {
        if (c.hidden_size % c.num_attention_heads != 0)
            fail(where, ": 'hidden_size' (", c.hidden_size, ") is not a multiple of 'num_attention_heads' (",
                 c.num_attention_heads, ") and no 'head_dim' is given");
        c.head_dim = c.hidden_size / c.num_attention_heads;
    } else {
        c.head_dim = config_integer(json, "head_dim", -1, where);
    }
    const std::int64_t default_positions = t == "llama" ? 2048 : t == "mistral" ? 131072 : t == "qwen2" ? 32768 : 4096;
    c.max_position_embeddings = config_integer(json, "max_position_embeddings", default_positions, where);
    c.rms_norm_eps = config_number(json, "rms_norm_eps", t == "phi3" ? 1e-5 : 1e-6, where);
    c.rope_theta = config_number(json, "rope_theta", 10000.0, where);
    c.rope_scaling = detail::rope_scaling_from_json(json, where);
    c.tie_word_embeddings = config_bool(json, "tie_word_embeddings", false, where);

    const bool attention_bias = config_bool(json, "attention_bias", false, where);
    c.qkv_bias = t == "qwen2" || (t == "llama" && attention_bias);
    c.o_bias = t == "llama" && attention_bias;
    c.mlp_bias = t == "llama" && config_bool(json, "mlp_bias", false, where);
    c.fused = t == "phi3";
    if (t != "llama" && attention_bias)
        fail(where, ": 'attention_bias' is a llama key; ", t, " fixes its biases itself");

    // Mistral and Phi-3 apply sliding_window to every layer when it is set;
    // Qwen2 only with use_sliding_window, to the layers from max_window_layers on.
    std::int64_t window = 0;
    const auto sliding = json.find("sliding_window");
    const bool has_window = sliding != json.end() && !sliding->is_null();
    if (t == "mistral" || t == "phi3" || t == "qwen2") {
        if (has_window) window = config_integer(json, "sliding_window", 0, where);
        else if (t == "mistral" && sliding == json.end()) window = 4096;  // MistralConfig's default
        if (window < 0 || (has_window && window == 0)) fail(where, ": 'sliding_window' must be a positive integer or null");
    } else if (has_window) {
        fail(where, ": 'sliding_window' is not a llama key (use model_type mistral)");
    }
    // One window per layer is allocated from a size read from the file: bound it first.
    if (c.num_hidden_layers <= 0 || c.num_hidden_layers > max_layers)
        fail(where, ": 'num_hidden_layers' must be a positive integer of at most ", max_layers, ", got ",
             c.num_hidden_layers);
    c.sliding_window.assign(static_cast<std::size_t>(c.num_hidden_layers), window);
    if (t == "qwen2") {
        const bool use = config_bool(json, "use_sliding_window", false, where);
        const std::int64_t from = config_integer(json, "max_window_layers", 28, where);
        for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
            c.sliding_window[static_cast<std::size_t>(l)] = use && l >= from ? window : 0;
    }
    c.validate(where);
    return c;
}

inline LlamaConfig read_llama_config(const std::filesystem::path& path) {
    return llama_config_from_json(parse_json(read_file(path), path.string()), path.string());
}

// config.json as Hugging Face would read it back: the keys read, over every
// other key kept from the file.
inline nlohmann::json llama_config_to_json(const LlamaConfig& c) {
    nlohmann::json json = c.extra.is_object() ? c.extra : nlohmann::json::object();
    json["model_type"] = c.model_type;
    json["vocab_size"] = c.vocab_size;
    json["hidden_size"] = c.hidden_size;
    json["intermediate_size"] = c.intermediate_size;
    json["num_hidden_layers"] = c.num_hidden_layers;
    json["num_attention_heads"] = c.num_attention_heads;
    json["num_key_value_heads"] = c.num_key_value_heads;
    json["head_dim"] = c.head_dim;
    json["max_position_embeddings"] = c.max_position_embeddings;
    json["rms_norm_eps"] = c.rms_norm_eps;
    json["rope_theta"] = c.rope_theta;
    json["tie_word_embeddings"] = c.tie_word_embeddings;
    json["hidden_act"] = "silu";
    if (!json.contains("architectures")) {
        const std::string& t = c.model_type;
        const std::string name = t == "llama" ? "Llama" : t == "mistral" ? "Mistral" : t == "qwen2" ? "Qwen2" : "Phi3";
        json["architectures"] = {name + "ForCausalLM"};
    }
    return json;
}

}  // namespace simnpo::model
