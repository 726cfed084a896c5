// libFuzzer target: Hugging Face tokenizer.json on arbitrary bytes, two ways.
// 1. The input, split at its first NUL, as a tokenizer.json and a text:
//    reading it may fail only with simnpo::Error, in one line naming the file;
//    a tokenizer that loads encodes and decodes the text without crashing, and
//    encode_at_most agrees with encode's length.
// 2. The input as text, on two small tokenizers shaped like Llama 3's (regex
//    split, byte-level) and Llama 2's (SentencePiece-style, byte fallback):
//    the byte-level one gives the text back with ill-formed UTF-8 replaced.
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

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using simnpo::tokenizer::Tokenizer;

const fs::path& scratch() {
    static const fs::path dir = fs::temp_directory_path() / ("simnpo_fuzz_hf_tokenizer_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir;
}

void write(const fs::path& path, std::string_view bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void exercise(const Tokenizer& tokenizer, std::string_view text) {
    const auto ids = tokenizer.encode(text);
    const auto with_special = tokenizer.encode(text, true);
    if (with_special.size() != ids.size() + tokenizer.special_prefix().size() + tokenizer.special_suffix().size())
        std::abort();
    (void)tokenizer.decode(ids);
    (void)tokenizer.decode(with_special, true);
    const std::size_t limit = text.size() % 7;
    if (tokenizer.encode_at_most(text, limit).has_value() != (ids.size() <= limit)) std::abort();
}

void read_document(std::string_view input) {
    const std::size_t split = std::min(input.find('\0'), input.size());
    const fs::path path = scratch() / "tokenizer.json";
    write(path, input.substr(0, split));
    const std::string_view text = input.substr(std::min(split + 1, input.size()));
    try {
        const auto tokenizer = Tokenizer::from_tokenizer_json(path, {});
        exercise(tokenizer, text);
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        if (!message.starts_with(path.string()) || message.find_first_of("\r\n") != std::string_view::npos) std::abort();
    }
}

// The 256 byte tokens (or <0xNN> pieces), a few merges and an added token or two.
Tokenizer small(bool byte_level) {
    nlohmann::json vocab = nlohmann::json::object();
    nlohmann::json merges = nlohmann::json::array();
    nlohmann::json json;
    if (byte_level) {
        for (unsigned byte = 0; byte < 256; ++byte) vocab[simnpo::tokenizer::utf8::byte_token(byte)] = byte;
        vocab["\xC4\xA0t"] = 256, vocab["he"] = 257, vocab["\xC4\xA0the"] = 258;
        merges = {"\xC4\xA0 t", "h e", "\xC4\xA0t he"};
        json["pre_tokenizer"] = {
            {"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"},
               {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
               {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
        json["decoder"] = {{"type", "ByteLevel"}};
        json["added_tokens"] = {{{"id", 259}, {"content", "<|eot|>"}, {"special", true}, {"normalized", false}}};
        json["post_processor"] = {{"type", "TemplateProcessing"},
                                  {"single", {{{"SpecialToken", {{"id", "<|eot|>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
                                  {"special_tokens", {{"<|eot|>", {{"id", "<|eot|>"}, {"ids", {259}}}}}}};
    } else {
        char name[8];
        for (unsigned byte = 0; byte < 256; ++byte) {
            std::snprintf(name, sizeof name, "<0x%02X>", byte);
            vocab[name] = byte + 3;
        }
        vocab["<unk>"] = 0, vocab["<s>"] = 1, vocab["</s>"] = 2;
        vocab["\xE2\x96\x81"] = 259, vocab["t"] = 260, vocab["\xE2\x96\x81t"] = 261;
        merges = {"\xE2\x96\x81 t"};
        json["normalizer"] = {{"type", "Sequence"},
                              {"normalizers",
                               {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
        json["decoder"] = {{"type", "Sequence"},
                           {"decoders",
                            {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                             {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                             {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
        json["added_tokens"] = {{{"id", 2}, {"content", "</s>"}, {"special", false}, {"rstrip", true}, {"normalized", false}},
                                {{"id", 1}, {"content", "<s>"}, {"special", true}, {"lstrip", true}, {"normalized", false}}};
    }
    json["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", !byte_level},
                     {"unk_token", byte_level ? nlohmann::json() : nlohmann::json("<unk>")}, {"fuse_unk", true}};
    const fs::path path = scratch() / (byte_level ? "byte_level.json" : "sentencepiece.json");
    write(path, json.dump());
    return Tokenizer::from_tokenizer_json(path, {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    read_document(input);

    static const Tokenizer byte_level = small(true);
    static const Tokenizer sentencepiece = small(false);
    exercise(byte_level, input);
    if (byte_level.decode(byte_level.encode(input)) != simnpo::tokenizer::utf8::replace_invalid(input)) std::abort();
    exercise(sentencepiece, input);
    return 0;
}
