#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"

namespace simnpo::model {

// The GPT-2 shape, with Hugging Face GPT2Config's key names (DESIGN §4).
struct Config {
    std::int64_t vocab_size = 0;
    std::int64_t n_positions = 0;
    std::int64_t n_embd = 0;
    std::int64_t n_layer = 0;
    std::int64_t n_head = 0;
    double layer_norm_epsilon = 1e-5;
    // Every key of config.json as read, so that unknown keys survive a save.
    nlohmann::json extra = nlohmann::json::object();

    std::int64_t head_dim() const { return n_embd / n_head; }

    // Throws Error naming `where` (a file or a flag) when a size is not usable.
    void validate(const std::string& where) const {
        const auto positive = [&](const char* key, std::int64_t value) {
            if (value <= 0) fail(where, ": '", key, "' must be a positive integer, got ", value);
        };
        positive("vocab_size", vocab_size);
        positive("n_positions", n_positions);
        positive("n_embd", n_embd);
        positive("n_layer", n_layer);
        positive("n_head", n_head);
        if (n_embd % n_head != 0)
            fail(where, ": 'n_embd' (", n_embd, ") is not a multiple of 'n_head' (", n_head, ")");
        if (vocab_size > std::int64_t{1} << 31)
            fail(where, ": 'vocab_size' ", vocab_size, " does not fit 32-bit token ids");
        if (!(layer_norm_epsilon > 0.0) || !std::isfinite(layer_norm_epsilon))
            fail(where, ": 'layer_norm_epsilon' must be positive and finite");
    }
};

// Reads a GPT2Config object; `where` names its source in error messages.
inline Config config_from_json(const nlohmann::json& json, const std::string& where) {
    if (!json.is_object()) fail(where, ": expected a JSON object");
    Config config;
    config.extra = json;
    const auto integer = [&](const char* key) -> std::int64_t {
        const auto it = json.find(key);
        if (it == json.end()) fail(where, ": missing required key '", key, "'");
        if (!it->is_number_integer()) fail(where, ": '", key, "' must be an integer");
        return it->get<std::int64_t>();
    };
    config.vocab_size = integer("vocab_size");
    config.n_positions = integer("n_positions");
    config.n_embd = integer("n_embd");
    config.n_layer = integer("n_layer");
    config.n_head = integer("n_head");
    if (const auto it = json.find("layer_norm_epsilon"); it != json.end()) {
        if (!it->is_number()) fail(where, ": 'layer_norm_epsilon' must be a number");
        config.layer_norm_epsilon = it->get<double>();
    }
    config.validate(where);
    return config;
}

// Reads a config.json file.
inline Config read_config(const std::filesystem::path& path) {
    return config_from_json(read_json_file(path), path.string());
}

inline nlohmann::json config_to_json(const Config& config) {
    nlohmann::json json = config.extra.is_object() ? config.extra : nlohmann::json::object();
    json["vocab_size"] = config.vocab_size;
    json["n_positions"] = config.n_positions;
    json["n_embd"] = config.n_embd;
    json["n_layer"] = config.n_layer;
    json["n_head"] = config.n_head;
    json["layer_norm_epsilon"] = config.layer_norm_epsilon;
    if (!json.contains("model_type")) json["model_type"] = "gpt2";
    return json;
}

}  // namespace simnpo::model
