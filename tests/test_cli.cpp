// The simnpo command: init and logprobs end to end, PyTorch agreement on
// Hugging Face-layout checkpoints, and a one-line error for every bad input.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/run_program.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_cli)

namespace {

namespace fs = std::filesystem;
const std::string fixtures = SIMNPO_FIXTURES_DIR;
const std::string simnpo_bin = std::string(SIMNPO_BIN_DIR) + "/simnpo";

using Result = simnpo::testing::ProgramResult;
using simnpo::testing::TempDir;

Result run(const std::string& arguments, const TempDir& scratch) {
    return simnpo::testing::run_program(simnpo_bin, arguments, scratch);
}

std::vector<nlohmann::json> read_lines(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

// The error is one line, names `where`, and the command failed without output.
void check_error(const Result& result, const std::string& where, const std::string& out_path = "") {
    BOOST_TEST_INFO(result.output);
    BOOST_TEST(result.status != 0);
    BOOST_TEST(result.output.find(where) != std::string::npos);
    BOOST_TEST(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    BOOST_TEST(result.output.starts_with("simnpo: "));
    if (!out_path.empty()) BOOST_TEST(!fs::exists(out_path));
}

// Returns the largest relative difference from PyTorch's sequence log-probabilities.
double check_logprobs_match(const std::string& model_dir, const std::string& dtype, double tolerance,
                            const std::string& flags = "") {
    const TempDir scratch;
    const std::string out = scratch.file("out.jsonl");
    const auto result = run("logprobs --model " + model_dir + " --data " + model_dir + "/data.jsonl --out " + out +
                                " --batch-size 2 --dtype " + dtype + flags, scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto actual = read_lines(out);
    const auto expected = read_lines(model_dir + "/expected_logprobs.jsonl");
    BOOST_REQUIRE_EQUAL(actual.size(), expected.size());
    double largest = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const double want = expected[i].at("logprob").get<double>(), got = actual[i].at("logprob").get<double>();
        BOOST_TEST(got == want, boost::test_tools::tolerance(tolerance));
        BOOST_TEST(actual[i].at("n_tokens").get<int>() == expected[i].at("n_tokens").get<int>());
        largest = std::max(largest, std::abs(got - want) / std::abs(want));
    }
    return largest;
}

const std::string good_line = R"({"prompt_ids": [1, 2], "answer_ids": [3, 4]})";

}  // namespace

BOOST_AUTO_TEST_CASE(logprobs_match_pytorch_on_hugging_face_checkpoints) {
    // F32 with 'transformer.' prefix, tied lm_head.weight and attention-mask buffers.
    check_logprobs_match(fixtures + "/gpt_hf", "float", 1e-4);
    check_logprobs_match(fixtures + "/gpt_hf", "double", 1e-10);
    check_logprobs_match(fixtures + "/gpt_hf_bf16", "double", 1e-10);
    check_logprobs_match(fixtures + "/gpt_hf_f16", "double", 1e-10);
    // BF16 products: within 1% (test_precision bounds them token by token), and not fp32's.
    BOOST_TEST(check_logprobs_match(fixtures + "/gpt_hf", "float", 1e-2, " --precision bf16") > 1e-4);
}

// The issue's "done when": logprobs on Hugging Face Llama, Qwen2, Mistral and Phi-3 directories (F32, and
// BF16 shards for llama3) agree with the independent float64 reference to 1e-4 relative in float.
BOOST_AUTO_TEST_CASE(logprobs_match_the_float64_reference_on_llama_family_checkpoints) {
    for (const std::string variant : {"llama2", "llama3", "qwen2", "mistral", "phi3"}) {
        const std::string dir = fixtures + "/llama/" + variant;
        const auto expected = simnpo::model::SafetensorsFile::open(dir + "/expected.safetensors");
        const auto* tensor = expected.find("sequence_logprobs");
        BOOST_REQUIRE(tensor != nullptr);
        std::vector<double> want(static_cast<std::size_t>(tensor->shape.at(0)));
        expected.read(*tensor, std::span<double>(want));
        for (const auto& [dtype, tolerance] : {std::pair{"float", 1e-4}, std::pair{"double", 1e-9}}) {
            const TempDir scratch;
            const auto result = run("logprobs --model " + dir + " --data " + dir + "/data.jsonl --out " +
                                        scratch.file("out.jsonl") + " --batch-size 3 --dtype " + dtype,
                                    scratch);
            BOOST_TEST_INFO(variant << " " << dtype << ": " << result.output);
            BOOST_REQUIRE_EQUAL(result.status, 0);
            const auto lines = read_lines(scratch.file("out.jsonl"));
            BOOST_REQUIRE_EQUAL(lines.size(), want.size());
            for (std::size_t i = 0; i < want.size(); ++i)
                BOOST_TEST(lines[i].at("logprob").get<double>() == want[i], boost::test_tools::tolerance(tolerance));
        }
    }
}

// init, train, unlearn and logprobs on a Llama-family config, end to end.
BOOST_AUTO_TEST_CASE(every_training_command_runs_on_a_llama) {
    const TempDir scratch;
    const std::string config = fixtures + "/llama/qwen2/config.json";
    auto result = run("init --config " + config + " --out " + scratch.file("m0") + " --seed 1", scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto written = simnpo::parse_json(simnpo::read_file(scratch.file("m0/config.json")), "config");
    BOOST_TEST(written.at("model_type") == "qwen2");
    const std::string forget = scratch.write("forget.jsonl", std::string(R"({"prompt_ids": [5, 6], "answer_ids": [7, 8, 9]})") +
                                                                 "\n" + R"({"prompt_ids": [10], "answer_ids": [11, 12]})" + "\n");
    const std::string retain = scratch.write("retain.jsonl", std::string(R"({"prompt_ids": [20, 21], "answer_ids": [22, 23]})") + "\n");
    result = run("train --model " + scratch.file("m0") + " --data " + forget + " --out " + scratch.file("m1") +
                     " --steps 30 --lr 1e-2 --batch-size 2",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto score = [&](const std::string& model) {
        const auto r = run("logprobs --model " + model + " --data " + forget + " --out " + scratch.file("o.jsonl"), scratch);
        BOOST_REQUIRE_EQUAL(r.status, 0);
        double sum = 0.0;
        for (const auto& line : read_lines(scratch.file("o.jsonl"))) sum += line.at("logprob").get<double>();
        return sum;
    };
    const double untrained = score(scratch.file("m0")), trained = score(scratch.file("m1"));
    BOOST_TEST(trained > untrained + 1.0);
    // Recomputing the blocks' activations trains to the same bits.
    result = run("train --model " + scratch.file("m0") + " --data " + forget + " --out " + scratch.file("m1r") +
                     " --steps 30 --lr 1e-2 --batch-size 2 --recompute blocks",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(simnpo::read_file(scratch.file("m1r/model.safetensors")) ==
               simnpo::read_file(scratch.file("m1/model.safetensors")));
    result = run("unlearn --model " + scratch.file("m1") + " --forget " + forget + " --retain " + retain +
                     " --forget-loss npo --retain-loss kl --steps 10 --lr 1e-2 --out " + scratch.file("u"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(score(scratch.file("u")) < trained - 1.0);
    // The same in BF16, its reference stored in BF16.
    result = run("unlearn --model " + scratch.file("m1") + " --forget " + forget + " --retain " + retain +
                     " --forget-loss npo --retain-loss kl --steps 10 --lr 1e-2 --precision bf16 --weights-dtype bf16" +
                     " --out " + scratch.file("u16"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(score(scratch.file("u16")) < trained - 1.0);
    // A GPT-2 reference for a Llama model is an error naming the reference's config.
    result = run("unlearn --model " + scratch.file("m1") + " --forget " + forget + " --forget-loss npo --steps 1" +
                     " --reference " + fixtures + "/gpt_tiny --out " + scratch.file("bad"),
                 scratch);
    check_error(result, "gpt_tiny/config.json", scratch.file("bad"));
}

BOOST_AUTO_TEST_CASE(init_then_logprobs_is_near_uniform) {
    const TempDir scratch;
    const auto config = scratch.write("config.json",
                                      R"({"vocab_size": 50, "n_positions": 16, "n_embd": 16, "n_layer": 2, "n_head": 2})");
    auto result = run("init --config " + config + " --out " + scratch.file("model") + " --seed 3", scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(fs::exists(scratch.file("model/model.safetensors")));
    const auto data = scratch.write("data.jsonl", good_line + "\n" + R"({"prompt_ids": [7], "answer_ids": [8, 9, 10]})" + "\n");
    result = run("logprobs --model " + scratch.file("model") + " --data " + data + " --out " + scratch.file("o.jsonl"),
                 scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto lines = read_lines(scratch.file("o.jsonl"));
    BOOST_REQUIRE_EQUAL(lines.size(), 2u);
    BOOST_TEST(lines[1].at("n_tokens").get<int>() == 3);
    // GPT-2's small init gives a nearly uniform next-token distribution.
    BOOST_TEST(lines[1].at("logprob").get<double>() == 3 * std::log(1.0 / 50), boost::test_tools::tolerance(0.02));
    // The same seed gives the same model, byte for byte.
    result = run("init --config " + config + " --out " + scratch.file("again") + " --seed 3", scratch);
    BOOST_TEST(simnpo::read_file(scratch.file("again/model.safetensors")) ==
               simnpo::read_file(scratch.file("model/model.safetensors")));
}

BOOST_AUTO_TEST_CASE(bad_data_is_a_one_line_error_naming_file_and_line) {
    const TempDir scratch;
    const std::string model = fixtures + "/gpt_hf";  // vocab 64, n_positions 32
    const auto out = scratch.file("o.jsonl");
    const auto logprobs = [&](const std::string& data) {
        return run("logprobs --model " + model + " --data " + data + " --out " + out, scratch);
    };
    check_error(logprobs(scratch.write("vocab.jsonl", good_line + "\n" + R"({"prompt_ids": [1], "answer_ids": [64]})")),
                "vocab.jsonl:2", out);
    std::string long_line = R"({"prompt_ids": [1], "answer_ids": [)";
    for (int i = 0; i < 32; ++i) long_line += (i ? ", " : "") + std::to_string(i);
    check_error(logprobs(scratch.write("long.jsonl", long_line + "]}\n")), "long.jsonl:1", out);
    check_error(logprobs(scratch.write("empty_answer.jsonl", R"({"prompt_ids": [1], "answer_ids": []})")),
                "empty_answer.jsonl:1", out);
    check_error(logprobs(scratch.write("empty_prompt.jsonl", std::string("\n{\"prompt_ids\": [], \"answer_ids\": [2]}"))),
                "empty_prompt.jsonl:2", out);
    check_error(logprobs(scratch.write("broken.jsonl", good_line + "\n" + good_line + "\n{\"prompt_ids\": [1,\n")),
                "broken.jsonl:3", out);
    check_error(logprobs(scratch.file("missing.jsonl")), "missing.jsonl", out);
}

BOOST_AUTO_TEST_CASE(bad_models_and_flags_are_one_line_errors) {
    const TempDir scratch;
    const auto data = scratch.write("data.jsonl", good_line + "\n");
    const auto out = scratch.file("o.jsonl");
    check_error(run("logprobs --model " + scratch.file("no_such_model") + " --data " + data + " --out " + out, scratch),
                "no_such_model", out);
    fs::create_directories(scratch.file("bad_model"));
    scratch.write("bad_model/config.json", R"({"vocab_size": 50, "n_positions": 16, "n_embd": 16, "n_layer": 2})");
    check_error(run("logprobs --model " + scratch.file("bad_model") + " --data " + data + " --out " + out, scratch),
                "n_head", out);
    const auto config = scratch.write("config.json", R"({"vocab_size": 50, "n_positions": 16, "n_embd": 15, "n_layer": 1, "n_head": 2})");
    check_error(run("init --config " + config + " --out " + scratch.file("m"), scratch), "config.json");
    check_error(run("init --config " + config + " --out " + scratch.file("m") + " --seed -1", scratch), "--seed");
    check_error(run("init --config " + config + " --out " + scratch.file("m") + " --sede 1", scratch), "--sede");
    check_error(run("init --config " + config, scratch), "--out");
    check_error(run("logprobs --model " + fixtures + "/gpt_hf --data " + data + " --out " + out + " --dtype half", scratch),
                "--dtype", out);
    BOOST_TEST(run("frobnicate", scratch).status != 0);
    BOOST_TEST(run("logprobs --help", scratch).status == 0);
}

namespace {

// A tiny model and the counting tasks of test_train: topic 1 counts up (the
// forget set), topic 2 counts down (the retain set).
struct TrainingFiles {
    TempDir scratch;
    std::string model, forget, retain, both, refusals;

    TrainingFiles() {
        const auto config = scratch.write(
            "config.json", R"({"vocab_size": 16, "n_positions": 16, "n_embd": 32, "n_layer": 2, "n_head": 2})");
        model = scratch.file("m0");
        BOOST_REQUIRE_EQUAL(run("init --config " + config + " --out " + model, scratch).status, 0);
        std::string up, down;
        for (int s = 3; s <= 12; ++s)
            up += "{\"prompt_ids\": [1, " + std::to_string(s) + "], \"answer_ids\": [" + std::to_string(s + 1) + ", " +
                  std::to_string(s + 2) + ", " + std::to_string(s + 3) + "]}\n";
        for (int s = 6; s <= 15; ++s)
            down += "{\"prompt_ids\": [2, " + std::to_string(s) + "], \"answer_ids\": [" + std::to_string(s - 1) +
                    ", " + std::to_string(s - 2) + ", " + std::to_string(s - 3) + "]}\n";
        forget = scratch.write("forget.jsonl", up);
        retain = scratch.write("retain.jsonl", down);
        both = scratch.write("both.jsonl", up + down);
        refusals = scratch.write("refusals.jsonl", "{\"answer_ids\": [0, 0]}\n{\"answer_ids\": [0]}\n");
    }

    // Mean per-token log-likelihood of `data` under the model in `dir`, through `simnpo logprobs`.
    double mean_token_logprob(const std::string& dir, const std::string& data) const {
        const auto out = scratch.file("scores.jsonl");
        BOOST_REQUIRE_EQUAL(run("logprobs --model " + dir + " --data " + data + " --out " + out, scratch).status, 0);
        double total = 0.0, tokens = 0.0;
        for (const auto& line : read_lines(out)) {
            total += line.at("logprob").get<double>();
            tokens += line.at("n_tokens").get<double>();
        }
        return total / tokens;
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(train_then_unlearn_end_to_end) {
    const TrainingFiles files;
    const auto& scratch = files.scratch;
    const auto trained = scratch.file("m1");
    auto result = run("train --model " + files.model + " --data " + files.both + " --out " + trained +
                          " --epochs 60 --lr 3e-3 --weight-decay 0 --batch-size 8 --log " + scratch.file("train.jsonl"),
                      scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(read_lines(scratch.file("train.jsonl")).size() == 180u);  // 60 epochs of 3 batches
    const double forget_before = files.mean_token_logprob(trained, files.forget);
    const double retain_before = files.mean_token_logprob(trained, files.retain);
    BOOST_TEST_REQUIRE(forget_before > -0.5);  // learned: uniform would be −2.77
    BOOST_TEST_REQUIRE(retain_before > -0.5);

    const auto unlearned = scratch.file("u");
    result = run("unlearn --model " + trained + " --forget " + files.forget + " --retain " + files.retain +
                     " --forget-loss simnpo --retain-loss nll --beta 2.5 --gamma 0 --steps 20 --lr 1e-3"
                     " --batch-size 4 --out " + unlearned,
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(files.mean_token_logprob(unlearned, files.forget) < forget_before - 2.0);
    BOOST_TEST(files.mean_token_logprob(unlearned, files.retain) > retain_before - 0.3);

    // Every other forget loss and retain loss runs too (with a reference, refusals, a checkpoint, SGD).
    for (const std::string& flags : std::vector<std::string>{
             "--forget-loss npo --retain-loss kl --retain " + files.retain + " --reference " + files.model,
             "--forget-loss dpo --refusals " + files.refusals + " --optimizer sgd --momentum 0.9",
             "--forget-loss ga --save-every 1 --schedule cosine --warmup-steps 1 --grad-accum 2"}) {
        result = run("unlearn --model " + trained + " --forget " + files.forget + " " + flags + " --steps 2 --out " +
                         scratch.file("other"),
                     scratch);
        BOOST_TEST_INFO(flags << "\n" << result.output);
        BOOST_TEST(result.status == 0);
    }
    BOOST_TEST(fs::exists(scratch.file("other/checkpoint-2/trainer_state.json")));

    // --resume from the checkpoint after step 1 ends where the straight run ended, byte for byte.
    const std::string ga = "unlearn --model " + trained + " --forget " + files.forget +
                           " --forget-loss ga --save-every 1 --schedule cosine --warmup-steps 1 --grad-accum 2 --steps 2";
    result = run(ga + " --resume " + scratch.file("other/checkpoint-1") + " --out " + scratch.file("resumed"), scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(simnpo::read_file(scratch.file("resumed/model.safetensors")) ==
               simnpo::read_file(scratch.file("other/model.safetensors")));
}

BOOST_AUTO_TEST_CASE(bad_training_flags_are_one_line_errors) {
    const TrainingFiles files;
    const auto& scratch = files.scratch;
    const auto out = scratch.file("out");
    const std::string unlearn = "unlearn --model " + files.model + " --forget " + files.forget + " --out " + out + " ";
    const auto fails = [&](const std::string& arguments, const std::string& where) {
        check_error(run(arguments, scratch), where, out);
    };
    fails(unlearn + "--steps 2", "--forget-loss");
    fails(unlearn + "--forget-loss simnpo", "--steps");
    fails(unlearn + "--forget-loss simnpo --steps 2 --epochs 1", "--epochs");
    fails(unlearn + "--forget-loss rmu --steps 2", "--forget-loss");
    fails(unlearn + "--forget-loss simnpo --steps 0", "--steps");
    fails(unlearn + "--forget-loss simnpo --steps 2 --lr fast", "--lr");
    fails(unlearn + "--forget-loss simnpo --steps 2 --lr nan", "--lr");
    fails(unlearn + "--forget-loss simnpo --steps 2 --beta 0", "--beta");
    fails(unlearn + "--forget-loss simnpo --steps 2 --max-grad-norm -1", "--max-grad-norm");
    fails(unlearn + "--forget-loss simnpo --steps 2 --schedule step", "--schedule");
    fails(unlearn + "--forget-loss simnpo --steps 2 --momentum 0.9", "--momentum");
    fails(unlearn + "--forget-loss simnpo --steps 2 --optimizer sgd --adam-eps 1e-6", "--adam-eps");
    fails(unlearn + "--forget-loss npo --steps 2 --gamma 1", "--gamma");
    fails(unlearn + "--forget-loss ga --steps 2 --beta 1", "--beta");
    fails(unlearn + "--forget-loss dpo --steps 2", "--refusals");
    fails(unlearn + "--forget-loss simnpo --steps 2 --refusals " + files.refusals, "--refusals");
    fails(unlearn + "--forget-loss simnpo --retain-loss nll --steps 2", "--retain");
    fails(unlearn + "--forget-loss simnpo --retain " + files.retain + " --steps 2", "--retain-loss");
    fails(unlearn + "--forget-loss simnpo --steps 2 --reference " + files.model, "--reference");
    fails(unlearn + "--forget-loss npo --steps 2 --weights-dtype bf16", "--weights-dtype bf16 needs --precision bf16");
    fails(unlearn + "--forget-loss npo --steps 2 --weights-dtype fp16", "--weights-dtype");
    fails(unlearn + "--forget-loss simnpo --steps 2 --recompute layers", "--recompute");
    fails(unlearn + "--forget-loss simnpo --steps 2 --precision bf16 --weights-dtype bf16", "--weights-dtype");
    fails(unlearn + "--forget-loss simnpo --steps 2 --warmup-steps 3", "--warmup-steps");
    fails(unlearn + "--forget-loss simnpo --steps 2 --resume " + scratch.file("nowhere"), "nowhere");
    fails(unlearn + "--forget-loss dpo --steps 2 --refusals " +
              scratch.write("bad_refusals.jsonl", "{\"answer_ids\": [0]}\n{\"answer_ids\": [99]}\n"),
          "bad_refusals.jsonl:2");
    fails("unlearn --model " + files.model + " --forget " + scratch.file("missing.jsonl") + " --out " + out +
              " --forget-loss ga --steps 1",
          "missing.jsonl");
    fails("train --model " + files.model + " --data " + files.both + " --out " + out + " --epochs 1 --grad-accum 0",
          "--grad-accum");
    fails(unlearn + "--forget-loss simnpo --steps 2 --device gpu", "--device");
    fails(unlearn + "--forget-loss simnpo --steps 2 --tf32", "--tf32");
    // Without a GPU (or a CUDA build), --device cuda says so; on a GPU machine the run would go ahead.
    if (!fs::exists("/dev/nvidiactl")) fails(unlearn + "--forget-loss simnpo --steps 2 --device cuda", "--device cuda");
    BOOST_TEST(run("unlearn --help", scratch).status == 0);
    BOOST_TEST(run("train --help", scratch).status == 0);
}

BOOST_AUTO_TEST_CASE(tokenize_matches_the_reference_encoder_and_decodes_back) {
    // Hugging Face's ids (tests/fixtures/hf_tokenizers, from npm tokenizers), line by line:
    // GPT-2's own files (encoder.json + vocab.bpe) and Llama 3.1's tokenizer.json.
    const TempDir scratch;
    const std::string tokenizer = std::string(SIMNPO_SHARED_DATA_DIR) + "/gpt2-tokenizer";
    const auto lines_of = [&](const std::string& name, const char* ids_key, std::string& text, std::string& expected,
                              std::string& decoded) {
        std::istringstream in(simnpo::read_file(fixtures + "/hf_tokenizers/" + name + ".jsonl"));
        int lines = 0;
        for (std::string json; std::getline(in, json) && lines < 40;) {
            const auto c = nlohmann::json::parse(json);
            if (!c.contains("text")) continue;
            const std::string line = c.at("text").get<std::string>();
            if (line.empty() || line.find_first_of("\r\n") != std::string::npos || line.size() > 2000) continue;
            text += line + "\n";
            expected += c.at(ids_key).dump() + "\n";
            decoded += c.at(std::string(ids_key) == "ids" ? "decoded" : "decoded_skip_special").get<std::string>() + "\n";
            ++lines;
        }
        BOOST_REQUIRE_EQUAL(lines, 40);
    };
    std::string text, expected, decoded;
    lines_of("gpt-2", "ids", text, expected, decoded);
    const std::string input = scratch.write("text.txt", text);
    auto result = run("tokenize --tokenizer " + tokenizer + " --file " + input, scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output == expected);
    const std::string ids = scratch.write("ids.jsonl", expected);
    result = run("tokenize --tokenizer " + tokenizer + " --decode < " + ids, scratch);  // standard input
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output == decoded);

    const std::string llama = std::string(SIMNPO_SHARED_DATA_DIR) + "/hf-tokenizers/llama-3.1";
    std::string llama_text, llama_expected, llama_decoded;
    lines_of("llama-3.1", "ids_with_special", llama_text, llama_expected, llama_decoded);
    const std::string llama_input = scratch.write("llama.txt", llama_text);
    result = run("tokenize --tokenizer " + llama + " --add-special-tokens --file " + llama_input, scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output == llama_expected);
    const std::string llama_ids = scratch.write("llama_ids.jsonl", llama_expected);
    result = run("tokenize --tokenizer " + llama + " --decode --skip-special-tokens --file " + llama_ids, scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output == llama_decoded);
    check_error(run("tokenize --tokenizer " + llama + " --decode --add-special-tokens --file " + llama_ids, scratch),
                "--add-special-tokens");

    check_error(run("tokenize --file " + input, scratch), "--tokenizer");
    check_error(run("tokenize --tokenizer " + scratch.file("nowhere") + " --file " + input, scratch), "nowhere");
    const std::string bad = scratch.write("bad.jsonl", "[15496, 995]\n[15496, 1.5]\n");
    check_error(run("tokenize --tokenizer " + tokenizer + " --decode --file " + bad, scratch), "bad.jsonl:2");
    const std::string outside = scratch.write("outside.jsonl", "[50257]\n");
    check_error(run("tokenize --tokenizer " + tokenizer + " --decode --file " + outside, scratch), "outside.jsonl:1");
    const std::string broken = scratch.write("broken.jsonl", "[1, 2\n");
    check_error(run("tokenize --tokenizer " + tokenizer + " --decode --file " + broken, scratch), "broken.jsonl:1");
}

// Text data end to end: a BPE vocabulary trained on a TOFU split, a model
// trained on that split's text (its directory then carries the tokenizer),
// scored, asked, and evaluated with the TOFU metrics.
namespace {

// In `scratch`: a 300-token BPE trained on `corpus` (tok), a compact model
// initialised over it (init) and trained on `corpus` for 40 steps (trained).
void train_text_model(const TempDir& scratch, const std::string& corpus) {
    auto result = run("train-tokenizer --corpus " + corpus + " --vocab-size 300 --out " + scratch.file("tok"), scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    scratch.write("config.json", R"({"vocab_size": 300, "n_positions": 512, "n_embd": 32, "n_layer": 1, "n_head": 2})");
    result = run("init --config " + scratch.file("config.json") + " --out " + scratch.file("init"), scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    result = run("train --model " + scratch.file("init") + " --tokenizer " + scratch.file("tok") + " --data " + corpus +
                     " --out " + scratch.file("trained") + " --steps 40 --lr 3e-3 --batch-size 8",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_data_train_generate_and_tofu_eval) {
    const TempDir scratch;
    const std::string tofu = std::string(SIMNPO_SHARED_DATA_DIR) + "/tofu";
    const std::string forget = tofu + "/forget01.jsonl";
    train_text_model(scratch, forget);
    const auto tokenizer = simnpo::tokenizer::Tokenizer::load(scratch.file("tok"));
    BOOST_TEST(tokenizer.vocab_size() == 300u);
    BOOST_TEST(tokenizer.eos_id().value() == 299);
    BOOST_TEST(fs::exists(scratch.file("trained/vocab.json")));  // the model carries its tokenizer

    // logprobs reads the text with the model's own tokenizer: the answer and end-of-text are scored.
    auto result = run("logprobs --model " + scratch.file("trained") + " --data " + forget + " --out " +
                          scratch.file("lp.jsonl"),
                      scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto scores = read_lines(scratch.file("lp.jsonl"));
    const auto pairs = read_lines(forget);
    BOOST_REQUIRE_EQUAL(scores.size(), pairs.size());
    BOOST_TEST(scores[3].at("n_tokens").get<std::size_t>() ==
               tokenizer.encode(pairs[3].at("answer").get<std::string>()).size() + 1);

    // generate answers as the library's greedy decoder does.
    const std::string question = pairs[0].at("question").get<std::string>();
    scratch.write("questions.txt", question + "\n\n" + pairs[1].at("question").get<std::string>() + "\n");
    result = run("generate --model " + scratch.file("trained") + " --file " + scratch.file("questions.txt") +
                     " --max-new-tokens 20",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    std::vector<nlohmann::json> answers;
    std::istringstream lines(result.output);
    for (std::string line; std::getline(lines, line);) answers.push_back(nlohmann::json::parse(line));
    BOOST_REQUIRE_EQUAL(answers.size(), 2u);
    const auto model = simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(scratch.file("trained"));
    const simnpo::data::TextFormat format(tokenizer);
    const auto prompt = format.prompt_ids(question);
    const auto ids = simnpo::model::generate_greedy(model, std::span<const std::int32_t>(prompt),
                                                    {.max_new_tokens = 20, .stop_token = 299});
    BOOST_TEST(answers[0].at("question") == question);
    BOOST_TEST(answers[0].at("answer").get<std::string>() == tokenizer.decode(ids));
    // In BF16, as the library's decoder does in BF16 mode.
    scratch.write("question.txt", question + "\n");
    result = run("generate --model " + scratch.file("trained") + " --file " + scratch.file("question.txt") +
                     " --max-new-tokens 20 --precision bf16",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    auto bf16_model = model;
    bf16_model.set_precision(simnpo::Precision::bf16);
    const auto bf16_ids = simnpo::model::generate_greedy(bf16_model, std::span<const std::int32_t>(prompt),
                                                         {.max_new_tokens = 20, .stop_token = 299});
    BOOST_TEST(nlohmann::json::parse(result.output).at("answer").get<std::string>() == tokenizer.decode(bf16_ids));

    // eval: the JSON holds every aggregate and every question; the table is printed.
    const auto evaluate = [&](const std::string& out, const std::string& flags) {
        return run("eval --benchmark tofu --model " + scratch.file("trained") + " --retain-model " +
                       scratch.file("init") + " --tokenizer " + scratch.file("tok") + " --data " + tofu +
                       " --split forget01 --max-new-tokens 8 --out " + scratch.file(out) + flags,
                   scratch);
    };
    result = evaluate("eval.json", "");
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output.find("forget quality") != std::string::npos);
    const auto report = simnpo::read_json_file(scratch.file("eval.json"));
    const auto& aggregates = report.at("aggregates");
    for (const char* key : {"forget_quality", "model_utility", "retain_utility"}) {
        BOOST_TEST_INFO(key);
        BOOST_TEST(aggregates.at(key).get<double>() >= 0.0);
        BOOST_TEST(aggregates.at(key).get<double>() <= 1.0);
    }
    BOOST_TEST(report.at("questions").at("forget").size() == 40u);
    BOOST_TEST(report.at("questions").at("retain").size() == 400u);
    BOOST_TEST(report.at("questions").at("real_authors").size() == 100u);
    BOOST_TEST(report.at("questions").at("world_facts").size() == 117u);
    // Trained on forget01 for 40 steps, the model prefers its answers more than the untrained one.
    BOOST_TEST(aggregates.at("forget").at("probability").get<double>() > 1.0 / 300);
    // In BF16: the same scores to BF16's rounding.
    result = evaluate("eval16.json", " --precision bf16");
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const double fp32_probability = aggregates.at("forget").at("probability").get<double>();
    const double bf16_probability =
        simnpo::read_json_file(scratch.file("eval16.json")).at("aggregates").at("forget").at("probability").get<double>();
    BOOST_TEST(std::abs(bf16_probability - fp32_probability) <= 0.05 * fp32_probability);
    BOOST_TEST(bf16_probability != fp32_probability);

    // Errors: one line, naming the flag or the file.
    check_error(run("eval --benchmark tofu --model " + scratch.file("init") + " --data " + tofu + " --split forget01",
                    scratch),
                "needs a tokenizer");
    check_error(run("eval --benchmark muse --model " + scratch.file("trained") + " --data " + tofu + " --split forget01",
                    scratch),
                "--benchmark");
    check_error(run("eval --benchmark tofu --model " + scratch.file("trained") + " --data " + tofu + " --split forget02",
                    scratch),
                "--split");
    check_error(run("eval --benchmark tofu --model " + scratch.file("trained") + " --data " + scratch.file("nowhere") +
                        " --split forget01",
                    scratch),
                "nowhere/forget01_perturbed.jsonl");
    check_error(run("generate --model " + scratch.file("trained"), scratch), "--question");
    check_error(run("eval --benchmark tofu --model " + scratch.file("trained") + " --data " + tofu +
                        " --split forget01 --precision fp16",
                    scratch),
                "--precision");
    check_error(run("generate --model " + scratch.file("trained") + " --question Who --prompt-template 'Q: A:'", scratch),
                "--prompt-template");
    check_error(run("train --model " + scratch.file("init") + " --data " + forget + " --out " + scratch.file("x") +
                        " --steps 1",
                    scratch),
                "forget01.jsonl:1: text examples");
    check_error(run("train-tokenizer --corpus " + forget + " --vocab-size 100 --out " + scratch.file("t2"), scratch),
                "--vocab-size");
    const std::string bad = scratch.write("bad.jsonl", "{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": 1}\n");
    check_error(run("train-tokenizer --corpus " + bad + " --vocab-size 300 --out " + scratch.file("t3"), scratch),
                "bad.jsonl:2");
}

// A tokenizer.json directory with its chat template, through every command
// that reads text: a tiny Llama over Llama 2's tokenizer (32000 tokens).
BOOST_AUTO_TEST_CASE(text_commands_take_a_tokenizer_json_and_its_chat_template) {
    const TempDir scratch;
    const std::string tofu = std::string(SIMNPO_SHARED_DATA_DIR) + "/tofu";
    const std::string tokenizer_dir = std::string(SIMNPO_SHARED_DATA_DIR) + "/hf-tokenizers/llama-2";
    scratch.write("config.json", R"({"model_type": "llama", "vocab_size": 32000, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512})");
    auto result = run("init --config " + scratch.file("config.json") + " --out " + scratch.file("m0"), scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto pairs = read_lines(tofu + "/forget01.jsonl");
    std::string lines;
    for (std::size_t i = 0; i < 4; ++i) lines += pairs[i].dump() + "\n";
    const std::string data = scratch.write("data.jsonl", lines);
    const std::string chat = " --chat-template model";
    result = run("train --model " + scratch.file("m0") + " --tokenizer " + tokenizer_dir + chat + " --data " + data +
                     " --out " + scratch.file("m1") + " --steps 3 --lr 1e-2 --batch-size 2",
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(simnpo::read_file(scratch.file("m1/tokenizer.json")) == simnpo::read_file(tokenizer_dir + "/tokenizer.json"));

    // logprobs scores each answer as the chat template renders it (its own tokenizer, from the model directory).
    result = run("logprobs --model " + scratch.file("m1") + chat + " --data " + data + " --out " + scratch.file("lp.jsonl"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto tokenizer = simnpo::tokenizer::Tokenizer::load(tokenizer_dir);
    const auto format = simnpo::data::TextFormat::chat(
        tokenizer, simnpo::tokenizer::ChatTemplate::parse(tokenizer.chat_template().value(), "llama-2"));
    const simnpo::data::TextFormat plain(tokenizer);
    const auto scores = read_lines(scratch.file("lp.jsonl"));
    BOOST_REQUIRE_EQUAL(scores.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
        const auto q = pairs[i].at("question").get<std::string>(), a = pairs[i].at("answer").get<std::string>();
        BOOST_TEST(scores[i].at("n_tokens").get<std::size_t>() == format.example(q, a).answer_ids.size());
        BOOST_TEST(format.example(q, a).answer_ids.size() != plain.example(q, a).answer_ids.size());
    }

    result = run("unlearn --model " + scratch.file("m1") + chat + " --forget " + data + " --retain " + data +
                     " --forget-loss simnpo --retain-loss nll --steps 2 --lr 1e-3 --out " + scratch.file("u"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    result = run("generate --model " + scratch.file("u") + chat + " --question 'Who wrote it?' --max-new-tokens 4", scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(nlohmann::json::parse(result.output).at("question") == "Who wrote it?");
    result = run("eval --benchmark tofu --model " + scratch.file("u") + chat + " --data " + tofu +
                     " --split forget01 --max-new-tokens 2 --out " + scratch.file("eval.json"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(simnpo::read_json_file(scratch.file("eval.json")).at("questions").at("forget").size() == 40u);

    const std::string out = " --out " + scratch.file("x.jsonl");
    check_error(run("logprobs --model " + scratch.file("m1") + chat + " --prompt-template 'Q {question}' --data " + data + out,
                    scratch),
                "exclude each other");
    check_error(run("logprobs --model " + scratch.file("m1") + " --chat-template " + scratch.file("none.jinja") +
                        " --data " + data + out,
                    scratch),
                "none.jinja");
    scratch.write("bad.jinja", "{% for m in messages %}{{ m.content | wordcount }}{% endfor %}");
    check_error(run("logprobs --model " + scratch.file("m1") + " --chat-template " + scratch.file("bad.jinja") +
                        " --data " + data + out,
                    scratch),
                "bad.jinja:1: the filter 'wordcount'");
}

// eval --benchmark privacy and relearn on a compact model trained on forget01.
BOOST_AUTO_TEST_CASE(privacy_eval_and_the_relearning_attack) {
    const TempDir scratch;
    const std::string tofu = std::string(SIMNPO_SHARED_DATA_DIR) + "/tofu";
    const std::string forget = tofu + "/forget01.jsonl", holdout = tofu + "/holdout01.jsonl";
    train_text_model(scratch, forget);

    auto result = run("eval --benchmark privacy --model " + scratch.file("trained") + " --retain-model " +
                          scratch.file("init") + " --tokenizer " + scratch.file("tok") + " --data " + tofu +
                          " --split forget01 --max-new-tokens 8 --out " + scratch.file("privacy.json"),
                      scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output.find("PrivLeak") != std::string::npos);
    BOOST_TEST(result.output.find("holdout01.jsonl (non-members)") != std::string::npos);
    const auto report = simnpo::read_json_file(scratch.file("privacy.json"));
    const auto& aggregates = report.at("aggregates");
    for (const char* attack : {"loss", "zlib", "min_k", "min_k++"}) {
        BOOST_TEST_CONTEXT(attack) {
            const double auc = aggregates.at("auc").at(attack).get<double>();
            const double retain = aggregates.at("retain_auc").at(attack).get<double>();
            BOOST_TEST((auc >= 0.0 && auc <= 1.0));
            BOOST_TEST(aggregates.at("privleak").at(attack).get<double>() == (auc - retain) / retain * 100.0,
                       boost::test_tools::tolerance(1e-12));
            BOOST_TEST(report.at("scores").at("members").at(attack).size() == 40u);
            BOOST_TEST(report.at("scores").at("nonmembers").at(attack).size() == 40u);
        }
    }
    // Trained on the members, the model gives them lower losses than the holdout's.
    BOOST_TEST(aggregates.at("auc").at("loss").get<double>() < 0.5);
    // The LOSS score is the answer's mean NLL, as logprobs reports it.
    result = run("logprobs --model " + scratch.file("trained") + " --data " + forget + " --out " + scratch.file("lp.jsonl"),
                 scratch);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    const auto logprobs = read_lines(scratch.file("lp.jsonl"));
    for (std::size_t i = 0; i < logprobs.size(); ++i)
        BOOST_TEST(report.at("scores").at("members").at("loss").at(i).get<double>() ==
                       -logprobs[i].at("logprob").get<double>() / logprobs[i].at("n_tokens").get<double>(),
                   boost::test_tools::tolerance(1e-5));
    for (const char* metric : {"verbmem", "knowmem"})
        BOOST_TEST((aggregates.at(metric).get<double>() >= 0.0 && aggregates.at(metric).get<double>() <= 1.0), metric);
    BOOST_TEST(report.at("knowmem").at("f1").size() == 40u);

    result = run("relearn --model " + scratch.file("init") + " --tokenizer " + scratch.file("tok") + " --forget " + forget +
                     " --holdout " + holdout + " --subset 4 --steps 6 --eval-every 3 --lr 3e-3 --max-new-tokens 8 --out " +
                     scratch.file("relearned"),
                 scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_REQUIRE_EQUAL(result.status, 0);
    BOOST_TEST(result.output.find("relearning on 4 of 40 forget examples") != std::string::npos);
    BOOST_TEST(fs::exists(scratch.file("relearned/model.safetensors")));
    BOOST_TEST(fs::exists(scratch.file("relearned/vocab.json")));
    const auto relearned = simnpo::read_json_file(scratch.file("relearned/relearn.json"));
    BOOST_TEST(relearned.at("subset").size() == 4u);
    const auto& points = relearned.at("points");
    BOOST_REQUIRE_EQUAL(points.size(), 3u);
    BOOST_TEST(points.at(1).at("step") == 3);
    BOOST_TEST(points.at(2).at("probability").get<double>() > points.at(0).at("probability").get<double>());
    BOOST_TEST(points.at(2).at("rouge_l_recall").is_number());
    BOOST_TEST(points.at(2).at("auc").at("min_k++").is_number());

    // Errors: one line, naming the flag or the file.
    const std::string privacy = "eval --benchmark privacy --model " + scratch.file("trained") + " --data " + tofu;
    check_error(run(privacy + " --split forget01 --k 0", scratch), "--k must be in");
    scratch.write("small.json", R"({"vocab_size": 200, "n_positions": 512, "n_embd": 32, "n_layer": 1, "n_head": 2})");
    BOOST_REQUIRE_EQUAL(run("init --config " + scratch.file("small.json") + " --out " + scratch.file("small"), scratch).status, 0);
    check_error(run(privacy + " --split forget01 --retain-model " + scratch.file("small"), scratch),
                "small: the retain model's vocabulary (200 tokens) differs from the model's (300)");
    check_error(run("eval --benchmark tofu --model " + scratch.file("trained") + " --data " + tofu +
                        " --split forget01 --no-memorization",
                    scratch),
                "--no-memorization applies to --benchmark privacy only");
    check_error(run(privacy + " --split forget05 --data " + scratch.path.string(), scratch), "flag --data given twice");
    const std::string dir_without_holdout = scratch.file("tofu-part");
    fs::create_directories(dir_without_holdout);
    fs::copy_file(forget, dir_without_holdout + "/forget01.jsonl");
    check_error(run("eval --benchmark privacy --model " + scratch.file("trained") + " --data " + dir_without_holdout +
                        " --split forget01",
                    scratch),
                "tofu-part/holdout01.jsonl");
    const std::string relearn = "relearn --model " + scratch.file("trained") + " --forget " + forget + " --holdout " +
                                holdout + " --steps 2 --out " + scratch.file("r2");
    check_error(run(relearn + " --subset 41", scratch), "--subset 41 is more than the 40 examples", scratch.file("r2"));
    check_error(run(relearn, scratch), "missing required flag --subset");
    check_error(run(relearn + " --subset 2 --epochs 1", scratch), "unknown flag '--epochs'");
    check_error(run(relearn + " --subset 2 --eval-every 3", scratch), "--eval-every must be in [1, 2]");
    const std::string ids = scratch.write("ids.jsonl", good_line + "\n");
    check_error(run("relearn --model " + scratch.file("trained") + " --forget " + ids + " --holdout " + holdout +
                        " --subset 1 --steps 1 --out " + scratch.file("r3"),
                    scratch),
                "ids.jsonl:1: missing key 'question'");
}

// Issue 16: finite weights whose outputs overflow (here logits of about 1e44)
// wrote "logprob": null for every row and exited 0.
BOOST_AUTO_TEST_CASE(non_finite_log_probabilities_are_an_error_naming_the_example) {
    const TempDir scratch;
    simnpo::model::Gpt<simnpo::cpu, float> model(simnpo::model::config_from_json(
        {{"vocab_size", 16}, {"n_positions", 8}, {"n_embd", 8}, {"n_layer", 1}, {"n_head", 2}}, "test config"));
    simnpo::model::init_weights(model, 1);
    for (auto& w : model.param("wte.weight")) w *= 1e15f;
    for (auto& w : model.param("ln_f.weight")) w = 1e30f;
    simnpo::model::save(model, scratch.file("model"));
    const auto data = scratch.write("data.jsonl", good_line + "\n");
    const auto out = scratch.file("o.jsonl");
    const auto result = run("logprobs --model " + scratch.file("model") + " --data " + data + " --out " + out, scratch);
    check_error(result, data + ": example 1: the log-probability is ", out);
}

// Issue 16: 2^64 - 1 for an integer flag was reported as "expects an integer";
// --threads took up to 1024 on any machine.
BOOST_AUTO_TEST_CASE(integer_flags_out_of_range_and_too_many_threads) {
    const TempDir scratch;
    const std::string model = fixtures + "/gpt_hf";
    const auto data = scratch.write("data.jsonl", good_line + "\n");
    const auto out = scratch.file("o.jsonl");
    const std::string logprobs = "logprobs --model " + model + " --data " + data + " --out " + out;
    check_error(run(logprobs + " --batch-size 18446744073709551615", scratch),
                "flag --batch-size must be in [1, 1048576], got 18446744073709551615", out);
    const std::string limit = std::to_string(simnpo::max_threads());
    check_error(run(logprobs + " --threads " + std::to_string(simnpo::max_threads() + 1), scratch),
                "flag --threads must be in [1, " + limit + "]", out);
    const auto result = run(logprobs + " --threads " + limit, scratch);
    BOOST_TEST_INFO(result.output);
    BOOST_TEST(result.status == 0);
    if (simnpo::max_threads() > simnpo::core_count())
        BOOST_TEST(result.output.find("warning: --threads " + limit + " is more than the") != std::string::npos);
}

// Issue 16: --data /dev/zero grew to 2-4 GB before std::bad_alloc.
BOOST_AUTO_TEST_CASE(data_without_newlines_is_refused_at_the_line_limit) {
    const TempDir scratch;
    const auto out = scratch.file("o.jsonl");
    check_error(run("logprobs --model " + fixtures + "/gpt_hf --data /dev/zero --out " + out, scratch),
                "/dev/zero:1: line longer than 16777216 bytes", out);
}

// Issue 16: init allocated whatever config.json asked for (std::bad_alloc, or
// the out-of-memory killer); a model larger than memory is refused first.
BOOST_AUTO_TEST_CASE(init_refuses_a_model_larger_than_memory) {
    const TempDir scratch;
    const auto config = scratch.write("config.json",
                                      R"({"vocab_size": 50, "n_positions": 16, "n_embd": 1048576, "n_layer": 1000, "n_head": 2})");
    check_error(run("init --config " + config + " --out " + scratch.file("m"), scratch),
                config + ": a model of 13194153236103168 parameters needs 211106451777650688 bytes", scratch.file("m"));
}

BOOST_AUTO_TEST_SUITE_END()  // test_cli
