#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include "support/temp_dir.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

BOOST_AUTO_TEST_SUITE(test_model_io)

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
using simnpo::model::WriteTensor;
using FloatGpt = simnpo::model::Gpt<simnpo::cpu, float>;
using DoubleGpt = simnpo::model::Gpt<simnpo::cpu, double>;

namespace {


simnpo::model::Config small_config(std::int64_t vocab_size = 11) {
    return simnpo::model::config_from_json({{"vocab_size", vocab_size},
                                            {"n_positions", 8},
                                            {"n_embd", 8},
                                            {"n_layer", 2},
                                            {"n_head", 2},
                                            {"layer_norm_epsilon", 1e-6},
                                            {"architectures", {"GPT2LMHeadModel"}}},
                                           "test config");
}

template <class Scalar = float>
simnpo::model::Gpt<simnpo::cpu, Scalar> random_model(std::uint64_t seed, std::int64_t vocab_size = 11) {
    simnpo::model::Gpt<simnpo::cpu, Scalar> model(small_config(vocab_size));
    simnpo::model::init_weights(model, seed);
    return model;
}

template <class Buffer>
bool bitwise_equal(const Buffer& a, const Buffer& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// The model's tensors as write_safetensors takes them, each name prefixed.
std::vector<WriteTensor> tensors_of(const FloatGpt& model, const std::string& prefix = "") {
    std::vector<WriteTensor> tensors;
    const std::span<const float> params(model.params());
    for (const auto& slot : model.layout().slots())
        tensors.push_back({prefix + slot.name, slot.shape, params.subspan(slot.offset, slot.size)});
    return tensors;
}

// A model directory holding `model`'s config.json and `tensors` as model.safetensors.
void write_model_dir(const fs::path& dir, const FloatGpt& model, const std::vector<WriteTensor>& tensors) {
    write_text(dir / "config.json", simnpo::model::config_to_json(model.config()).dump());
    simnpo::model::write_safetensors(dir / "model.safetensors", tensors);
}

void remove_tensor(std::vector<WriteTensor>& tensors, const std::string& name) {
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == name; });
    BOOST_REQUIRE(it != tensors.end());
    tensors.erase(it);
}

// Loading `dir` throws an Error whose one-line message starts with `file` and contains `part`.
void expect_load_error(const fs::path& dir, const fs::path& file, const std::string& part) {
    BOOST_TEST_CONTEXT("expecting '" << part << "'") {
        BOOST_CHECK_EXCEPTION(simnpo::model::load<FloatGpt>(dir), simnpo::Error, [&](const simnpo::Error& e) {
            const std::string message = e.what();
            BOOST_TEST_MESSAGE(message);
            return message.starts_with(file.string() + ": ") && message.find(part) != std::string::npos &&
                   message.find('\n') == std::string::npos;
        });
    }
}

std::set<std::string> entries(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
    return names;
}

}  // namespace

BOOST_AUTO_TEST_CASE(save_then_load_round_trips_exactly) {
    TempDir dir;
    const auto model = random_model(1);
    simnpo::model::save(model, dir.path);
    BOOST_TEST((entries(dir.path) == std::set<std::string>{"config.json", "model.safetensors"}));

    const FloatGpt loaded = simnpo::model::load<FloatGpt>(dir.path);
    BOOST_TEST(bitwise_equal(loaded.params(), model.params()));
    BOOST_TEST(loaded.config().vocab_size == 11);
    BOOST_TEST(loaded.config().n_positions == 8);
    BOOST_TEST(loaded.config().n_embd == 8);
    BOOST_TEST(loaded.config().n_layer == 2);
    BOOST_TEST(loaded.config().n_head == 2);
    BOOST_TEST(loaded.config().layer_norm_epsilon == 1e-6);
    BOOST_TEST(loaded.config().extra.at("architectures").at(0) == "GPT2LMHeadModel");

    // The file is plain F32 with the layout's names and no prefix or LM head.
    const auto file = simnpo::model::SafetensorsFile::parse(simnpo::read_file(dir.path / "model.safetensors"),
                                                            "model.safetensors");
    BOOST_TEST(file.tensors().size() == model.layout().slots().size());
    for (const auto& tensor : file.tensors()) BOOST_TEST(tensor.dtype == "F32");
    BOOST_TEST(file.find("wte.weight") != nullptr);
    BOOST_TEST(file.find("lm_head.weight") == nullptr);
}

