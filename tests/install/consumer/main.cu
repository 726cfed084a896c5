// Built against an installed simnpo::cuda: one forward pass of a tiny model on
// the GPU, or, on a machine without one, the backend's own error saying so.
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include <simnpo/cuda.hpp>

int main() {
    const simnpo::model::Config config{.vocab_size = 10, .n_positions = 8, .n_embd = 8, .n_layer = 1, .n_head = 2};
    try {
        simnpo::model::Gpt<simnpo::cuda, float> model(config);
        simnpo::model::init_weights(model, 1);
        const std::vector<simnpo::data::Example> examples{{{1, 2}, {3, 4}}};
        model.forward(simnpo::data::make_batch(examples));
        const double logprob = model.sequence_logprobs()[0];
        std::cout << "consumer_cuda: log-likelihood " << logprob << '\n';
        return std::abs(logprob - 2 * std::log(0.1)) < 0.1 ? 0 : 1;
    } catch (const simnpo::Error& error) {
        // Without a GPU the program still compiled and linked; the error must say why it cannot run.
        std::cout << "consumer_cuda: " << error.what() << '\n';
        return simnpo::backend::cuda::device_count() == 0 && std::string(error.what()).find("no GPU") != std::string::npos
                   ? 0
                   : 1;
    }
}
