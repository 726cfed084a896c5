#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_message.hpp"

BOOST_AUTO_TEST_SUITE(test_chat_template)

namespace {

using simnpo::testing::message_has;
using simnpo::tokenizer::ChatMessage;
using simnpo::tokenizer::ChatRenderOptions;
using simnpo::tokenizer::ChatTemplate;
namespace fs = std::filesystem;

const fs::path tokenizers_dir = fs::path(SIMNPO_SHARED_DATA_DIR) / "hf-tokenizers";

// The cases that tests/reference/make_chat_template_fixture.py wrote with Python's jinja2.
const nlohmann::json& reference_cases() {
    static const nlohmann::json cases =
        simnpo::read_json_file(fs::path(SIMNPO_FIXTURES_DIR) / "chat_templates.json").at("cases");
    return cases;
}

// The chat template of a real tokenizer (shared/data/hf-tokenizers/<folder>/tokenizer_config.json).
const ChatTemplate& real_template(const std::string& folder) {
    static std::map<std::string, ChatTemplate> cache;
    auto found = cache.find(folder);
    if (found == cache.end()) {
        const fs::path path = tokenizers_dir / folder / "tokenizer_config.json";
        const auto config = simnpo::read_json_file(path);
        found = cache.emplace(folder, ChatTemplate::parse(config.at("chat_template").get<std::string>(), path.string()))
                    .first;
    }
    return found->second;
}

std::vector<ChatMessage> messages_of(const nlohmann::json& messages) {
    std::vector<ChatMessage> out;
    for (const auto& m : messages) out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    return out;
}

ChatRenderOptions options_of(const nlohmann::json& c) {
    ChatRenderOptions options;
    options.bos_token = c.at("bos_token").get<std::string>();
    options.eos_token = c.at("eos_token").get<std::string>();
    options.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
    return options;
}

std::string render(std::string_view source, std::vector<ChatMessage> messages = {{"user", "hi"}},
                   ChatRenderOptions options = {}) {
    return ChatTemplate::parse(source, "t.jinja").render(messages, options);
}

void check_case(const nlohmann::json& c) {
    const std::string name = c.at("name").get<std::string>();
    BOOST_TEST_CONTEXT("case " << name) {
        const auto messages = messages_of(c.at("messages"));
        const auto options = options_of(c);
        std::optional<ChatTemplate> inline_template;
        if (c.contains("source")) inline_template = ChatTemplate::parse(c.at("source").get<std::string>(), "inline");
        const ChatTemplate& t = inline_template ? *inline_template : real_template(c.at("template").get<std::string>());
        if (c.contains("expected")) {
            std::string got;
            BOOST_REQUIRE_NO_THROW(got = t.render(messages, options));
            BOOST_TEST(got == c.at("expected").get<std::string>());
        } else if (c.at("error") == "raised") {
            // raise_exception('msg') -> "WHERE: msg", the message exactly
            const std::string where = inline_template ? "inline" : (tokenizers_dir / c.at("template").get<std::string>() /
                                                                    "tokenizer_config.json").string();
            const std::string expected = where + ": " + c.at("message").get<std::string>();
            try {
                t.render(messages, options);
                BOOST_ERROR("no error; jinja2 raised: " << expected);
            } catch (const simnpo::Error& error) {
                BOOST_TEST(std::string(error.what()) == expected);
            }
        } else {
            BOOST_TEST_MESSAGE("jinja2: " << c.at("message").get<std::string>());
            BOOST_CHECK_THROW(t.render(messages, options), simnpo::Error);
        }
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_four_real_templates_parse) {
    for (const char* folder : {"llama-2", "llama-3.1", "qwen2.5", "phi-3"}) {
        BOOST_TEST_CONTEXT(folder) {
            BOOST_REQUIRE_NO_THROW(real_template(folder));
            const auto config = simnpo::read_json_file(tokenizers_dir / folder / "tokenizer_config.json");
            BOOST_TEST(real_template(folder).source() == config.at("chat_template").get<std::string>());
        }
    }
}

BOOST_AUTO_TEST_CASE(real_templates_match_jinja2) {
    std::size_t count = 0;
    for (const auto& c : reference_cases())
        if (c.contains("template")) {
            check_case(c);
            ++count;
        }
    BOOST_TEST(count >= 100u);
}

BOOST_AUTO_TEST_CASE(hand_written_templates_match_jinja2) {
    std::size_t count = 0;
    for (const auto& c : reference_cases())
        if (c.contains("source")) {
            check_case(c);
            ++count;
        }
    BOOST_TEST(count >= 40u);
}

BOOST_AUTO_TEST_CASE(unsupported_constructs_fail_at_parse_time_with_the_line) {
    BOOST_CHECK_EXCEPTION(render("line one\n{{ messages | wordcount }}"), simnpo::Error,
                          message_has({"t.jinja:2:", "the filter 'wordcount' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("\n\n{% macro m() %}x{% endmacro %}"), simnpo::Error,
                          message_has({"t.jinja:3:", "the statement 'macro' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{% include 'x.jinja' %}"), simnpo::Error,
                          message_has({"t.jinja:1:", "the statement 'include' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{% raw %}{{ x }}{% endraw %}"), simnpo::Error,
                          message_has({"t.jinja:1:", "the statement 'raw' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{% generation %}x{% endgeneration %}"), simnpo::Error,
                          message_has({"the statement 'generation' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ x is callable }}"), simnpo::Error,
                          message_has({"t.jinja:1:", "the test 'callable' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ messages | select('foo') | list }}"), simnpo::Error,
                          message_has({"the test 'foo' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ 'a'.title() }}"), simnpo::Error,
                          message_has({"the method 'title' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ strftime_now('%Y') }}"), simnpo::Error,
                          message_has({"the function 'strftime_now' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ 1.5 }}"), simnpo::Error, message_has({"float literals are not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ 4 / 2 }}"), simnpo::Error, message_has({"the operator '/' is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{% for m in messages recursive %}{% endfor %}"), simnpo::Error,
                          message_has({"recursive loops are not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ messages | tojson(nope=1) }}"), simnpo::Error,
                          message_has({"the filter 'tojson' has no argument 'nope'"}));
    BOOST_CHECK_EXCEPTION(render("{% break %}"), simnpo::Error, message_has({"'break' outside a loop"}));
}

BOOST_AUTO_TEST_CASE(syntax_errors_name_the_line) {
    BOOST_CHECK_EXCEPTION(render("a\n{% for m in messages %}\n{{ m.content }}\n"), simnpo::Error,
                          message_has({"t.jinja:", "the 'for' block opened on line 2 is not closed", "endfor"}));
    BOOST_CHECK_EXCEPTION(render("{% if true %}x{% else %}y"), simnpo::Error,
                          message_has({"the 'if' block opened on line 1 is not closed"}));
    BOOST_CHECK_EXCEPTION(render("x\n{{ messages[0 }}"), simnpo::Error, message_has({"t.jinja:2:"}));
    BOOST_CHECK_EXCEPTION(render("x\n\n{{ 'abc }}"), simnpo::Error,
                          message_has({"t.jinja:3:", "the string literal is not closed"}));
    BOOST_CHECK_EXCEPTION(render("{# never closed"), simnpo::Error,
                          message_has({"t.jinja:1:", "the comment opened here is not closed"}));
    BOOST_CHECK_EXCEPTION(render("ok\n{{ 1 + }}"), simnpo::Error, message_has({"t.jinja:2:"}));
    BOOST_CHECK_EXCEPTION(render("{% endif %}"), simnpo::Error, message_has({"t.jinja:1:", "unexpected 'endif'"}));
    BOOST_CHECK_EXCEPTION(render("{{ x }"), simnpo::Error, message_has({"t.jinja:1:"}));
    BOOST_CHECK_EXCEPTION(render("{{ 'a' @ 'b' }}"), simnpo::Error, message_has({"unexpected character '@'"}));
}

BOOST_AUTO_TEST_CASE(raise_exception_gives_the_message) {
    BOOST_CHECK_EXCEPTION(render("{{ raise_exception('Roles must alternate!') }}"), simnpo::Error,
                          [](const simnpo::Error& e) { return std::string(e.what()) == "t.jinja: Roles must alternate!"; });
    BOOST_CHECK_EXCEPTION(
        render("{% if messages | length > 1 %}{{ raise_exception('too many: ' ~ messages | length) }}{% endif %}",
               {{"user", "a"}, {"assistant", "b"}}),
        simnpo::Error, [](const simnpo::Error& e) { return std::string(e.what()) == "t.jinja: too many: 2"; });
    // Llama 2's role alternation
    const std::vector<ChatMessage> two_users = {{"user", "a"}, {"user", "b"}};
    BOOST_CHECK_EXCEPTION(real_template("llama-2").render(two_users, {"<s>", "</s>", false}), simnpo::Error,
                          message_has({"Conversation roles must alternate user/assistant/user/assistant/..."}));
}

BOOST_AUTO_TEST_CASE(runtime_errors_name_the_line) {
    BOOST_CHECK_EXCEPTION(render("a\nb\n{{ nothing.attr }}"), simnpo::Error,
                          message_has({"t.jinja:3:", "'nothing' is undefined"}));
    BOOST_CHECK_EXCEPTION(render("{% set x = 1 %}\n{% set x.y = 2 %}"), simnpo::Error,
                          message_has({"t.jinja:2:", "cannot assign attribute on non-namespace object"}));
    BOOST_CHECK_EXCEPTION(render("{{ 'a' + 1 }}"), simnpo::Error, message_has({"unsupported operand"}));
    BOOST_CHECK_EXCEPTION(render("{% for m in messages %}{{ loop.cycle }}{% endfor %}"), simnpo::Error,
                          message_has({"loop.cycle is not supported"}));
    BOOST_CHECK_EXCEPTION(render("{{ 'abc'.strip }}"), simnpo::Error,
                          message_has({"the attribute 'strip' of a str is only supported as a method call"}));
    BOOST_CHECK_EXCEPTION(render("{{ '%s' % 1 }}"), simnpo::Error,
                          message_has({"string formatting with '%' is not supported"}));
}

BOOST_AUTO_TEST_CASE(a_template_is_reusable_and_copyable) {
    const ChatTemplate t = ChatTemplate::parse("{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}", "t");
    const ChatTemplate copy = t;
    const std::vector<ChatMessage> one = {{"user", "x"}};
    const std::vector<ChatMessage> two = {{"user", "x"}, {"assistant", "y"}};
    BOOST_TEST(t.render(one, {}) == "user:x;");
    BOOST_TEST(copy.render(two, {}) == "user:x;assistant:y;");
    BOOST_TEST(t.render(one, {}) == "user:x;");
    BOOST_TEST(copy.source() == t.source());
}

BOOST_AUTO_TEST_SUITE_END()  // test_chat_template
