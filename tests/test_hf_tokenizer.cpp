// Hugging Face tokenizer.json (issue 18) against Hugging Face's own tokenizers:
// the five real tokenizers of ../shared/data/hf-tokenizers with their cases
// (ids from tokenizers 0.23.2, see that folder's README), this project's own
// hard strings (tests/reference/make_hf_tokenizer_fixture.js, the same
// library through npm), and the errors of files this reader refuses.
#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_hf_tokenizer)

namespace {

namespace fs = std::filesystem;
using simnpo::testing::message_has;
using simnpo::testing::TempDir;
using simnpo::tokenizer::Tokenizer;
using Ids = std::vector<std::int32_t>;

const fs::path shared = fs::path(SIMNPO_SHARED_DATA_DIR) / "hf-tokenizers";
const fs::path fixtures = fs::path(SIMNPO_FIXTURES_DIR) / "hf_tokenizers";
const std::vector<std::string> names{"gpt-2", "llama-2", "phi-3", "llama-3.1", "qwen2.5"};

const Tokenizer& tokenizer(const std::string& name) {
    static std::map<std::string, Tokenizer> loaded;
    auto it = loaded.find(name);
    if (it == loaded.end()) it = loaded.emplace(name, Tokenizer::load(shared / name)).first;
    return it->second;
}

std::vector<nlohmann::json> read_lines(const fs::path& path) {
    std::vector<nlohmann::json> lines;
    const std::string text = simnpo::read_file(path);
    for (std::size_t begin = 0; begin < text.size();) {
        const std::size_t end = std::min(text.find('\n', begin), text.size());
        if (end > begin) lines.push_back(nlohmann::json::parse(text.substr(begin, end - begin)));
        begin = end + 1;
    }
    return lines;
}

std::string show(const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace).substr(0, 120);
}

std::string from_hex(const std::string& hex) {
    std::string bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    return bytes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_five_real_tokenizers_load_as_hugging_face_describes_them) {
    BOOST_TEST(tokenizer("gpt-2").vocab_size() == 50257u);
    BOOST_TEST(tokenizer("llama-2").vocab_size() == 32000u);
    BOOST_TEST(tokenizer("phi-3").vocab_size() == 32011u);
    BOOST_TEST(tokenizer("llama-3.1").vocab_size() == 128256u);
    BOOST_TEST(tokenizer("qwen2.5").vocab_size() == 151665u);
    BOOST_TEST(tokenizer("llama-3.1").merge_count() == 280147u);
    BOOST_TEST(tokenizer("llama-2").bos_id().value() == 1);
    BOOST_TEST(tokenizer("llama-3.1").eos_id().value() == 128009);  // <|eot_id|>
    BOOST_TEST(tokenizer("qwen2.5").eos_id().value() == 151645);    // <|im_end|>
    BOOST_TEST(!tokenizer("qwen2.5").bos_id().has_value());
    BOOST_TEST(tokenizer("llama-3.1").special_prefix()[0] == 128000);
    BOOST_TEST(tokenizer("qwen2.5").special_prefix().empty());
    BOOST_TEST(!tokenizer("gpt-2").chat_template().has_value());
    BOOST_TEST(tokenizer("phi-3").chat_template().has_value());
    BOOST_TEST(tokenizer("phi-3").is_special(32007));   // <|end|>
    BOOST_TEST(!tokenizer("phi-3").is_special(2));      // </s> is not special in Phi-3
}

