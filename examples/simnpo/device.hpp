// `--device cuda`: the commands on the GPU, compiled apart (cuda.cu, by nvcc)
// when the build has CUDA; without it, an error that says so.
#pragma once

#include <string>
#include <vector>

#include <simnpo.hpp>

namespace simnpo::cli {

// The value of --device among a command's flags ("cpu" when absent; the
// command itself rejects anything but cpu and cuda).
inline std::string device_flag(const std::vector<std::string>& words) {
    for (std::size_t i = 0; i + 1 < words.size(); ++i)
        if (words[i] == "--device") return words[i + 1];
    return "cpu";
}

// The backend a command runs on, with its options from the flags (--tf32).
template <class Backend>
Backend make_backend(bool tf32) {
    Backend backend{};
    if constexpr (requires { backend.tf32; }) backend.tf32 = tf32;
    return backend;
}

#ifdef SIMNPO_CLI_WITH_CUDA
// Runs `command` (logprobs, train or unlearn) on the GPU; defined in cuda.cu.
int run_on_cuda(const std::string& command, const std::vector<std::string>& words);
#else
inline int run_on_cuda(const std::string& command, const std::vector<std::string>&) {
    fail("simnpo ", command, ": --device cuda: this simnpo was built without CUDA (configure with nvcc available, "
         "SIMNPO_WITH_CUDA=AUTO or ON)");
}
#endif

}  // namespace simnpo::cli