BOOST_AUTO_TEST_CASE(double_models_convert_through_float) {
    TempDir dir;
    const auto model = random_model(2);
    simnpo::model::save(model, dir.path / "float");
    const DoubleGpt widened = simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, double>>(dir.path / "float");
    BOOST_TEST_REQUIRE(widened.params().size() == model.params().size());
    bool exact = true;
    for (std::size_t i = 0; i < model.params().size(); ++i)
        exact &= widened.params()[i] == static_cast<double>(model.params()[i]);
    BOOST_TEST(exact);

    const auto precise = random_model<double>(3);
    simnpo::model::save(precise, dir.path / "double");
    const FloatGpt narrowed = simnpo::model::load<FloatGpt>(dir.path / "double");
    bool rounded = true;
    for (std::size_t i = 0; i < precise.params().size(); ++i)
        rounded &= narrowed.params()[i] == static_cast<float>(precise.params()[i]);
    BOOST_TEST(rounded);
}

BOOST_AUTO_TEST_CASE(hugging_face_layout_is_accepted) {
    TempDir dir;
    const auto model = random_model(4);
    auto tensors = tensors_of(model, "transformer.");
    const std::vector<float> mask(64, 1.0f), masked_bias{-1e4f};
    const std::span<const float> wte(model.params().data() + model.layout().wte(), 11 * 8);
    tensors.push_back({"lm_head.weight", {11, 8}, wte});
    tensors.push_back({"transformer.h.0.attn.bias", {1, 1, 8, 8}, mask});
    tensors.push_back({"transformer.h.0.attn.masked_bias", {}, masked_bias});
    tensors.push_back({"h.1.attn.bias", {1, 1, 8, 8}, mask});
    write_model_dir(dir.path, model, tensors);
    const FloatGpt loaded = simnpo::model::load<FloatGpt>(dir.path);
    BOOST_TEST(bitwise_equal(loaded.params(), model.params()));
}

BOOST_AUTO_TEST_CASE(missing_directory_or_config) {
    TempDir dir;
    expect_load_error(dir.path / "nope", dir.path / "nope", "does not exist");
    expect_load_error(dir.path, dir.path / "config.json", "not found");

    const auto model = random_model(5);
    simnpo::model::save(model, dir.path);
    auto json = simnpo::model::config_to_json(model.config());
    json.erase("n_head");
    write_text(dir.path / "config.json", json.dump());
    expect_load_error(dir.path, dir.path / "config.json", "'n_head'");
    write_text(dir.path / "config.json", "[1, 2, 3]");
    expect_load_error(dir.path, dir.path / "config.json", "expected a JSON object");
    write_text(dir.path / "config.json", "{\"vocab_size\": ");
    expect_load_error(dir.path, dir.path / "config.json", "not valid JSON");
    write_text(dir.path / "config.json", "{\"vocab_size\": 1e999}");
    expect_load_error(dir.path, dir.path / "config.json", "not valid JSON");

    simnpo::model::save(model, dir.path);
    fs::remove(dir.path / "model.safetensors");
    expect_load_error(dir.path, dir.path, "no model.safetensors or model.safetensors.index.json");
}

BOOST_AUTO_TEST_CASE(shape_mismatch_with_config) {
    TempDir dir;
    const auto model = random_model(6, 10);
    simnpo::model::save(model, dir.path);
    // vocab_size and n_positions swapped: as many parameters, in other shapes.
    auto json = simnpo::model::config_to_json(model.config());
    json["vocab_size"] = 8;
    json["n_positions"] = 10;
    write_text(dir.path / "config.json", json.dump());
    expect_load_error(dir.path, dir.path / "model.safetensors",
                      "tensor 'wte.weight' has shape [10,8], expected [8,8] from config.json");
}

