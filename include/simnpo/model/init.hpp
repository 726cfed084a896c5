#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "simnpo/core/rng.hpp"
#include "simnpo/model/gpt.hpp"

namespace simnpo::model {

// GPT-2's initialisation: weights N(0, 0.02), the two residual projections of
// each block N(0, 0.02/√(2L)), LayerNorm weights 1, every bias 0.
template <class Backend, class Scalar>
void init_gpt2(Gpt<Backend, Scalar>& model, std::uint64_t seed) {
    const auto& layout = model.layout();
    const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(model.config().n_layer));
    std::vector<Scalar> host(layout.total());
    Rng rng(seed);
    const auto ends_with = [](const std::string& name, const std::string& suffix) {
        return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    for (const auto& slot : layout.slots()) {
        Scalar* values = host.data() + slot.offset;
        const bool layernorm = slot.name.find("ln_") != std::string::npos;
        if (layernorm) {
            std::fill_n(values, slot.size, ends_with(slot.name, ".weight") ? Scalar{1} : Scalar{0});
        } else if (ends_with(slot.name, ".bias")) {
            std::fill_n(values, slot.size, Scalar{0});
        } else {
            const double stddev = ends_with(slot.name, "c_proj.weight") ? residual_std : 0.02;
            for (std::size_t i = 0; i < slot.size; ++i) values[i] = static_cast<Scalar>(rng.normal(0.0, stddev));
        }
    }
    copy_to_device(model.backend(), model.params().data(), std::span<const Scalar>(host));
}

}  // namespace simnpo::model
