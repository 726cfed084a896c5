// The one tokenizer of the library (DESIGN §5): a Hugging Face tokenizer.json
// (+ tokenizer_config.json), or GPT-2's vocab.json + merges.txt read as the
// byte-level tokenizer.json they amount to. encode and decode give the ids and
// text of Hugging Face's tokenizers library:
//
//   text -> ill-formed UTF-8 replaced by U+FFFD (what any decoder of bytes into
//           a string does before tokenizers sees them)
//        -> added tokens split out (leftmost, then longest; lstrip, rstrip and
//           single_word as each token says): first those matched on the raw
//           text, then, after the normalizers, those matched on normalized text
//        -> normalizers -> pre-tokenizers -> BPE model, piece by piece
//        -> with add_special_tokens, the post-processor's tokens around them.
//
// decode maps ids to tokens (added tokens by their content) and runs the
// decoders. A tokenizer.json part this reader does not implement is an Error
// naming its type and the file.
#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/core/read_limits.hpp"
#include "simnpo/tokenizer/bpe.hpp"
#include "simnpo/tokenizer/components.hpp"
#include "simnpo/tokenizer/utf8.hpp"

namespace simnpo::tokenizer {

// A token matched in text before the model runs (tokenizer.json's added_tokens).
struct AddedToken {
    std::string content;
    std::int32_t id = 0;
    bool special = false;
    bool lstrip = false;       // swallows the whitespace before it
    bool rstrip = false;       // swallows the whitespace after it
    bool single_word = false;  // only where no word character touches it
    bool normalized = false;   // matched in normalized text (else in the raw text)
};

class Tokenizer {
public:
    // From a directory: tokenizer.json (with tokenizer_config.json when it is
    // there), else vocab.json + merges.txt (Hugging Face's GPT-2 names) or
    // encoder.json + vocab.bpe (OpenAI's).
    static Tokenizer load(const std::filesystem::path& dir) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (fs::exists(dir / "tokenizer.json", ec)) {
            const fs::path config = dir / "tokenizer_config.json";
            return from_tokenizer_json(dir / "tokenizer.json", fs::exists(config, ec) ? config : fs::path());
        }
        for (const auto& [vocab, merges] : {std::pair{"vocab.json", "merges.txt"}, std::pair{"encoder.json", "vocab.bpe"}}) {
            const bool has_vocab = fs::exists(dir / vocab, ec);
            const bool has_merges = fs::exists(dir / merges, ec);
            if (has_vocab && !has_merges) fail((dir / merges).string(), ": missing (", vocab, " is there)");
            if (has_merges && !has_vocab) fail((dir / vocab).string(), ": missing (", merges, " is there)");
            if (has_vocab) return from_gpt2_files(dir / vocab, dir / merges);
        }
        fail(dir.string(), ": no tokenizer (expected tokenizer.json, or vocab.json + merges.txt, or encoder.json + vocab.bpe)");
    }

    // Whether `dir` holds the files load reads.
    static bool present_in(const std::filesystem::path& dir) {
        std::error_code ec;
        for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe"})
            if (std::filesystem::exists(dir / name, ec)) return true;
        return false;
    }

    // tokenizer.json, and tokenizer_config.json unless `config_path` is empty.
    static Tokenizer from_tokenizer_json(const std::filesystem::path& json_path, const std::filesystem::path& config_path) {
        Tokenizer t;
        t.format_ = Format::tokenizer_json;
        t.source_ = json_path.string();
        t.json_text_ = read_text_file(json_path);
        t.read_tokenizer_json(parse_json(t.json_text_, t.source_));
        if (!config_path.empty()) {
            t.config_text_ = read_text_file(config_path);
            t.read_config(parse_json(t.config_text_, config_path.string()), config_path.string());
        }
        return t;
    }

