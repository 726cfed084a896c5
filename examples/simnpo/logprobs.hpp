// `simnpo logprobs` (DESIGN §6): each example's answer log-likelihood under a model.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <simnpo.hpp>

#include "args.hpp"
#include "device.hpp"
#include "text.hpp"

namespace simnpo::cli {

constexpr const char* logprobs_usage = R"(usage: simnpo logprobs --model DIR --data D.jsonl --out O.jsonl [flags]

For each example of D.jsonl ({"prompt_ids": [...], "answer_ids": [...]} or
{"question": "...", "answer": "..."} per line)
writes one line to O.jsonl, in order: {"logprob": l, "n_tokens": n}, where l is
the sum of log pi(y_t | x, y_<t) over the n answer tokens.

  --model DIR        model directory (config.json + model.safetensors): GPT-2 or
                     Llama family (llama, mistral, qwen2, phi3)
  --data D.jsonl     examples (JSON Lines, or a JSON array)
  --out O.jsonl      output file, written atomically
  --batch-size N     examples per forward pass (default 16)
  --dtype T          float or double arithmetic (default float)
  --threads N        CPU threads (default: all)
  --device cpu|cuda  where to compute (default cpu; cuda computes in float)
  --tf32             with --device cuda: matrix products on TF32 tensor cores
  --precision P      fp32 (default) or bf16: matrix products in BF16 with fp32
                     sums (--dtype float)
)";

template <class Backend, class Scalar>
std::string score(const std::filesystem::path& model_dir, const std::filesystem::path& data_path,
                  std::size_t batch_size, Backend backend, const data::TextFormat* format, Precision precision) {
    return model::with_family(model_dir, [&]<class Family>(std::type_identity<Family>) {
        auto model = model::load<model::CausalLM<Family, Backend, Scalar>>(model_dir, backend);
        model.set_precision(precision);
        const auto examples = data::read_jsonl(data_path, model.config(), format);
        std::string lines;
        for (std::size_t first = 0; first < examples.size(); first += batch_size) {
            const auto chunk = std::span(examples).subspan(first, std::min(batch_size, examples.size() - first));
            const auto sums = model.score(data::make_batch(chunk)).sequence_logprobs();
            for (std::size_t b = 0; b < chunk.size(); ++b) {
                // JSON has no NaN: nlohmann would write null, which reads as a result.
                if (!std::isfinite(sums[b]))
                    fail(data_path.string(), ": example ", first + b + 1, ": the log-probability is ", sums[b],
                         " (the model's outputs are not finite)");
                const nlohmann::json line = {{"logprob", sums[b]}, {"n_tokens", chunk[b].answer_ids.size()}};
                lines += line.dump() + '\n';
            }
        }
        return lines;
    });
}

template <class Backend>
int run_logprobs(const std::vector<std::string>& words) {
    const Args args("simnpo logprobs", words,
                    {"--model", "--data", "--out", "--batch-size", "--dtype", "--threads", "--device", "--tokenizer",
                     "--prompt-template", "--chat-template", "--precision"},
                    {"--tf32"});
    if (args.help()) {
        std::cout << logprobs_usage << text_flags;
        return 0;
    }
    const std::filesystem::path model_dir = args.required("--model");
    const std::filesystem::path data_path = args.required("--data");
    const std::filesystem::path out = args.required("--out");
    check_output_file(out, "--out");
    const auto batch_size = static_cast<std::size_t>(args.integer("--batch-size", 16, 1, 1 << 20));
    const std::string dtype = args.choice("--dtype", "float", {"float", "double"});
    const bool on_gpu = args.choice("--device", "cpu", {"cpu", "cuda"}) == "cuda";
    if (on_gpu && dtype == "double") fail("simnpo logprobs: --device cuda computes in float (drop --dtype double)");
    if (args.has("--tf32") && !on_gpu) fail("simnpo logprobs: --tf32 applies to --device cuda only");
    const Precision precision = parse_precision(args.choice("--precision", "fp32", {"fp32", "bf16"}), "--precision");
    if (precision == Precision::bf16 && dtype == "double")
        fail("simnpo logprobs: --precision bf16 computes in float (drop --dtype double)");
    const Backend backend = make_backend<Backend>(args.has("--tf32"));
    args.apply_threads();
    const TextInput text(args, model_dir);
    const auto* format = text.format();
    std::string lines;
    if constexpr (std::is_same_v<Backend, simnpo::cpu>)
        lines = dtype == "float"
                    ? score<Backend, float>(model_dir, data_path, batch_size, backend, format, precision)
                    : score<Backend, double>(model_dir, data_path, batch_size, backend, format, precision);
    else
        lines = score<Backend, float>(model_dir, data_path, batch_size, backend, format, precision);
    simnpo::write_file_atomic(out, lines);
    return 0;
}

}  // namespace simnpo::cli
