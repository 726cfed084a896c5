// Encode speed of simnpo::tokenizer::Tokenizer (a Hugging Face tokenizer.json)
// with the Llama 3.1 tokenizer on every question and answer of TOFU's
// full.jsonl, one thread: the simnpo side of benchmarks/compare_tokenizer.py,
// whose other side is benchmarks/tokenizer_npm.js (Hugging Face's Rust
// tokenizers through npm tokenizers@0.23.2). A plain program, not Google
// Benchmark, so that both sides time the same loop and print the same lines.
//
// The tokenizer is loaded once and every repetition encodes all the strings
// with it (tok.encode(text): no special tokens added). Repetition 0 is marked
// "cold": the tokenizer's caches are empty then.
//
// Output: one JSON line for the load, then one per repetition:
//   {"impl": "simnpo", "mode": "load", "seconds": s}
//   {"impl": "simnpo", "mode": "encode", "repetition": i, "cold": true|false,
//    "seconds": s, "cpu_seconds": the process's CPU time over the same span,
//    "strings": n, "ids": total ids, "checksum": sum of all ids}
// The strings are the "question" then the "answer" of each line, in file
// order, as tokenizer_npm.js takes them, so ids and checksum must agree.
//
// Usage:  BUILD/benchmarks/bench_tokenizer [FULL_JSONL] [REPETITIONS] [--tokenizer DIR]
// FULL_JSONL defaults to ../shared/data/tofu/full.jsonl, REPETITIONS to 5, DIR
// (the folder with tokenizer.json) to ../shared/data/hf-tokenizers/llama-3.1.
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <simnpo.hpp>

namespace {

double cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::vector<std::string> read_strings(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<std::string> strings;
    std::string line;
    std::size_t number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
        const nlohmann::json row = nlohmann::json::parse(line);
        for (const char* key : {"question", "answer"}) {
            if (!row.contains(key) || !row[key].is_string())
                throw std::runtime_error(path + " line " + std::to_string(number) + " has no string \"" + key + "\"");
            strings.push_back(row[key].get<std::string>());
        }
    }
    return strings;
}

int usage(const char* argv0) {
    std::cerr << "usage: " << argv0 << " [FULL_JSONL] [REPETITIONS] [--tokenizer DIR]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) try {
    std::string jsonl = "../shared/data/tofu/full.jsonl";
    std::string dir = "../shared/data/hf-tokenizers/llama-3.1";
    int repetitions = 5;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--tokenizer") {
            if (i + 1 >= argc) return usage(argv[0]);
            dir = argv[++i];
        } else if (a == "-h" || a == "--help") {
            usage(argv[0]);
            return 0;
        } else if (a.starts_with("--")) {
            return usage(argv[0]);
        } else {
            positional.emplace_back(a);
        }
    }
    if (positional.size() > 2) return usage(argv[0]);
    if (positional.size() >= 1) jsonl = positional[0];
    if (positional.size() >= 2) {
        char* end = nullptr;
        const long n = std::strtol(positional[1].c_str(), &end, 10);
        if (end == positional[1].c_str() || *end != '\0' || n < 1 || n > 1000000) return usage(argv[0]);
        repetitions = static_cast<int>(n);
    }
    simnpo::set_threads(1);

    const std::vector<std::string> strings = read_strings(jsonl);

    const auto load_start = std::chrono::steady_clock::now();
    auto tok = simnpo::tokenizer::Tokenizer::load(dir);
    const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    std::printf("{\"impl\":\"simnpo\",\"mode\":\"load\",\"seconds\":%.6f}\n", load_seconds);
    std::fflush(stdout);

    for (int r = 0; r < repetitions; ++r) {
        std::int64_t ids = 0;
        std::int64_t checksum = 0;
        const double cpu_start = cpu_seconds();
        const auto start = std::chrono::steady_clock::now();
        for (const std::string& text : strings) {
            const std::vector<std::int32_t> out = tok.encode(text);
            ids += static_cast<std::int64_t>(out.size());
            for (const std::int32_t id : out) checksum += id;
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double cpu = cpu_seconds() - cpu_start;
        std::printf("{\"impl\":\"simnpo\",\"mode\":\"encode\",\"repetition\":%d,\"cold\":%s,\"seconds\":%.6f,"
                    "\"cpu_seconds\":%.6f,\"strings\":%zu,\"ids\":%lld,\"checksum\":%lld}\n",
                    r, r == 0 ? "true" : "false", seconds, cpu, strings.size(), static_cast<long long>(ids),
                    static_cast<long long>(checksum));
        std::fflush(stdout);
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "bench_tokenizer: " << e.what() << "\n";
    return 1;
}
