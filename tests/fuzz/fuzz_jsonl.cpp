// libFuzzer target: arbitrary bytes as a JSON Lines / JSON array data file.
// The reader may reject them only with simnpo::Error, in one line naming the
// input; what it accepts must be fit for make_batch and the model.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace {

simnpo::model::Config small_config() {
    return {.vocab_size = 50, .n_positions = 16, .n_embd = 8, .n_layer = 1, .n_head = 2};
}

bool usable(const simnpo::data::Example& example, const simnpo::model::Config& config) {
    const auto in_vocabulary = [&](const std::vector<std::int32_t>& ids) {
        for (const auto id : ids)
            if (id < 0 || id >= config.vocab_size) return false;
        return true;
    };
    const auto length = static_cast<std::int64_t>(example.prompt_ids.size() + example.answer_ids.size());
    return !example.prompt_ids.empty() && !example.answer_ids.empty() && in_vocabulary(example.prompt_ids) &&
           in_vocabulary(example.answer_ids) && length <= config.n_positions;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const simnpo::model::Config config = small_config();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<simnpo::data::Example> examples;
    try {
        examples = simnpo::data::parse_examples(text, config, "fuzz.jsonl");
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        // Long enough for any of the reader's messages; a bad token is cut short.
        const bool one_short_line = message.find_first_of("\r\n") == std::string_view::npos && message.size() < 512;
        if (!message.starts_with("fuzz.jsonl") || !one_short_line) std::abort();
        return 0;
    }
    if (examples.empty()) std::abort();
    for (const auto& example : examples)
        if (!usable(example, config)) std::abort();
    const simnpo::data::Batch batch = simnpo::data::make_batch(examples);
    for (std::size_t b = 0; b < examples.size(); ++b)
        if (batch.lengths[b] !=
            static_cast<std::int64_t>(examples[b].prompt_ids.size() + examples[b].answer_ids.size() - 1))
            std::abort();
    return 0;
}