// Every case of the shared folder: ids without and with special tokens, and the decoded text.
BOOST_AUTO_TEST_CASE(every_shared_case_matches_hugging_face) {
    for (const auto& name : names) {
        std::size_t count = 0;
        for (const char* file : {"cases.jsonl", "cases_extra.jsonl"}) {
            for (const auto& c : read_lines(shared / name / file)) {
                const std::string text = c.at("text").get<std::string>();
                BOOST_TEST_CONTEXT(name << " " << file << " " << show(text)) {
                    const Ids ids = c.at("ids").get<Ids>();
                    BOOST_TEST(tokenizer(name).encode(text) == ids, boost::test_tools::per_element());
                    if (c.contains("ids_with_special"))
                        BOOST_TEST(tokenizer(name).encode(text, true) == c.at("ids_with_special").get<Ids>(),
                                   boost::test_tools::per_element());
                    BOOST_TEST(tokenizer(name).decode(ids) == c.at("decoded").get<std::string>());
                }
                ++count;
            }
        }
        BOOST_TEST(count == 335u, name);
    }
}

// This project's own strings: TOFU lines, Unicode edge cases, digit and
// whitespace runs, special-token text, long words, invalid UTF-8 (given as
// bytes, read as the WHATWG decoder reads them).
BOOST_AUTO_TEST_CASE(every_own_case_matches_hugging_face) {
    for (const auto& name : names) {
        const auto cases = read_lines(fixtures / (name + ".jsonl"));
        BOOST_TEST(cases.size() >= 500u, name);
        std::size_t round_trips = 0;
        for (const auto& c : cases) {
            const std::string text = c.contains("text") ? c.at("text").get<std::string>() : from_hex(c.at("bytes_hex"));
            BOOST_TEST_CONTEXT(name << " " << c.value("group", "") << " " << show(text)) {
                const Ids ids = c.at("ids").get<Ids>();
                const Ids with_special = c.at("ids_with_special").get<Ids>();
                BOOST_TEST(tokenizer(name).encode(text) == ids, boost::test_tools::per_element());
                BOOST_TEST(tokenizer(name).encode(text, true) == with_special, boost::test_tools::per_element());
                const std::string decoded = tokenizer(name).decode(ids);
                BOOST_TEST(decoded == c.at("decoded").get<std::string>());
                BOOST_TEST(tokenizer(name).decode(with_special, true) == c.at("decoded_skip_special").get<std::string>());
                // decode(encode(x)) == x exactly where Hugging Face's round-trips.
                if (c.at("roundtrip").get<bool>()) {
                    BOOST_TEST(decoded == simnpo::tokenizer::utf8::replace_invalid(text));
                    ++round_trips;
                }
            }
        }
        BOOST_TEST(round_trips >= 400u, name);
    }
}

// encode_at_most gives the same ids, or nullopt exactly when there are more.
BOOST_AUTO_TEST_CASE(encode_at_most_stops_at_the_limit) {
    const auto& t = tokenizer("llama-3.1");
    const std::string text = "The author in question is Jaime Vasquez, an esteemed LGBTQ+ writer<|eot_id|> from Santiago.";
    const Ids all = t.encode(text);
    BOOST_TEST(t.encode_at_most(text, all.size()).value() == all, boost::test_tools::per_element());
    BOOST_TEST(!t.encode_at_most(text, all.size() - 1).has_value());
    BOOST_TEST(!t.encode_at_most(text, 0).has_value());
    BOOST_TEST(t.encode_at_most("", 0).value().empty());
}

// A tokenizer is written back as the files it was read from, so that a model
// directory carries it unchanged.
BOOST_AUTO_TEST_CASE(saves_the_files_it_read) {
    const TempDir dir;
    tokenizer("phi-3").save(dir.path);
    BOOST_TEST(simnpo::read_file(dir.path / "tokenizer.json") == simnpo::read_file(shared / "phi-3" / "tokenizer.json"));
    BOOST_TEST(simnpo::read_file(dir.path / "tokenizer_config.json") ==
               simnpo::read_file(shared / "phi-3" / "tokenizer_config.json"));
    const auto loaded = Tokenizer::load(dir.path);
    const std::string text = "<|user|>\nWho wrote 'Le Petit Prince'?<|end|>\n<|assistant|>";
    BOOST_TEST(loaded.encode(text, true) == tokenizer("phi-3").encode(text, true), boost::test_tools::per_element());
}

