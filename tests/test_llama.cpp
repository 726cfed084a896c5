// The Llama family (llama, mistral, qwen2, phi3) against the independent
// float64 PyTorch reference of tests/reference/llama_reference.py: logits,
// token log-probabilities and every parameter gradient, in float and double;
// central differences in double; KV-cache decoding against the full forward;
// load/save round trips (sharded, BF16); config errors.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_llama)

namespace {

using simnpo::testing::message_has;
namespace fs = std::filesystem;

const std::string fixtures = SIMNPO_FIXTURES_DIR "/llama/";
const std::vector<std::string> variants = {"llama2", "llama3", "qwen2", "mistral", "phi3"};

// Whether two arrays of floats are equal bit for bit.
inline bool same_bits(std::span<const float> a, std::span<const float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

template <class Scalar>
using Llama = simnpo::model::Llama<simnpo::cpu, Scalar>;

struct Expected {
    simnpo::model::SafetensorsFile file;
    std::vector<double> tensor(const std::string& name) const {
        const auto* t = file.find(name);
        BOOST_REQUIRE_MESSAGE(t != nullptr, "expected.safetensors lacks " << name);
        std::size_t n = 1;
        for (const auto e : t->shape) n *= static_cast<std::size_t>(e);
        std::vector<double> values(n);
        file.read(*t, std::span<double>(values));
        return values;
    }
};

Expected expected(const std::string& variant) {
    return {simnpo::model::SafetensorsFile::open(fixtures + variant + "/expected.safetensors")};
}

// max |a − b| / max(max |b|, tiny): the error relative to the tensor's scale.
template <class Scalar>
double relative_error(std::span<const Scalar> got, const std::vector<double>& want) {
    BOOST_REQUIRE_EQUAL(got.size(), want.size());
    double error = 0.0, scale = 1e-30;
    for (std::size_t i = 0; i < want.size(); ++i) {
        error = std::max(error, std::abs(static_cast<double>(got[i]) - want[i]));
        scale = std::max(scale, std::abs(want[i]));
    }
    return error / scale;
}

template <class Scalar>
void check_against_reference(const std::string& variant, double tolerance) {
    BOOST_TEST_CONTEXT(variant) {
        auto model = simnpo::model::load<Llama<Scalar>>(fixtures + variant);
        const auto examples = simnpo::data::read_jsonl(fixtures + variant + "/data.jsonl", model.config());
        const auto want = expected(variant);
        model.forward(simnpo::data::make_batch(examples), simnpo::model::Logits::keep);
        const auto logprobs = model.logprobs();
        BOOST_TEST(relative_error<Scalar>(logprobs, want.tensor("logprobs")) < tolerance);
        std::vector<Scalar> logits(model.logits().begin(), model.logits().end());
        BOOST_TEST(relative_error<Scalar>(logits, want.tensor("logits")) < tolerance);
        const auto sums = model.sequence_logprobs();
        BOOST_TEST(relative_error<double>(sums, want.tensor("sequence_logprobs")) < tolerance);

        const auto weights_double = want.tensor("weights");
        const std::vector<Scalar> weights(weights_double.begin(), weights_double.end());
        model.backward(std::span<const Scalar>(weights), simnpo::GradStore::overwrite);
        for (const auto& slot : model.layout().slots()) BOOST_TEST_CONTEXT(slot.name) {
            BOOST_TEST(relative_error<Scalar>(model.grad(slot.name), want.tensor("grad." + slot.name)) < tolerance);
        }
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(double_matches_the_reference) {
    for (const auto& variant : variants) check_against_reference<double>(variant, 1e-9);
}

BOOST_AUTO_TEST_CASE(float_matches_the_reference) {
    for (const auto& variant : variants) check_against_reference<float>(variant, 2e-5);
}

BOOST_AUTO_TEST_CASE(configs_read_as_hugging_face_defines_them) {
    const auto mistral = simnpo::model::read_llama_config(fixtures + "mistral/config.json");
    BOOST_TEST(mistral.head_dim == 12);
    BOOST_TEST(mistral.num_key_value_heads == 1);
    BOOST_TEST((mistral.sliding_window == std::vector<std::int64_t>{4, 4}));
    const auto qwen2 = simnpo::model::read_llama_config(fixtures + "qwen2/config.json");
    BOOST_TEST(qwen2.qkv_bias);
    BOOST_TEST(!qwen2.o_bias);
    BOOST_TEST(qwen2.tie_word_embeddings);
    BOOST_TEST((qwen2.sliding_window == std::vector<std::int64_t>{0, 0}));  // use_sliding_window false
    const auto llama2 = simnpo::model::read_llama_config(fixtures + "llama2/config.json");
    BOOST_TEST(llama2.qkv_bias);
    BOOST_TEST(llama2.o_bias);
    BOOST_TEST(!llama2.mlp_bias);
    BOOST_TEST(llama2.head_dim == 8);
    BOOST_TEST(simnpo::model::read_llama_config(fixtures + "phi3/config.json").fused);

    // llama3's rule, by hand: with theta 10000, D 8 (inv_freq 1, 0.1, 0.01, 0.001), factor 8, low 1,
    // high 4, original 8: wavelengths 62.8 and 6283 > 8/1 are divided by 8; 2π ≈ 6.28 lies between
    // 8/4 and 8/1, so it is interpolated with smooth = (8/2π − 1)/(4 − 1).
    simnpo::model::LlamaConfig c = llama2;
    c.head_dim = 8;
    c.rope_theta = 10000.0;
    c.rope_scaling = {simnpo::model::RopeScaling::Kind::llama3, 8.0, 1.0, 4.0, 8.0};
    const auto inv = c.inverse_frequencies();
    const double smooth8 = (8.0 / (2 * std::numbers::pi) - 1.0) / 3.0;
    BOOST_TEST(inv[0] == (1 - smooth8) / 8 + smooth8, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(inv[1] == 0.1 / 8, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(inv[3] == 0.001 / 8, boost::test_tools::tolerance(1e-12));
    // Between the bands (2 ≤ wavelen ≤ 8): with original 40, wavelen 2π·1 = 6.28 gives smooth (40/6.28 − 1)/3.
    c.rope_scaling.original_max_position_embeddings = 40.0;  // low band 40, high band 10: 6.28 < 10 stays
    BOOST_TEST(c.inverse_frequencies()[0] == 1.0, boost::test_tools::tolerance(1e-15));
    c.rope_scaling.original_max_position_embeddings = 20.0;  // low 20, high 5: 6.28 is in between
    const double smooth = (20.0 / (2 * std::numbers::pi) - 1.0) / 3.0;
    BOOST_TEST(c.inverse_frequencies()[0] == (1 - smooth) / 8 + smooth, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(bad_configs_are_one_line_errors_naming_the_key) {
    const simnpo::testing::TempDir dir;
    const nlohmann::json base = simnpo::parse_json(simnpo::read_file(fixtures + "llama2/config.json"), "config");
    const auto expect = [&](const char* key, const nlohmann::json& value, const std::string& part) {
        nlohmann::json json = base;
        if (value.is_discarded()) json.erase(key);
        else json[key] = value;
        const auto path = dir.write("config.json", json.dump());
        BOOST_TEST_CONTEXT(key) {
            BOOST_CHECK_EXCEPTION(simnpo::model::read_llama_config(path), simnpo::Error,
                                  message_has({std::string(path), part}));
        }
    };
    expect("model_type", "falcon", "'model_type' 'falcon' is not a Llama-family model");
    expect("hidden_act", "gelu", "'hidden_act' 'gelu' is not supported");
    expect("rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "rope type 'yarn' is not supported");
    expect("rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}, "missing 'low_freq_factor'");
    expect("num_key_value_heads", 3, "'num_key_value_heads' (3) does not divide 'num_attention_heads' (4)");
    expect("sliding_window", 16, "'sliding_window' is not a llama key");
    expect("hidden_size", nlohmann::json::value_t::discarded, "missing required key 'hidden_size'");
    expect("head_dim", 7, "'head_dim' (7) must be even");
    expect("tie_word_embeddings", "yes", "'tie_word_embeddings' must be true or false");

    // A directory of an unknown family, and a GPT-2 directory loaded as a Llama.
    nlohmann::json json = base;
    json["model_type"] = "falcon";
    const simnpo::testing::TempDir unknown;
    unknown.write("config.json", json.dump());
    BOOST_CHECK_EXCEPTION(simnpo::model::with_family(unknown.path, [](auto) { return 0; }), simnpo::Error,
                          message_has({"config.json", "'model_type' 'falcon' is not supported"}));
    BOOST_CHECK_EXCEPTION(simnpo::model::load<Llama<float>>(SIMNPO_FIXTURES_DIR "/gpt_tiny"), simnpo::Error,
                          message_has({"config.json", "'model_type' 'gpt2' is not a model of the llama family"}));
}

BOOST_AUTO_TEST_CASE(scoring_equals_the_training_forward_bit_for_bit) {
    for (const auto& variant : variants) BOOST_TEST_CONTEXT(variant) {
        auto model = simnpo::model::load<Llama<float>>(fixtures + variant);
        const auto examples = simnpo::data::read_jsonl(fixtures + variant + "/data.jsonl", model.config());
        const auto batch = simnpo::data::make_batch(examples);
        model.forward(batch);
        const auto scores = std::as_const(model).score(batch);
        BOOST_TEST(same_bits(std::span<const float>(scores.logprobs),
                                              std::span<const float>(model.logprobs())));
        BOOST_TEST(scores.sequence_logprobs() == model.sequence_logprobs());
    }
}

BOOST_AUTO_TEST_CASE(kv_cache_decoding_gives_the_full_forward_logits) {
    for (const auto& variant : variants) BOOST_TEST_CONTEXT(variant) {
        const auto model = simnpo::model::load<Llama<double>>(fixtures + variant);
        // Every position scored: a one-token prompt and the rest as the answer.
        const std::vector<std::int32_t> tokens = {5, 17, 3, 90, 42, 8, 8, 61, 33, 12, 70};
        const simnpo::data::Example example{{tokens.front()}, {tokens.begin() + 1, tokens.end()}};
        const auto scores = model.score(simnpo::data::make_batch(std::span(&example, 1)), simnpo::model::Logits::keep);
        const auto V = static_cast<std::size_t>(model.config().vocab_size);
        std::vector<double> full(scores.logits.begin(), scores.logits.end());
        simnpo::model::Decoder<Llama<double>> decoder(model);
        for (std::size_t t = 0; t + 1 < tokens.size(); ++t) {
            const auto& logits = decoder.feed(tokens[t]);
            double error = 0.0;
            for (std::size_t v = 0; v < V; ++v)
                error = std::max(error, std::abs(logits[static_cast<Eigen::Index>(v)] - full[t * V + v]));
            BOOST_TEST(error < 1e-12, "position " << t << ": " << error);
        }
    }
}

BOOST_AUTO_TEST_CASE(central_differences_in_double_for_every_tensor) {
    // The mistral fixture (window, GQA with one KV head, explicit head_dim) and
    // qwen2 (biases, tied head), perturbed at two entries of every tensor.
    for (const std::string variant : {"mistral", "qwen2", "llama2"}) BOOST_TEST_CONTEXT(variant) {
        auto model = simnpo::model::load<Llama<double>>(fixtures + variant);
        const auto examples = simnpo::data::read_jsonl(fixtures + variant + "/data.jsonl", model.config());
        const auto batch = simnpo::data::make_batch(examples);
        model.forward(batch);
        std::vector<double> weights(static_cast<std::size_t>(model.scored_count()));
        for (std::size_t n = 0; n < weights.size(); ++n) weights[n] = std::sin(1.0 + static_cast<double>(n));
        model.backward(std::span<const double>(weights), simnpo::GradStore::overwrite);
        const auto loss = [&] {
            const auto scores = std::as_const(model).score(batch);
            double sum = 0.0;
            for (std::size_t n = 0; n < weights.size(); ++n) sum += weights[n] * scores.logprobs[n];
            return sum;
        };
        for (const auto& slot : model.layout().slots()) BOOST_TEST_CONTEXT(slot.name) {
            for (const std::size_t i : {std::size_t{0}, slot.size / 2 + 1}) {
                double& p = model.params()[slot.offset + i];
                const double saved = p, h = 1e-5;
                p = saved + h;
                const double up = loss();
                p = saved - h;
                const double down = loss();
                p = saved;
                const double numeric = (up - down) / (2 * h);
                const double analytic = model.grads()[slot.offset + i];
                BOOST_TEST(std::abs(numeric - analytic) <= 1e-7 * std::max(1.0, std::abs(numeric)),
                           "entry " << i << ": numeric " << numeric << ", analytic " << analytic);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(load_save_load_keeps_the_bits_sharded_and_bf16) {
    for (const auto& variant : variants) BOOST_TEST_CONTEXT(variant) {
        const auto model = simnpo::model::load<Llama<float>>(fixtures + variant);
        const simnpo::testing::TempDir dir;
        simnpo::model::save(model, dir.path / "f32");
        const auto f32 = simnpo::model::load<Llama<float>>(dir.path / "f32");
        BOOST_TEST(same_bits(std::span<const float>(f32.params()), std::span<const float>(model.params())));
        BOOST_TEST(fs::exists(dir.path / "f32" / "model.safetensors"));
        // The same config keys come back (save_pretrained's, plus what the reader fills in).
        const auto written = simnpo::parse_json(simnpo::read_file(dir.path / "f32" / "config.json"), "config");
        BOOST_TEST(written["model_type"] == model.config().model_type);

        // Sharded (about four shards) BF16: the values come back rounded to BF16, and a
        // second BF16 round trip changes no bit.
        const std::uint64_t shard = model.params().size() * 2 / 4;
        simnpo::model::save(model, dir.path / "bf16", {.dtype = "BF16", .max_shard_bytes = shard});
        BOOST_TEST(fs::exists(dir.path / "bf16" / "model.safetensors.index.json"));
        BOOST_TEST(!fs::exists(dir.path / "bf16" / "model.safetensors"));
        const auto bf16 = simnpo::model::load<Llama<float>>(dir.path / "bf16");
        for (std::size_t i = 0; i < model.params().size(); ++i) {
            const float value = model.params()[i], rounded = bf16.params()[i];
            BOOST_REQUIRE(std::abs(value - rounded) <= std::abs(value) * (1.0f / 256));
        }
        simnpo::model::save(bf16, dir.path / "again", {.dtype = "BF16", .max_shard_bytes = shard});
        const auto again = simnpo::model::load<Llama<float>>(dir.path / "again");
        BOOST_TEST(same_bits(std::span<const float>(again.params()), std::span<const float>(bf16.params())));
    }
}

BOOST_AUTO_TEST_CASE(bad_checkpoints_are_errors_naming_the_file) {
    const simnpo::testing::TempDir dir;
    const auto model = simnpo::model::load<Llama<float>>(fixtures + "mistral");
    // A shape that contradicts the config.
    simnpo::model::save(model, dir.path / "m");
    auto json = simnpo::parse_json(simnpo::read_file(dir.path / "m" / "config.json"), "config");
    json["head_dim"] = 8;
    simnpo::write_file_atomic(dir.path / "m" / "config.json", json.dump());
    BOOST_CHECK_EXCEPTION(simnpo::model::load<Llama<float>>(dir.path / "m"), simnpo::Error,
                          message_has({"config.json", "parameters, but", "holds"}));
    json["head_dim"] = 12;
    json["num_key_value_heads"] = 2;
    json["num_attention_heads"] = 2;
    json["intermediate_size"] = 48;  // the same parameter count (o_proj loses 768, the MLP gains them), other shapes
    simnpo::write_file_atomic(dir.path / "m" / "config.json", json.dump());
    BOOST_CHECK_EXCEPTION(simnpo::model::load<Llama<float>>(dir.path / "m"), simnpo::Error,
                          message_has({"model.safetensors", "has shape", "expected"}));
}

BOOST_AUTO_TEST_SUITE_END()  // test_llama