BOOST_AUTO_TEST_CASE(missing_and_unknown_tensors) {
    TempDir dir;
    const auto model = random_model(7);
    const fs::path weights = dir.path / "model.safetensors";
    const std::vector<float> mask(64, 1.0f);

    const fs::path config = dir.path / "config.json";
    // The parameter count is compared first, before the model is allocated.
    const std::string counts = "says 1912 parameters, but " + weights.string() + " holds ";
    BOOST_TEST(model.layout().total() == 1912u);
    auto tensors = tensors_of(model);
    remove_tensor(tensors, "h.1.mlp.c_fc.bias");
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, config, counts + "1880");

    // c_attn.bias is a parameter, not a mask buffer: it cannot be skipped.
    tensors = tensors_of(model);
    remove_tensor(tensors, "h.0.attn.c_attn.bias");
    tensors.push_back({"h.0.attn.bias", {1, 1, 8, 8}, mask});
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, config, counts + "1888");

    // An unknown tensor in place of one of as many elements.
    for (const std::string name : {"h.0.attn.extra", "h.x.attn.bias", "h..attn.bias", "h.0.attn.bias.x", "attn.bias",
                                   "transformer.h.0.mlp.bias"}) {
        tensors = tensors_of(model);
        remove_tensor(tensors, "h.0.attn.c_proj.weight");
        tensors.push_back({name, {1, 1, 8, 8}, mask});
        write_model_dir(dir.path, model, tensors);
        expect_load_error(dir.path, weights, "unknown tensor '" + name + "'");
    }
    tensors = tensors_of(model);
    tensors.push_back({"h.0.attn.extra", {1, 1, 8, 8}, mask});
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, config, counts + "1976");

    tensors = tensors_of(model);
    remove_tensor(tensors, "h.0.ln_1.bias");
    tensors.push_back({"transformer.ln_f.bias", {8}, std::span<const float>(mask).first(8)});
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, weights, "'ln_f.bias' appears twice");
}

// Issue 16: config.json's sizes drove the allocation before anything was
// checked (n_layer 100000 beside a small file peaked at 15-19 GB before
// "missing tensor"). Each of these must be refused before allocating.
BOOST_AUTO_TEST_CASE(config_sizes_are_checked_against_the_file_before_allocating) {
    TempDir dir;
    const auto model = random_model(11);
    simnpo::model::save(model, dir.path);
    const fs::path config = dir.path / "config.json";
    const std::string holds = ", but " + (dir.path / "model.safetensors").string() + " holds 1912";
    const auto expect_counts = [&](const char* key, std::int64_t value, const std::string& says) {
        auto json = simnpo::model::config_to_json(model.config());
        json[key] = value;
        write_text(config, json.dump());
        expect_load_error(dir.path, config, "says " + says + " parameters" + holds);
    };
    expect_counts("n_layer", 100000, "87200168");
    expect_counts("n_embd", 8192, "1610997760");
    expect_counts("vocab_size", 1 << 30, "8589936416");

    // Sizes whose parameter count overflows int64 are an error, not undefined behaviour.
    auto json = simnpo::model::config_to_json(model.config());
    json["n_embd"] = std::int64_t{1} << 40;
    json["n_head"] = 1;
    write_text(config, json.dump());
    expect_load_error(dir.path, config, "more parameters than a 64-bit count holds");
}

BOOST_AUTO_TEST_CASE(parameter_count_matches_the_layout) {
    for (const auto& config : {small_config(), small_config(50257)}) {
        BOOST_TEST(config.parameter_count("test") == static_cast<std::int64_t>(simnpo::model::ParamLayout(config).total()));
    }
    auto json = simnpo::model::config_to_json(small_config());
    json["n_layer"] = std::int64_t{1} << 62;
    BOOST_CHECK_EXCEPTION(simnpo::model::config_from_json(json, "big.json"), simnpo::Error, [](const auto& e) {
        return std::string(e.what()).starts_with("big.json: the sizes give more parameters than a 64-bit count holds");
    });
}