namespace {

// A small byte-level tokenizer.json with `edit` applied, written to `dir`.
std::string small_tokenizer_json(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json vocab = nlohmann::json::object();
    for (unsigned byte = 0; byte < 256; ++byte) vocab[simnpo::tokenizer::utf8::byte_token(byte)] = byte;
    vocab["ab"] = 256;
    nlohmann::json json = {{"version", "1.0"},
                           {"added_tokens", nlohmann::json::array({{{"id", 257}, {"content", "<|end|>"}, {"special", true},
                                                                    {"lstrip", false}, {"rstrip", false},
                                                                    {"single_word", false}, {"normalized", false}}})},
                           {"normalizer", nullptr},
                           {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                           {"post_processor", nullptr},
                           {"decoder", {{"type", "ByteLevel"}}},
                           {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array({"a b"})}}}};
    edit(json);
    return json.dump();
}

}  // namespace

BOOST_AUTO_TEST_CASE(merges_as_strings_or_pairs_give_the_same_tokenizer) {
    const TempDir dir;
    dir.write("tokenizer.json", small_tokenizer_json([](nlohmann::json&) {}));
    const auto strings = Tokenizer::load(dir.path);
    dir.write("tokenizer.json", small_tokenizer_json([](nlohmann::json& j) {
                  j["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a", "b"})});
              }));
    const auto pairs = Tokenizer::load(dir.path);
    BOOST_TEST(strings.encode("abab<|end|>") == (Ids{256, 256, 257}), boost::test_tools::per_element());
    BOOST_TEST(pairs.encode("abab<|end|>") == (Ids{256, 256, 257}), boost::test_tools::per_element());
    BOOST_TEST(!strings.eos_id().has_value());  // no tokenizer_config.json
}