    // A vocabulary file (JSON object token -> id) and a merges file (an
    // optional "#version" line, then one "left right" rule a line, highest
    // priority first): GPT-2's byte-level BPE, <|endoftext|> its special token.
    static Tokenizer from_gpt2_files(const std::filesystem::path& vocab_path, const std::filesystem::path& merges_path) {
        const std::string vocab_where = vocab_path.string();
        const nlohmann::json vocab = parse_json(read_file(vocab_path), vocab_where);
        if (!vocab.is_object()) fail(vocab_where, ": expected a JSON object of token -> id");
        detail::TokenIds ids = read_vocab(vocab, vocab_where);

        const std::string merges_where = merges_path.string();
        const std::string text = read_text_file(merges_path);
        std::vector<std::pair<std::string, std::string>> merges;
        std::vector<std::size_t> lines;  // each rule's line
        std::size_t line_number = 0;
        for (std::size_t begin = 0; begin < text.size();) {
            std::size_t end = text.find('\n', begin);
            if (end == std::string::npos) end = text.size();
            std::string_view line(text.data() + begin, end - begin);
            begin = end + 1;
            ++line_number;
            if (line.ends_with('\r')) line.remove_suffix(1);
            if (line_number == 1 && line.starts_with("#version")) continue;
            // Only the end of the file may be blank (a final newline or two).
            if (line.empty() && text.find_first_not_of("\r\n", begin) == std::string::npos) break;
            const auto rule = split_merge(line);
            if (!rule)
                fail(merges_where, ":", line_number, ": expected a merge rule \"left right\" (two tokens and one space), got ",
                     utf8::json_string(line));
            merges.push_back(*rule);
            lines.push_back(line_number);
        }
        return byte_level(std::move(ids), merges, vocab_where,
                          [&](std::size_t rank) { return merges_where + ":" + std::to_string(lines[rank]); });
    }

    // GPT-2-style byte-level BPE from tokens in id order and merge rules in
    // priority order (as BPE training makes them).
    static Tokenizer from_parts(const std::vector<std::string>& tokens,
                                const std::vector<std::pair<std::string, std::string>>& merges) {
        detail::TokenIds ids;
        for (std::size_t id = 0; id < tokens.size(); ++id)
            if (!ids.emplace(tokens[id], static_cast<std::int32_t>(id)).second)
                fail("tokenizer vocabulary: the token ", utf8::json_string(tokens[id]), " appears twice");
        return byte_level(std::move(ids), merges, "tokenizer vocabulary",
                          [](std::size_t rank) { return "tokenizer merge rule " + std::to_string(rank); });
    }

