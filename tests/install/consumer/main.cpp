// Built against an installed simnpo: one forward pass of a tiny model.
#include <cmath>
#include <iostream>

#include <simnpo.hpp>

int main() {
    simnpo::model::Gpt<simnpo::cpu, float> model({.vocab_size = 10, .n_positions = 8, .n_embd = 8, .n_layer = 1, .n_head = 2});
    simnpo::model::init_weights(model, 1);
    const std::vector<simnpo::data::Example> examples{{{1, 2}, {3, 4}}};
    model.forward(simnpo::data::make_batch(examples));
    const double logprob = model.sequence_logprobs()[0];
    std::cout << "consumer: log-likelihood " << logprob << '\n';
    // A near-uniform model gives about 2·log(1/10) for two answer tokens.
    return std::abs(logprob - 2 * std::log(0.1)) < 0.1 ? 0 : 1;
}
