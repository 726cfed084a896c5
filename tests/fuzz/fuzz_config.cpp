// libFuzzer target: arbitrary bytes as a model's config.json. The reader may
// reject them only with simnpo::Error, in one line naming the file, and never
// after allocating for the sizes it read; what it accepts has a parameter
// count that fits int64, equal to its layout's, and round-trips.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string where = "fuzz/config.json";
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    simnpo::model::Config config;
    try {
        config = simnpo::model::config_from_json(simnpo::parse_json(text, where), where);
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        if (!message.starts_with(where) || message.find_first_of("\r\n") != std::string_view::npos) std::abort();
        return 0;
    }
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
    return 0;
}
