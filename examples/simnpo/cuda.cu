// The simnpo command's GPU half: logprobs, train and unlearn on Gpt<simnpo::cuda, float>.
#include <simnpo/cuda.hpp>

#include "device.hpp"
#include "logprobs.hpp"
#include "training.hpp"

namespace simnpo::cli {

int run_on_cuda(const std::string& command, const std::vector<std::string>& words) {
    if (backend::cuda::device_count() == 0)
        fail("simnpo ", command, ": --device cuda: no CUDA GPU is available on this machine");
    if (command == "logprobs") return run_logprobs<simnpo::cuda>(words);
    if (command == "train") return run_train<simnpo::cuda>(words);
    return run_unlearn<simnpo::cuda>(words);
}

}  // namespace simnpo::cli
