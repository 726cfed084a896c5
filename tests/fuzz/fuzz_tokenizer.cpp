// libFuzzer target: the GPT-2 tokenizer on arbitrary bytes, two ways.
// 1. The input, split at its first NUL, as vocab.json and merges.txt: loading
//    them may fail only with simnpo::Error, in one line naming one of the files.
// 2. The input as text, on a small valid tokenizer: decode(encode(text)) is the
//    text with ill-formed UTF-8 replaced by U+FFFD, and encode_at_most agrees
//    with encode's length.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, std::string_view bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void load_files(std::string_view input) {
    static const fs::path dir = fs::temp_directory_path() / ("simnpo_fuzz_tokenizer_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::size_t split = std::min(input.find('\0'), input.size());
    write(dir / "vocab.json", input.substr(0, split));
    write(dir / "merges.txt", input.substr(std::min(split + 1, input.size())));
    try {
        const auto tokenizer = simnpo::tokenizer::Tokenizer::load(dir);
        if (tokenizer.vocab_size() < 256) std::abort();  // every byte has its token
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        const bool names_a_file =
            message.starts_with((dir / "vocab.json").string()) || message.starts_with((dir / "merges.txt").string());
        if (!names_a_file || message.find_first_of("\r\n") != std::string_view::npos) std::abort();
    }
}

// The 256 bytes, then "Ġt", "he", "Ġthe" and "<|endoftext|>", with the merges that make the first three.
const simnpo::tokenizer::Tokenizer& small_tokenizer() {
    static const auto tokenizer = [] {
        std::vector<std::string> tokens;
        for (unsigned byte = 0; byte < 256; ++byte) tokens.push_back(simnpo::tokenizer::utf8::byte_token(byte));
        for (const char* token : {"\xC4\xA0t", "he", "\xC4\xA0the", "<|endoftext|>"}) tokens.emplace_back(token);
        return simnpo::tokenizer::Tokenizer::from_parts(
            tokens, {{"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}});
    }();
    return tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    load_files(input);

    const auto& tokenizer = small_tokenizer();
    const auto ids = tokenizer.encode(input);
    if (tokenizer.decode(ids) != simnpo::tokenizer::utf8::replace_invalid(input)) std::abort();
    const std::size_t limit = size % 7;
    if (tokenizer.encode_at_most(input, limit).has_value() != (ids.size() <= limit)) std::abort();
    return 0;
}