// What this reader does not implement, or cannot make sense of, is a one-line
// error naming the file and the part: never a silent wrong tokenization.
BOOST_AUTO_TEST_CASE(unsupported_or_bad_parts_are_errors_naming_file_and_key) {
    const TempDir dir;
    const std::string file = dir.file("tokenizer.json");
    const auto fails_with = [&](const std::function<void(nlohmann::json&)>& edit, std::vector<std::string> parts) {
        dir.write("tokenizer.json", small_tokenizer_json(edit));
        parts.insert(parts.begin(), file);
        BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has(parts));
    };
    fails_with([](auto& j) { j["normalizer"] = {{"type", "BertNormalizer"}}; },
               {"normalizer", "\"BertNormalizer\" is not supported"});
    fails_with([](auto& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}}; },
               {"normalizer.normalizers[1]", "\"Precompiled\""});
    fails_with([](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, {"pre_tokenizer", "\"Whitespace\""});
    fails_with([](auto& j) { j["decoder"] = {{"type", "WordPiece"}}; }, {"decoder", "\"WordPiece\""});
    fails_with([](auto& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; }, {"post_processor", "\"RobertaProcessing\""});
    fails_with([](auto& j) { j["model"]["type"] = "Unigram"; }, {"model", "\"Unigram\""});
    fails_with([](auto& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout", "not supported"});
    fails_with([](auto& j) { j["truncation"] = {{"max_length", 8}}; }, {"truncation", "not supported"});
    fails_with([](auto& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}}, {"behavior", "Isolated"}}; },
               {"pre_tokenizer.pattern", "does not compile"});
    fails_with([](auto& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}; },
               {"pre_tokenizer.behavior"});
    fails_with([](auto& j) { j["model"]["merges"] = nlohmann::json::array({"a b c"}); }, {"model.merges[0]", "one space"});
    fails_with([](auto& j) { j["model"]["merges"] = nlohmann::json::array({"a b", "ab q"}); },
               {"model.merges[1]", "\"abq\"", "not in the vocabulary"});
    fails_with([](auto& j) { j["model"]["unk_token"] = "<unk>"; }, {"model", "unknown token", "\"<unk>\""});
    fails_with([](auto& j) { j["model"]["vocab"].erase(simnpo::tokenizer::utf8::byte_token(7)); },
               {"model.vocab", "ByteLevel", "byte 7"});
    fails_with([](auto& j) { j["added_tokens"][0]["id"] = 5; }, {"added_tokens[0]", "id 5", "the model's token"});
    fails_with([](auto& j) { j["model"]["vocab"]["<|end|>"] = 258; }, {"added_tokens[0]", "257", "258"});
    fails_with([](auto& j) { j["added_tokens"].push_back(j["added_tokens"][0]); }, {"added_tokens[1]", "given twice"});
    fails_with([](auto& j) {
                   j["post_processor"] = {{"type", "TemplateProcessing"},
                                          {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}}}}}},
                                          {"special_tokens", nlohmann::json::object()}};
               },
               {"post_processor.single[0]", "\"<s>\"", "special_tokens"});

    dir.write("tokenizer.json", small_tokenizer_json([](auto&) {}));
    dir.write("tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error,
                          message_has({dir.file("tokenizer_config.json"), "eos_token", "<|nope|>"}));
    dir.write("tokenizer_config.json", R"({"add_bos_token": true})");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({"add_bos_token", "no bos_token"}));
    dir.write("tokenizer_config.json", R"({"chat_template": 3})");
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({"chat_template"}));
    dir.write("tokenizer_config.json", R"({"chat_template": [{"name": 3, "template": "x"}]})");  // not a type error
    BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path), simnpo::Error, message_has({"chat_template", "\"default\""}));
    dir.write("tokenizer_config.json", R"({"eos_token": {"content": "<|end|>"}, "add_eos_token": true})");
    const auto with_eos = Tokenizer::load(dir.path);
    BOOST_TEST(with_eos.encode("ab", true) == (Ids{256, 257}), boost::test_tools::per_element());
    BOOST_CHECK_EXCEPTION(with_eos.decode(Ids{258}), simnpo::Error, message_has({file, "258", "position 0"}));
}

// Small tokenizer.json documents, one component option each (Split behaviors,
// Metaspace schemes, Digits, normalizers, unk/fuse_unk, byte fallback,
// ignore_merges, subword affixes, added-token flags, templates, decoders),
// with Hugging Face's ids (tests/reference/make_hf_component_fixture.js); and
// documents Hugging Face rejects, which this reader rejects too.
BOOST_AUTO_TEST_CASE(every_component_case_matches_hugging_face) {
    const auto fixture = simnpo::read_json_file(fixtures / "components.json");
    const TempDir dir;
    std::size_t cases = 0;
    for (const auto& entry : fixture.at("tokenizers")) {
        const std::string name = entry.at("name").get<std::string>();
        dir.write("tokenizer.json", entry.at("tokenizer").dump());
        BOOST_TEST_CONTEXT(name << " (" << entry.at("about").get<std::string>() << ")") {
            const auto t = Tokenizer::from_tokenizer_json(dir.path / "tokenizer.json", {});
            for (const auto& c : entry.at("cases")) {
                const std::string text = c.at("text").get<std::string>();
                BOOST_TEST_CONTEXT("text " << show(text)) {
                    const Ids ids = c.at("ids").get<Ids>();
                    const Ids with_special = c.at("ids_with_special").get<Ids>();
                    BOOST_TEST(t.encode(text) == ids, boost::test_tools::per_element());
                    BOOST_TEST(t.encode(text, true) == with_special, boost::test_tools::per_element());
                    BOOST_TEST(t.decode(ids) == c.at("decoded").get<std::string>());
                    BOOST_TEST(t.decode(with_special, true) == c.at("decoded_skip_special").get<std::string>());
                }
                ++cases;
            }
        }
    }
    BOOST_TEST(cases >= 600u);
    for (const auto& entry : fixture.at("rejected")) {
        dir.write("tokenizer.json", entry.at("tokenizer").dump());
        BOOST_TEST_CONTEXT(entry.at("name").get<std::string>()) {
            BOOST_CHECK_EXCEPTION(Tokenizer::from_tokenizer_json(dir.path / "tokenizer.json", {}), simnpo::Error,
                                  message_has({dir.file("tokenizer.json")}));
        }
    }
}

