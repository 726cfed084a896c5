// The `simnpo` command (DESIGN §6): subcommands over model directories and data files.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "training.hpp"

namespace {

namespace fs = std::filesystem;
using simnpo::cli::Args;

constexpr const char* usage = R"(usage: simnpo <command> [flags]

commands:
  init       write a randomly initialised GPT-2-shaped model directory
  logprobs   score each example's answer under a model
  train      fine-tune a model on examples (token-mean NLL)
  unlearn    unlearn a forget set (ga, npo, simnpo, dpo; retain none, nll, kl)

Run 'simnpo <command> --help' for the flags of a command.
)";

constexpr const char* init_usage = R"(usage: simnpo init --config CFG.json --out DIR [--seed S]

Writes DIR/config.json and DIR/model.safetensors: a GPT-2-shaped model with
GPT-2's initialisation (weights N(0, 0.02), residual projections
N(0, 0.02/sqrt(2 n_layer)), LayerNorm weights 1, biases 0).

  --config CFG.json  GPT2Config keys: vocab_size, n_positions, n_embd, n_layer,
                     n_head (required), layer_norm_epsilon (default 1e-5)
  --out DIR          the model directory to write (created if needed)
  --seed S           random seed, a non-negative integer (default 0)
)";

constexpr const char* logprobs_usage = R"(usage: simnpo logprobs --model DIR --data D.jsonl --out O.jsonl [flags]

For each example of D.jsonl ({"prompt_ids": [...], "answer_ids": [...]} per line)
writes one line to O.jsonl, in order: {"logprob": l, "n_tokens": n}, where l is
the sum of log pi(y_t | x, y_<t) over the n answer tokens.

  --model DIR        model directory (config.json + model.safetensors)
  --data D.jsonl     examples (JSON Lines, or a JSON array)
  --out O.jsonl      output file, written atomically
  --batch-size N     examples per forward pass (default 16)
  --dtype T          float or double arithmetic (default float)
  --threads N        CPU threads (default: all)
)";

int run_init(const std::vector<std::string>& words) {
    const Args args("simnpo init", words, {"--config", "--out", "--seed"});
    if (args.help()) {
        std::cout << init_usage;
        return 0;
    }
    const fs::path config_path = args.required("--config");
    const fs::path out = args.required("--out");
    const auto seed = static_cast<std::uint64_t>(args.integer("--seed", 0, 0, std::numeric_limits<long long>::max()));
    simnpo::model::Gpt<simnpo::cpu, float> model(simnpo::model::read_config(config_path));
    simnpo::model::init_gpt2(model, seed);
    simnpo::model::save(model, out);
    std::cout << "wrote " << out.string() << " (" << model.layout().total() << " parameters, seed " << seed << ")\n";
    return 0;
}

template <class Scalar>
std::string score(const fs::path& model_dir, const fs::path& data_path, std::size_t batch_size) {
    auto model = simnpo::model::load<simnpo::cpu, Scalar>(model_dir);
    const auto examples = simnpo::data::read_jsonl(data_path, model.config());
    std::string lines;
    for (std::size_t first = 0; first < examples.size(); first += batch_size) {
        const auto chunk = std::span(examples).subspan(first, std::min(batch_size, examples.size() - first));
        model.forward(simnpo::data::make_batch(chunk));
        const auto sums = model.sequence_logprobs();
        for (std::size_t b = 0; b < chunk.size(); ++b) {
            const nlohmann::json line = {{"logprob", sums[b]}, {"n_tokens", chunk[b].answer_ids.size()}};
            lines += line.dump() + '\n';
        }
    }
    return lines;
}

int run_logprobs(const std::vector<std::string>& words) {
    const Args args("simnpo logprobs", words, {"--model", "--data", "--out", "--batch-size", "--dtype", "--threads"});
    if (args.help()) {
        std::cout << logprobs_usage;
        return 0;
    }
    const fs::path model_dir = args.required("--model");
    const fs::path data_path = args.required("--data");
    const fs::path out = args.required("--out");
    const auto batch_size = static_cast<std::size_t>(args.integer("--batch-size", 16, 1, 1 << 20));
    const std::string dtype = args.choice("--dtype", "float", {"float", "double"});
    if (args.has("--threads")) simnpo::set_threads(static_cast<int>(args.integer("--threads", 1, 1, 1024)));
    const std::string lines = dtype == "float" ? score<float>(model_dir, data_path, batch_size)
                                               : score<double>(model_dir, data_path, batch_size);
    simnpo::write_file_atomic(out, lines);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> words(argv + 1, argv + argc);
    if (words.empty() || words[0] == "--help" || words[0] == "-h") {
        std::cout << usage;
        return words.empty() ? 2 : 0;
    }
    const std::vector<std::string> rest(words.begin() + 1, words.end());
    try {
        if (words[0] == "init") return run_init(rest);
        if (words[0] == "logprobs") return run_logprobs(rest);
        if (words[0] == "train") return simnpo::cli::run_train(rest);
        if (words[0] == "unlearn") return simnpo::cli::run_unlearn(rest);
        std::cerr << "simnpo: unknown command '" << words[0] << "' (see simnpo --help)\n";
        return 2;
    } catch (const simnpo::Error& error) {
        std::cerr << "simnpo: " << error.what() << '\n';
    } catch (const std::exception& error) {
        std::cerr << "simnpo: " << error.what() << '\n';
    }
    return 1;
}
