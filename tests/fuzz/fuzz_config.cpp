// libFuzzer target: arbitrary bytes as a model's config.json, read both as a
// GPT2Config and as a Llama-family config. Each reader may reject them only
// with simnpo::Error, in one line naming the file, and never after allocating
// for the sizes it read; what it accepts has a parameter count that fits
// int64, equal to its layout's, and round-trips.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

const std::string where = "fuzz/config.json";

// Calls read(); a rejection must be a one-line error naming the file. Whether it accepted.
template <class Read>
bool accepted(Read&& read) {
    try {
        read();
        return true;
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        if (!message.starts_with(where) || message.find_first_of("\r\n") != std::string_view::npos) std::abort();
        return false;
    }
}

void gpt2(const nlohmann::json& json) {
    simnpo::model::Config config;
    if (!accepted([&] { config = simnpo::model::config_from_json(json, where); })) return;
    const std::int64_t count = config.parameter_count(where);
    // Laying out a small model checks the count against the layout itself.
    if (count <= 1'000'000 && config.n_layer <= 1000 &&
        count != static_cast<std::int64_t>(simnpo::model::ParamLayout(config).total()))
        std::abort();
    const auto again = simnpo::model::config_from_json(simnpo::model::config_to_json(config), where);
    if (again.vocab_size != config.vocab_size || again.n_positions != config.n_positions ||
        again.n_embd != config.n_embd || again.n_layer != config.n_layer || again.n_head != config.n_head ||
        again.layer_norm_epsilon != config.layer_norm_epsilon)
        std::abort();
}

void llama(const nlohmann::json& json) {
    simnpo::model::LlamaConfig config;
    if (!accepted([&] { config = simnpo::model::llama_config_from_json(json, where); })) return;
    const std::int64_t count = config.parameter_count(where);
    if (count <= 1'000'000 && config.num_hidden_layers <= 1000 &&
        count != static_cast<std::int64_t>(simnpo::model::LlamaLayout(config).total()))
        std::abort();
    const auto again = simnpo::model::llama_config_from_json(simnpo::model::llama_config_to_json(config), where);
    if (again.model_type != config.model_type || again.vocab_size != config.vocab_size ||
        again.hidden_size != config.hidden_size || again.intermediate_size != config.intermediate_size ||
        again.num_hidden_layers != config.num_hidden_layers ||
        again.num_attention_heads != config.num_attention_heads ||
        again.num_key_value_heads != config.num_key_value_heads || again.head_dim != config.head_dim ||
        again.max_position_embeddings != config.max_position_embeddings || again.rms_norm_eps != config.rms_norm_eps ||
        again.rope_theta != config.rope_theta || again.tie_word_embeddings != config.tie_word_embeddings ||
        again.qkv_bias != config.qkv_bias || again.o_bias != config.o_bias || again.mlp_bias != config.mlp_bias ||
        again.sliding_window != config.sliding_window)
        std::abort();
    if (config.head_dim <= 4096 && again.inverse_frequencies() != config.inverse_frequencies()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    nlohmann::json json;
    if (!accepted([&] { json = simnpo::parse_json(text, where); })) return 0;
    gpt2(json);
    llama(json);
    return 0;
}
