// The `simnpo` command (DESIGN §6): subcommands over model directories and data files.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "device.hpp"
#include "evaluate.hpp"
#include "logprobs.hpp"
#include "relearn.hpp"
#include "tokenize.hpp"
#include "training.hpp"

namespace {

namespace fs = std::filesystem;
using simnpo::cli::Args;

constexpr const char* usage = R"(usage: simnpo <command> [flags]

commands:
  init             write a randomly initialised model directory (GPT-2 or Llama family)
  logprobs         score each example's answer under a model
  train            fine-tune a model on examples (token-mean NLL)
  unlearn          unlearn a forget set (ga, npo, simnpo, dpo; retain none, nll, kl)
  eval             benchmark metrics (TOFU: probability, truth ratio, ROUGE-L, forget quality, utility;
                   privacy: membership-inference AUC, PrivLeak, VerbMem, KnowMem)
  relearn          the relearning attack: fine-tune on part of the forget set, probe the whole
  generate         greedy answers to questions
  tokenize         text to GPT-2 token ids and back, one document a line
  train-tokenizer  a byte-level BPE vocabulary from a corpus

logprobs, train and unlearn take --device cpu|cuda (default cpu).

Run 'simnpo <command> --help' for the flags of a command.
)";

constexpr const char* init_usage = R"(usage: simnpo init --config CFG.json --out DIR [--seed S]

Writes DIR/config.json and DIR/model.safetensors: a model of the config's
model_type with its family's initialisation. GPT-2 (model_type gpt2 or none):
weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)), LayerNorm
weights 1, biases 0. Llama family (llama, mistral, qwen2, phi3): weights
N(0, initializer_range = 0.02), RMSNorm weights 1, biases 0.

  --config CFG.json  GPT2Config keys: vocab_size, n_positions, n_embd, n_layer,
                     n_head (required), layer_norm_epsilon (default 1e-5); or
                     a Hugging Face LlamaConfig, MistralConfig, Qwen2Config or
                     Phi3Config (vocab_size, hidden_size, intermediate_size,
                     num_hidden_layers, num_attention_heads required)
  --out DIR          the model directory to write (created if needed)
  --seed S           random seed, a non-negative integer (default 0)
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
    simnpo::check_output_directory(out, "--out");
    const simnpo::OutputLock lock(out);
    const auto json = simnpo::parse_json(simnpo::read_text_file(config_path), config_path.string());
    const auto type = json.is_object() && json.contains("model_type") && json["model_type"].is_string()
                          ? json["model_type"].get<std::string>()
                          : std::string("gpt2");
    return simnpo::model::with_family(type, config_path.string(), [&]<class Family>(std::type_identity<Family>) {
        auto config = Family::read_config(config_path);
        // The parameters and gradients, then save's host copy and file bytes: 16 bytes a parameter.
        simnpo::model::check_fits_in_memory(config, 16, config_path.string());
        simnpo::model::CausalLM<Family, simnpo::cpu, float> model(std::move(config));
        simnpo::model::init_weights(model, seed);
        simnpo::model::save(model, out);
        std::cout << "wrote " << out.string() << " (" << model.layout().total() << " parameters, seed " << seed
                  << ")\n";
        return 0;
    });
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> words(argv + 1, argv + argc);
    if (words.empty() || words[0] == "--help" || words[0] == "-h") {
        std::cout << usage;
        return words.empty() ? 2 : 0;
    }
    const std::vector<std::string> rest(words.begin() + 1, words.end());
    simnpo::install_interrupt_handlers();
    try {
        if (words[0] == "init") return run_init(rest);
        if (words[0] == "tokenize") return simnpo::cli::run_tokenize(rest);
        if (words[0] == "train-tokenizer") return simnpo::cli::run_train_tokenizer(rest);
        if (words[0] == "eval") return simnpo::cli::run_eval(rest);
        if (words[0] == "generate") return simnpo::cli::run_generate(rest);
        if (words[0] == "relearn") return simnpo::cli::run_relearn(rest);
        const bool known = words[0] == "logprobs" || words[0] == "train" || words[0] == "unlearn";
        if (known && simnpo::cli::device_flag(rest) == "cuda") return simnpo::cli::run_on_cuda(words[0], rest);
        if (words[0] == "logprobs") return simnpo::cli::run_logprobs<simnpo::cpu>(rest);
        if (words[0] == "train") return simnpo::cli::run_train<simnpo::cpu>(rest);
        if (words[0] == "unlearn") return simnpo::cli::run_unlearn<simnpo::cpu>(rest);
        std::cerr << "simnpo: unknown command '" << words[0] << "' (see simnpo --help)\n";
        return 2;
    } catch (const simnpo::Interrupted& interrupted) {
        std::cerr << "simnpo: " << interrupted.what() << '\n';
        return interrupted.exit_status();
    } catch (const simnpo::Error& error) {
        std::cerr << "simnpo: " << error.what() << '\n';
    } catch (const std::bad_alloc&) {
        std::cerr << "simnpo: out of memory (an allocation failed: std::bad_alloc)\n";
    } catch (const std::exception& error) {
        std::cerr << "simnpo: " << error.what() << '\n';
    }
    return 1;
}