    // The ids of `text`; with add_special_tokens, the post-processor's tokens
    // (a BOS where the tokenizer adds one) around them.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = false) const {
        std::vector<std::int32_t> ids;
        if (add_special_tokens) ids = prefix_;
        encode_into(text, ids, std::numeric_limits<std::size_t>::max());
        if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
        return ids;
    }

    // The ids of `text` (no special tokens added), or nullopt as soon as they
    // are known to be more than `max_tokens`.
    std::optional<std::vector<std::int32_t>> encode_at_most(std::string_view text, std::size_t max_tokens) const {
        std::vector<std::int32_t> ids;
        if (!encode_into(text, ids, max_tokens)) return std::nullopt;
        return ids;
    }

    // The text of `ids`; skip_special_tokens leaves out special added tokens.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
        std::vector<std::string> tokens;
        tokens.reserve(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (added_token(ids[i]) != nullptr) {
                // As in tokenizers, a normalized token decodes as its normalized
                // text, and is skipped only if that text is a special token's.
                const std::string& text = decoded_added_[added_by_id_[ids[i]]];
                if (!(skip_special_tokens && special_contents_.contains(text))) tokens.push_back(text);
                continue;
            }
            const std::string* token = model_->token(ids[i]);
            if (token == nullptr)
                fail(source_, ": cannot decode token id ", ids[i], " at position ", i, ": no token has it (vocabulary of ",
                     vocab_size(), ")");
            tokens.push_back(*token);
        }
        if (decoders_.empty()) {
            std::string joined;
            for (std::size_t i = 0; i < tokens.size(); ++i) joined.append(i == 0 ? "" : " ").append(tokens[i]);
            return joined;
        }
        for (const auto& decoder : decoders_) decoder.apply(tokens);
        std::string joined;
        for (const auto& token : tokens) joined += token;
        return joined;
    }

    // One more than the largest id (the model's and the added tokens').
    std::size_t vocab_size() const { return vocab_size_; }
    std::size_t merge_count() const { return model_->merge_count(); }

    // The id of a token as the vocabulary spells it ("Ġthe" for GPT-2's " the"), or an added token's.
    std::optional<std::int32_t> token_id(std::string_view token) const {
        for (const auto& added : added_)
            if (added.content == token) return added.id;
        return model_->token_id(token);
    }
    const std::string& token(std::int32_t id) const {
        if (const AddedToken* added = added_token(id)) return added->content;
        const std::string* token = model_->token(id);
        if (token == nullptr) fail(source_, ": no token has the id ", id, " (vocabulary of ", vocab_size(), ")");
        return *token;
    }
    const std::vector<AddedToken>& added_tokens() const { return added_; }
    bool is_special(std::int32_t id) const {
        const AddedToken* added = added_token(id);
        return added != nullptr && added->special;
    }

    // tokenizer_config.json's bos_token and eos_token (GPT-2 files: <|endoftext|>).
    const std::optional<std::string>& bos_token() const { return bos_token_; }
    const std::optional<std::string>& eos_token() const { return eos_token_; }
    std::optional<std::int32_t> bos_id() const { return bos_token_ ? token_id(*bos_token_) : std::nullopt; }
    std::optional<std::int32_t> eos_id() const { return eos_token_ ? token_id(*eos_token_) : std::nullopt; }
    // The EOS id, or an Error saying why there is none.
    std::int32_t required_eos_id() const {
        if (!eos_token_)
            fail(source_, ": the tokenizer has no EOS token (tokenizer_config.json's eos_token, or <|endoftext|> in a GPT-2 "
                 "vocabulary)");
        return *eos_id();
    }
    // The tokens encode(text, true) puts before and after the text.
    std::span<const std::int32_t> special_prefix() const { return prefix_; }
    std::span<const std::int32_t> special_suffix() const { return suffix_; }

    // tokenizer_config.json's chat_template (the "default" one of a list), if any.
    const std::optional<std::string>& chat_template() const { return chat_template_; }
    // Where the tokenizer came from, for messages.
    const std::string& source() const { return source_; }

    // Writes the tokenizer's files into a directory being written (a model
    // directory, so that the model carries its tokenizer): tokenizer.json and
    // tokenizer_config.json as they were read, or vocab.json + merges.txt.
    void write_into(DirectoryWriter& out) const {
        if (format_ == Format::tokenizer_json) {
            out.write("tokenizer.json", json_text_);
            if (!config_text_.empty()) out.write("tokenizer_config.json", config_text_);
            return;
        }
        std::string merges = "#version: 0.2\n";
        for (const auto& [left, right] : model_->merge_rules()) merges += token(left) + " " + token(right) + "\n";
        std::string vocab = "{";
        for (std::size_t id = 0; id < vocab_size_; ++id)
            vocab += (id == 0 ? "" : ", ") + utf8::json_string(token(static_cast<std::int32_t>(id))) + ": " + std::to_string(id);
        vocab += "}\n";
        out.write("merges.txt", merges);
        out.write("vocab.json", vocab);
    }

    // Writes them into `dir` as one step, keeping what else it holds (a model).
    void save(const std::filesystem::path& dir) const {
        DirectoryWriter out(dir);
        write_into(out);
        out.commit();
    }

