// libFuzzer target: any byte string is either rejected with simnpo::Error or
// parses into tensors that can all be read (or refused by dtype) without a
// crash. The same bytes, as a model.safetensors.index.json, are either
// rejected with a one-line Error naming the index, or give a weight map whose
// shards are file names inside the directory, each listed once.
#include <simnpo.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

void fuzz_file(const std::string& bytes) {
    try {
        const auto file = simnpo::model::SafetensorsFile::parse(bytes, "fuzz.safetensors");
        std::vector<float> values;
        for (const auto& tensor : file.tensors()) {
            // The parser has checked that the element count fits the data, so this stays small.
            std::size_t count = 1;
            for (const auto extent : tensor.shape) count *= static_cast<std::size_t>(extent);
            values.resize(count);
            try {
                file.read(tensor, std::span<float>(values));
            } catch (const simnpo::Error&) {
                // An unsupported dtype: the other tensors are still read.
            }
        }
        (void)file.metadata();
    } catch (const simnpo::Error&) {
    }
}

void fuzz_index(std::string_view text) {
    const std::string where = "fuzz/model.safetensors.index.json";
    simnpo::model::WeightIndex index;
    try {
        index = simnpo::model::parse_weight_index(text, "fuzz");
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        if (!message.starts_with(where + ": ") || message.find_first_of("\r\n") != std::string_view::npos)
            std::abort();
        return;
    }
    if (index.tensors.empty() || !std::is_sorted(index.shards.begin(), index.shards.end()) ||
        std::adjacent_find(index.shards.begin(), index.shards.end()) != index.shards.end())
        std::abort();
    for (const auto& shard : index.shards)
        if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos) std::abort();
    std::vector<bool> used(index.shards.size(), false);
    for (std::size_t i = 0; i < index.tensors.size(); ++i) {
        const auto& [name, shard] = index.tensors[i];
        if (shard >= index.shards.size() || (i > 0 && !(index.tensors[i - 1].first < name))) std::abort();
        used[shard] = true;
    }
    if (std::find(used.begin(), used.end(), false) != used.end()) std::abort();  // no shard without a tensor
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    fuzz_file(bytes);
    fuzz_index(bytes);
    return 0;
}
