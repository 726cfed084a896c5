// libFuzzer target: any byte string is either rejected with simnpo::Error or
// parses into tensors that can all be read (or refused by dtype) without a crash.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto file = simnpo::model::SafetensorsFile::parse(
            std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
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
    return 0;
}