private:
    enum class Format { gpt2_files, tokenizer_json };

    struct Segment {
        std::string text;
        std::int32_t id = -1;  // an added token's id, or -1 for text
        bool at_start = false;
    };

    Tokenizer() = default;

    static std::optional<std::pair<std::string, std::string>> split_merge(std::string_view line) {
        const std::size_t space = line.find(' ');
        if (line.empty() || space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string_view::npos)
            return std::nullopt;
        return std::pair{std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
    }

    static detail::TokenIds read_vocab(const nlohmann::json& vocab, const std::string& where) {
        detail::TokenIds ids;
        ids.reserve(vocab.size());
        for (const auto& [token, id] : vocab.items()) {
            if (!id.is_number_integer())
                fail(where, ": the id of token ", utf8::json_string(token), " is not an integer");
            if (id.is_number_unsigned() ? id.get<std::uint64_t>() > std::numeric_limits<std::int32_t>::max()
                                        : id.get<std::int64_t>() < 0)
                fail(where, ": the id ", id.dump(), " of token ", utf8::json_string(token), " is outside [0, 2^31)");
            ids.emplace(token, id.get<std::int32_t>());
        }
        return ids;
    }

    static Tokenizer byte_level(detail::TokenIds ids, const std::vector<std::pair<std::string, std::string>>& merges,
                                const std::string& vocab_where, const std::function<std::string(std::size_t)>& rule_where) {
        // Every byte needs a token, or some text could not be encoded.
        for (unsigned byte = 0; byte < 256; ++byte)
            if (!ids.contains(utf8::byte_token(byte)))
                fail(vocab_where, ": the vocabulary lacks the token ", utf8::json_string(utf8::byte_token(byte)), " for byte ",
                     byte);
        const auto special = ids.find(std::string_view(gpt2_end_of_text));
        for (const auto& [token, id] : ids) {
            if (special != ids.end() && token == special->first) continue;
            bool all = !token.empty();
            utf8::for_each_point(token, [&](char32_t c, std::size_t, std::size_t) { all = all && utf8::byte_of_code_point(c); });
            if (!all) fail(vocab_where, ": token ", utf8::json_string(token), " is not byte-level (a character stands for no byte)");
        }
        Tokenizer t;
        t.format_ = Format::gpt2_files;
        t.source_ = vocab_where;
        t.pre_tokenizers_.push_back(PreTokenizer::gpt2_byte_level());
        t.decoders_.push_back(Decoder::byte_level());
        if (special != ids.end()) {
            t.added_.push_back({.content = special->first, .id = special->second, .special = true, .normalized = true});
            t.bos_token_ = t.eos_token_ = special->first;
        }
        t.model_.emplace(std::move(ids), merges, BpeOptions{}, vocab_where, rule_where);
        t.finish();
        return t;
    }

    void read_tokenizer_json(const nlohmann::json& json) {
        if (!json.is_object()) fail(source_, ": expected a JSON object");
        const auto component = [&](const char* key) -> std::optional<detail::ComponentJson> {
            const auto it = json.find(key);
            if (it == json.end() || it->is_null()) return std::nullopt;
            return detail::ComponentJson{*it, source_ + ": " + key};
        };
        for (const char* key : {"truncation", "padding"})
            if (component(key)) fail(source_, ": ", key, " is set: truncation and padding are not supported");
        if (auto n = component("normalizer")) Normalizer::read(*n, normalizers_);
        if (auto p = component("pre_tokenizer")) PreTokenizer::read(*p, pre_tokenizers_);
        if (auto d = component("decoder")) Decoder::read(*d, decoders_);
        std::optional<std::pair<nlohmann::json, std::string>> post_template;
        if (auto p = component("post_processor")) post_template = read_post_processor(*p);

        const auto model = component("model");
        if (!model) fail(source_, ": missing key \"model\"");
        if (!model->value.is_object()) fail(model->where, ": expected a JSON object");
        if (model->find("type") != nullptr && model->type() != "BPE") model->unsupported("model");
        const auto* vocab = model->find("vocab");
        if (vocab == nullptr || !vocab->is_object()) model->bad("vocab", "a JSON object of token -> id");
        detail::TokenIds ids = read_vocab(*vocab, model->where + ".vocab");
        const auto* merge_list = model->find("merges");
        if (merge_list != nullptr && !merge_list->is_array()) model->bad("merges", "an array");
        std::vector<std::pair<std::string, std::string>> merges;
        if (merge_list != nullptr) {
            merges.reserve(merge_list->size());
            for (std::size_t i = 0; i < merge_list->size(); ++i) {
                const auto& m = (*merge_list)[i];
                std::optional<std::pair<std::string, std::string>> rule;
                if (m.is_string()) {
                    rule = split_merge(m.get_ref<const std::string&>());
                } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                    rule = std::pair{m[0].get<std::string>(), m[1].get<std::string>()};
                }
                if (!rule)
                    fail(model->where, ".merges[", i, "]: expected \"left right\" (one space) or [\"left\", \"right\"], got ",
                         m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
                merges.push_back(std::move(*rule));
            }
        }
        if (const auto* dropout = model->find("dropout"); dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0))
            fail(model->where, ".dropout: BPE dropout is not supported (it makes encoding random)");
        BpeOptions options;
        if (model->find("unk_token") != nullptr) options.unk_token = model->string("unk_token");
        options.fuse_unk = model->boolean("fuse_unk", false);
        options.byte_fallback = model->boolean("byte_fallback", false);
        options.ignore_merges = model->boolean("ignore_merges", false);
        options.continuing_subword_prefix = model->string("continuing_subword_prefix", "");
        options.end_of_word_suffix = model->string("end_of_word_suffix", "");
        const bool can_spell_every_byte = options.unk_token || options.byte_fallback;
        const bool byte_level = std::ranges::any_of(pre_tokenizers_, [](const PreTokenizer& p) { return p.is_byte_level(); });
        if (byte_level && !can_spell_every_byte)
            for (unsigned byte = 0; byte < 256; ++byte)
                if (!ids.contains(utf8::byte_token(byte)))
                    fail(model->where, ".vocab: a ByteLevel tokenizer lacks the token ",
                         utf8::json_string(utf8::byte_token(byte)), " for byte ", byte,
                         " (text with that byte could not be encoded)");
        const std::string merges_where = model->where + ".merges[";
        model_.emplace(std::move(ids), merges, std::move(options), model->where + ".vocab",
                       [&](std::size_t rank) { return merges_where + std::to_string(rank) + "]"; });

        const auto it = json.find("added_tokens");
        if (it != json.end() && !it->is_null()) {
            if (!it->is_array()) fail(source_, ": added_tokens: expected an array");
            for (std::size_t i = 0; i < it->size(); ++i) {
                const detail::ComponentJson one{(*it)[i], source_ + ": added_tokens[" + std::to_string(i) + "]"};
                if (!one.value.is_object()) fail(one.where, ": expected a JSON object");
                AddedToken token;
                token.content = one.string("content");
                if (token.content.empty()) fail(one.where, ".content: an added token cannot be empty");
                const auto* id = one.find("id");
                if (id == nullptr || !id->is_number_unsigned() || id->get<std::uint64_t>() > std::numeric_limits<std::int32_t>::max())
                    one.bad("id", "an id in [0, 2^31)");
                token.id = id->get<std::int32_t>();
                token.special = one.boolean("special", false);
                token.lstrip = one.boolean("lstrip", false);
                token.rstrip = one.boolean("rstrip", false);
                token.single_word = one.boolean("single_word", false);
                token.normalized = one.boolean("normalized", !token.special);
                if (const auto in_model = model_->token_id(token.content); in_model && *in_model != token.id)
                    fail(one.where, ": the token ", utf8::json_string(token.content), " has the id ", token.id,
                         " here and ", *in_model, " in the model's vocabulary");
                if (const std::string* in_model = model_->token(token.id); in_model != nullptr && *in_model != token.content)
                    fail(one.where, ": the id ", token.id, " of ", utf8::json_string(token.content),
                         " is the model's token ", utf8::json_string(*in_model));
                for (const auto& other : added_)
                    if (other.id == token.id || other.content == token.content)
                        fail(one.where, ": the added token ", utf8::json_string(token.content), " (id ", token.id,
                             ") is given twice");
                added_.push_back(std::move(token));
            }
        }
        finish();
        if (post_template) resolve_template(detail::ComponentJson{post_template->first, post_template->second});
    }

    // The post-processors: TemplateProcessing's tokens around a single
    // sequence; ByteLevel changes only offsets, which simnpo does not keep.
    // Returns the TemplateProcessing, if any, to be read once the vocabulary is.
    static std::optional<std::pair<nlohmann::json, std::string>> read_post_processor(const detail::ComponentJson& json) {
        std::optional<std::pair<nlohmann::json, std::string>> found;
        detail::read_sequence(json, "processors", [&](const detail::ComponentJson& one) {
            const std::string type = one.type();
            if (type == "ByteLevel") return;
            if (type != "TemplateProcessing") one.unsupported("post-processor");
            if (found) fail(one.where, ": two TemplateProcessing post-processors");
            found.emplace(one.value, one.where);
        });
        return found;
    }

    void resolve_template(const detail::ComponentJson& one) {
        const auto* single = one.find("single");
        if (single == nullptr || !single->is_array()) one.bad("single", "an array");
        const auto* specials = one.find("special_tokens");
        bool seen_sequence = false;
        for (std::size_t i = 0; i < single->size(); ++i) {
            const auto& piece = (*single)[i];
            const std::string where = one.where + ".single[" + std::to_string(i) + "]";
            if (piece.is_object() && piece.contains("Sequence")) {
                if (seen_sequence) fail(where, ": the sequence appears twice");
                seen_sequence = true;
                continue;
            }
            if (!piece.is_object() || !piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id") ||
                !piece["SpecialToken"]["id"].is_string())
                fail(where, ": expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
            const std::string name = piece["SpecialToken"]["id"].get<std::string>();
            if (specials == nullptr || !specials->contains(name) || !(*specials)[name].contains("ids") ||
                !(*specials)[name]["ids"].is_array())
                fail(where, ": the special token ", utf8::json_string(name), " is not in special_tokens");
            for (const auto& id : (*specials)[name]["ids"]) {
                if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= vocab_size_)
                    fail(one.where, ".special_tokens.", name, ": the id ", id.dump(), " is outside the vocabulary");
                (seen_sequence ? suffix_ : prefix_).push_back(id.get<std::int32_t>());
            }
        }
        if (!seen_sequence) fail(one.where, ".single: no {\"Sequence\": ...}");
    }

    // tokenizer_config.json: the special tokens' names, whether BOS and EOS are
    // added (present, these keys decide, as transformers' Llama tokenizers
    // rebuild the post-processor from them) and the chat template.
    void read_config(const nlohmann::json& json, const std::string& where) {
        if (!json.is_object()) fail(where, ": expected a JSON object");
        const auto special = [&](const char* key) -> std::optional<std::string> {
            const auto it = json.find(key);
            if (it == json.end() || it->is_null()) return std::nullopt;
            const nlohmann::json* content = &*it;
            if (it->is_object()) {
                const auto c = it->find("content");
                if (c == it->end()) fail(where, ": ", key, ": expected a string or an object with \"content\"");
                content = &*c;
            }
            if (!content->is_string()) fail(where, ": ", key, ": expected a string or an object with \"content\"");
            const std::string name = content->get<std::string>();
            if (!token_id(name)) fail(where, ": ", key, " ", utf8::json_string(name), " is not a token of ", source_);
            return name;
        };
        bos_token_ = special("bos_token");
        eos_token_ = special("eos_token");
        const auto flag = [&](const char* key) -> std::optional<bool> {
            const auto it = json.find(key);
            if (it == json.end() || it->is_null()) return std::nullopt;
            if (!it->is_boolean()) fail(where, ": ", key, ": expected true or false");
            return it->get<bool>();
        };
        if (const auto add_bos = flag("add_bos_token")) {
            if (*add_bos && !bos_token_) fail(where, ": add_bos_token is true but there is no bos_token");
            prefix_.clear();
            if (*add_bos) prefix_.push_back(*bos_id());
        }
        if (const auto add_eos = flag("add_eos_token")) {
            if (*add_eos && !eos_token_) fail(where, ": add_eos_token is true but there is no eos_token");
            suffix_.clear();
            if (*add_eos) suffix_.push_back(*eos_id());
        }
        const auto it = json.find("chat_template");
        if (it == json.end() || it->is_null()) return;
        if (it->is_string()) {
            chat_template_ = it->get<std::string>();
            return;
        }
        if (it->is_array()) {
            for (const auto& named : *it)
                if (named.is_object() && named.contains("name") && named["name"] == "default" &&
                    named.contains("template") && named["template"].is_string())
                    chat_template_ = named["template"].get<std::string>();
            if (chat_template_) return;
        }
        fail(where, ": chat_template: expected a string, or a list of {\"name\", \"template\"} with one named \"default\"");
    }

    // The vocabulary size and the added tokens' lookup tables.
    void finish() {
        vocab_size_ = model_->vocab_size();
        for (const auto& added : added_) vocab_size_ = std::max(vocab_size_, static_cast<std::size_t>(added.id) + 1);
        added_by_id_.assign(vocab_size_, -1);
        for (std::size_t i = 0; i < added_.size(); ++i) added_by_id_[added_[i].id] = static_cast<std::int32_t>(i);
        for (auto& starts : raw_starts_) starts.clear();
        for (auto& starts : normalized_starts_) starts.clear();
        decoded_added_.clear();
        special_contents_.clear();
        for (std::size_t i = 0; i < added_.size(); ++i) {
            std::string pattern = added_[i].content;
            if (added_[i].normalized)
                for (const auto& n : normalizers_) n.apply(pattern);
            decoded_added_.push_back(pattern);
            if (added_[i].special) special_contents_.insert(added_[i].content);
            if (pattern.empty()) continue;
            auto& starts = added_[i].normalized ? normalized_starts_ : raw_starts_;
            starts[static_cast<unsigned char>(pattern[0])].push_back({std::move(pattern), static_cast<std::int32_t>(i)});
        }
        for (auto* table : {&raw_starts_, &normalized_starts_})
            for (auto& starts : *table)
                std::stable_sort(starts.begin(), starts.end(),
                                 [](const Candidate& a, const Candidate& b) { return a.pattern.size() > b.pattern.size(); });
    }

    const AddedToken* added_token(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= added_by_id_.size() || added_by_id_[id] < 0) return nullptr;
        return &added_[added_by_id_[id]];
    }

    struct Candidate {
        std::string pattern;  // the added token's text as matched (normalized for normalized tokens)
        std::int32_t index;   // into added_
    };
    using StartTable = std::array<std::vector<Candidate>, 256>;

    // Rust regex's \w: letters, marks, decimal and letter numbers, connector
    // punctuation and the joiners (single_word's test).
    static bool is_word_character(char32_t c) {
        if (c == 0x200C || c == 0x200D) return true;
        switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
            case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
            case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
            case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
                return true;
            default:
                return false;
        }
    }

    // Splits `segment` (text) at the added tokens of `table`, as tokenizers'
    // AddedVocabulary::find_matches does, appending to `out`.
    void split_added(Segment segment, const StartTable& table, std::vector<Segment>& out) const {
        const std::string& text = segment.text;
        std::size_t from = 0;  // the start of the text not yet given out
        const auto last_point = [&](std::size_t end) -> std::optional<char32_t> {
            if (end == 0) return std::nullopt;
            std::size_t start = end - 1;
            while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
            return utf8::read(text, start).point;
        };
        for (std::size_t at = 0; at < text.size();) {
            const auto& starts = table[static_cast<unsigned char>(text[at])];
            const Candidate* match = nullptr;
            for (const auto& c : starts)
                if (text.compare(at, c.pattern.size(), c.pattern) == 0) {
                    match = &c;
                    break;  // the longest, as the candidates are sorted by length
                }
            if (match == nullptr) {
                ++at;
                continue;
            }
            const AddedToken& token = added_[match->index];
            std::size_t start = at, stop = at + match->pattern.size();
            if (token.single_word) {
                const auto before = last_point(start);
                const bool word_before = before && is_word_character(*before);
                const bool word_after = stop < text.size() && is_word_character(utf8::read(text, stop).point.value_or(0));
                if (word_before || word_after) {
                    ++at;
                    continue;
                }
            }
            if (token.lstrip) {
                while (start > from) {
                    std::size_t prev = start - 1;
                    while (prev > from && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
                    if (!utf8::is_whitespace(utf8::read(text, prev).point.value_or(0))) break;
                    start = prev;
                }
            }
            if (token.rstrip) {
                while (stop < text.size()) {
                    const utf8::Unit unit = utf8::read(text, stop);
                    if (!utf8::is_whitespace(unit.point.value_or(0))) break;
                    stop += unit.length;
                }
            }
            if (from < start) out.push_back({text.substr(from, start - from), -1, segment.at_start && from == 0});
            out.push_back({std::string(), token.id, false});
            from = at = stop;
        }
        if (from < text.size()) out.push_back({text.substr(from), -1, segment.at_start && from == 0});
    }

    // Appends the ids of `text` to `ids`; false as soon as they pass `max_tokens`.
    bool encode_into(std::string_view input, std::vector<std::int32_t>& ids, std::size_t max_tokens) const {
        std::vector<Segment> raw;
        split_added({utf8::replace_invalid(input), -1, true}, raw_starts_, raw);
        std::vector<Piece> pieces;
        for (auto& segment : raw) {
            if (segment.id >= 0) {
                ids.push_back(segment.id);
                if (ids.size() > max_tokens) return false;
                continue;
            }
            for (const auto& n : normalizers_) n.apply(segment.text);
            std::vector<Segment> normalized;
            split_added(std::move(segment), normalized_starts_, normalized);
            for (auto& part : normalized) {
                if (part.id >= 0) {
                    ids.push_back(part.id);
                    if (ids.size() > max_tokens) return false;
                    continue;
                }
                pieces.assign(1, Piece{std::move(part.text), part.at_start});
                for (const auto& p : pre_tokenizers_) p.apply(pieces);
                for (const auto& piece : pieces) {
                    model_->tokenize(piece.text, ids);
                    if (ids.size() > max_tokens) return false;
                }
            }
        }
        return true;
    }

    static constexpr std::string_view gpt2_end_of_text = "<|endoftext|>";

    Format format_ = Format::tokenizer_json;
    std::string source_;
    std::string json_text_, config_text_;  // the files as read, written back by write_into
    std::vector<Normalizer> normalizers_;
    std::vector<PreTokenizer> pre_tokenizers_;
    std::optional<BpeModel> model_;
    std::vector<Decoder> decoders_;
    std::vector<std::int32_t> prefix_, suffix_;
    std::vector<AddedToken> added_;
    std::vector<std::int32_t> added_by_id_;  // id -> index into added_, -1 if not added
    std::vector<std::string> decoded_added_;  // index into added_ -> its text in decoding (normalized if it is)
    std::unordered_set<std::string> special_contents_;
    StartTable raw_starts_, normalized_starts_;  // first byte -> candidates, longest first
    std::size_t vocab_size_ = 0;
    std::optional<std::string> bos_token_, eos_token_;
    std::optional<std::string> chat_template_;
};

}  // namespace simnpo::tokenizer