// A model that would need more memory than the machine has is refused before
// anything is allocated, naming the config and the bytes (simnpo init).
BOOST_AUTO_TEST_CASE(a_model_larger_than_memory_is_refused) {
    auto json = simnpo::model::config_to_json(small_config());
    json["n_embd"] = 1 << 20;
    json["n_layer"] = 1000;
    const auto config = simnpo::model::config_from_json(json, "huge.json");
    const std::string needs = "huge.json: a model of " + std::to_string(config.parameter_count("huge.json")) +
                              " parameters needs " + std::to_string(config.parameter_count("huge.json") * 16) +
                              " bytes (16 a parameter), more than the ";
    BOOST_CHECK_EXCEPTION(simnpo::model::check_fits_in_memory(config, 16, "huge.json"), simnpo::Error,
                          [&](const auto& e) { return std::string(e.what()).starts_with(needs); });
    BOOST_CHECK_NO_THROW(simnpo::model::check_fits_in_memory(small_config(), 16, "small.json"));
}

// Issue 16: a NaN or Inf weight made every log-probability null and every
// generated answer NUL bytes, with exit status 0.
BOOST_AUTO_TEST_CASE(non_finite_weights_are_refused_naming_the_tensor) {
    TempDir dir;
    const auto model = random_model(12);
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
        auto tensors = tensors_of(model);
        std::vector<float> values(tensors[5].data.begin(), tensors[5].data.end());
        values[3] = bad;
        tensors[5].data = values;
        write_model_dir(dir.path, model, tensors);
        expect_load_error(dir.path, dir.path / "model.safetensors",
                          "tensor '" + tensors[5].name + "' holds a non-finite value");
    }
}

BOOST_AUTO_TEST_CASE(untied_lm_head_is_refused) {
    TempDir dir;
    const auto model = random_model(8);
    const fs::path weights = dir.path / "model.safetensors";
    const std::string message = "lm_head.weight differs from wte.weight (the model's head is tied to its embedding)";
    std::vector<float> head(model.params().data() + model.layout().wte(),
                            model.params().data() + model.layout().wte() + 11 * 8);
    head[37] = std::nextafter(head[37], 1.0f);
    auto tensors = tensors_of(model);
    tensors.push_back({"lm_head.weight", {11, 8}, head});
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, weights, message);

    tensors = tensors_of(model);
    tensors.push_back({"lm_head.weight", {8, 11}, head});
    write_model_dir(dir.path, model, tensors);
    expect_load_error(dir.path, weights, message);
}

BOOST_AUTO_TEST_CASE(saving_over_a_model_replaces_it_cleanly) {
    TempDir dir;
    const fs::path target = dir.path / "nested" / "model";
    simnpo::model::save(random_model(9), target);
    const auto second = random_model(10);
    simnpo::model::save(second, target);
    BOOST_TEST((entries(target) == std::set<std::string>{"config.json", "model.safetensors"}));
    const FloatGpt loaded = simnpo::model::load<FloatGpt>(target);
    BOOST_TEST(bitwise_equal(loaded.params(), second.params()));
}

// Issue 16: a key given twice in config.json was accepted (the last won), and
// n_layer 2^64 - 1 was reported as "got -1".
BOOST_AUTO_TEST_CASE(config_keys_are_read_strictly) {
    TempDir dir;
    const auto model = random_model(13);
    simnpo::model::save(model, dir.path);
    const fs::path config = dir.path / "config.json";
    write_text(config, R"({"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 2, "n_layer": 2, "n_head": 2})");
    expect_load_error(dir.path, config, "duplicate key \"n_layer\"");
    write_text(config, R"({"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 18446744073709551615, "n_head": 2})");
    expect_load_error(dir.path, config, "'n_layer' = 18446744073709551615 does not fit a signed 64-bit integer");
    write_text(config, R"({"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 1e3, "n_head": 2})");
    expect_load_error(dir.path, config, "'n_layer' must be an integer (no decimal point or exponent), got 1000.0");
    write_text(config, R"({"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": "2", "n_head": 2})");
    expect_load_error(dir.path, config, "'n_layer' must be an integer (no decimal point or exponent), got string");
}

BOOST_AUTO_TEST_SUITE_END()  // test_model_io
