#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/data/example.hpp"

namespace simnpo::model {

namespace detail {

// A sum of products of sizes read from a file, in int64, that notes an
// overflow instead of wrapping: parameter counts are checked before anything
// is allocated.
struct CheckedCount {
    std::int64_t total = 0;
    bool overflowed = false;

    void add(std::initializer_list<std::int64_t> factors) {
        std::int64_t product = 1;
        for (const auto factor : factors) overflowed |= __builtin_mul_overflow(product, factor, &product);
        overflowed |= __builtin_add_overflow(total, product, &total);
    }
};

}  // namespace detail

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
    // The seam's names (model/causal_lm.hpp): the residual stream's width and the longest sequence.
    std::int64_t width() const { return n_embd; }
    std::int64_t max_positions() const { return n_positions; }
    operator data::Limits() const { return {vocab_size, n_positions, "n_positions"}; }

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
        parameter_count(where);
    }

    // The parameters ParamLayout lays out (V·C + P·C + L·(12C² + 13C) + 2C),
    // computed without laying them out, so that sizes can be checked before
    // anything is allocated; Error naming `where` when the count overflows int64.
    std::int64_t parameter_count(const std::string& where) const {
        detail::CheckedCount count;
        count.add({vocab_size, n_embd});
        count.add({n_positions, n_embd});
        count.add({n_layer, 12, n_embd, n_embd});
        count.add({n_layer, 13, n_embd});
        count.add({2, n_embd});
        if (count.overflowed)
            fail(where, ": the sizes give more parameters than a 64-bit count holds (vocab_size ", vocab_size,
                 ", n_positions ", n_positions, ", n_embd ", n_embd, ", n_layer ", n_layer, ")");
        return count.total;
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
        return json_int64(*it, where + ": '" + key + "'");
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
    return config_from_json(parse_json(read_file(path), path.string()), path.string());
}

// The memory this process can have: the machine's physical memory, or less
// under an address-space limit (ulimit -v).
inline std::uint64_t memory_available_bytes() {
    std::uint64_t bytes = std::numeric_limits<std::uint64_t>::max();
    const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_size > 0) bytes = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
    ::rlimit limit{};
    if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        bytes = std::min<std::uint64_t>(bytes, limit.rlim_cur);
    return bytes;
}

// Error naming `where` (the config's file) unless a model of `config`, needing
// `bytes_per_parameter` bytes for each parameter (its slabs and copies), fits
// in memory_available_bytes(): a clear refusal instead of std::bad_alloc or
// the system's out-of-memory killer.
template <class AnyConfig>
void check_fits_in_memory(const AnyConfig& config, std::uint64_t bytes_per_parameter, const std::string& where) {
    const auto parameters = static_cast<std::uint64_t>(config.parameter_count(where));
    std::uint64_t needed = 0;
    const bool overflows = __builtin_mul_overflow(parameters, bytes_per_parameter, &needed);
    const std::uint64_t available = memory_available_bytes();
    if (overflows || needed > available)
        fail(where, ": a model of ", parameters, " parameters needs ",
             overflows ? "more than 2^64" : std::to_string(needed), " bytes (", bytes_per_parameter,
             " a parameter), more than the ", available, " bytes of memory available");
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
