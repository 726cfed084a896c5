#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "simnpo/core/rng.hpp"
#include "simnpo/model/causal_lm.hpp"

namespace simnpo::model {

// How a family initialises one tensor: filled with a constant, or drawn from N(0, stddev).
struct InitRule {
    enum class Kind { constant, normal };
    Kind kind = Kind::normal;
    double value = 0.0;  // the constant, or the normal's standard deviation
};

// The family's initialisation of every tensor (Gpt2Family::init_rule,
// LlamaFamily::init_rule), drawn from one stream seeded by `seed` in layout order.
template <CausalModel Model>
void init_weights(Model& model, std::uint64_t seed) {
    using Scalar = typename Model::scalar_type;
    const auto& layout = model.layout();
    std::vector<Scalar> host(layout.total());
    Rng rng(seed);
    for (const auto& slot : layout.slots()) {
        Scalar* values = host.data() + slot.offset;
        const InitRule rule = Model::family_type::init_rule(model.config(), slot.name);
        if (rule.kind == InitRule::Kind::constant)
            std::fill_n(values, slot.size, static_cast<Scalar>(rule.value));
        else
            for (std::size_t i = 0; i < slot.size; ++i) values[i] = static_cast<Scalar>(rng.normal(0.0, rule.value));
    }
    copy_to_device(model.backend(), model.params().data(), std::span<const Scalar>(host));
}

}  // namespace simnpo::model