// Chat mode of TextFormat: the prompt is the template rendered with the
// generation prompt, the answer the rest of the rendered conversation, both as
// Hugging Face tokenizes them (tests/reference/make_chat_format_fixture.py
// renders with jinja2 as transformers does; the .js encodes with tokenizers).
BOOST_AUTO_TEST_CASE(chat_mode_gives_the_ids_of_the_rendered_conversation) {
    std::map<std::string, std::size_t> seen;
    std::size_t cut_apart = 0;
    for (const auto& c : simnpo::read_json_file(fixtures / "chat_format.json")) {
        const std::string name = c.at("tokenizer").get<std::string>();
        const auto& t = tokenizer(name);
        const auto format = simnpo::data::TextFormat::chat(
            t, simnpo::tokenizer::ChatTemplate::parse(t.chat_template().value(), name + " chat_template"));
        const std::string question = c.at("question").get<std::string>();
        BOOST_TEST_CONTEXT(name << " " << show(question)) {
            BOOST_TEST(format.prompt(question) == c.at("prompt").get<std::string>());
            const Ids prompt = c.at("prompt_ids").get<Ids>();
            const Ids conversation = c.at("conversation_ids").get<Ids>();
            BOOST_TEST_REQUIRE(conversation.size() > prompt.size());
            const auto example = format.example(question, c.at("answer").get<std::string>());
            BOOST_TEST(example.prompt_ids == prompt, boost::test_tools::per_element());
            if (std::equal(prompt.begin(), prompt.end(), conversation.begin())) {
                BOOST_TEST(example.answer_ids == Ids(conversation.begin() + static_cast<std::ptrdiff_t>(prompt.size()), conversation.end()),
                           boost::test_tools::per_element());
            } else {
                // A token spans the cut (Qwen, an answer opening with whitespace): the rest is tokenised apart.
                const std::string rest = c.at("conversation").get<std::string>().substr(c.at("prompt").get<std::string>().size());
                BOOST_TEST(example.answer_ids == t.encode(rest), boost::test_tools::per_element());
                ++cut_apart;
            }
            BOOST_TEST(format.prompt_ids(question) == prompt, boost::test_tools::per_element());
        }
        ++seen[name];
    }
    BOOST_TEST(seen.size() == 4u);
    BOOST_TEST(cut_apart == 1u);
    // Where generation stops: the end-of-turn token each template puts after an answer.
    const auto end_of_turn = [](const std::string& name) {
        const auto& t = tokenizer(name);
        return simnpo::data::TextFormat::chat(t, simnpo::tokenizer::ChatTemplate::parse(t.chat_template().value(), name))
            .end_of_answer_id();
    };
    BOOST_TEST(end_of_turn("llama-3.1") == 128009);  // <|eot_id|>
    BOOST_TEST(end_of_turn("qwen2.5") == 151645);    // <|im_end|>
    BOOST_TEST(end_of_turn("phi-3") == 32007);       // <|end|>
    BOOST_TEST(end_of_turn("llama-2") == 2);         // </s>
    // The prompt-template mode puts the tokenizer's BOS first and EOS last.
    const simnpo::data::TextFormat plain(tokenizer("llama-3.1"));
    const auto example = plain.example("Who?", "Me.");
    BOOST_TEST(example.prompt_ids.front() == 128000);
    BOOST_TEST(example.answer_ids.back() == 128009);
}

BOOST_AUTO_TEST_SUITE_END()  // test_hf_tokenizer
