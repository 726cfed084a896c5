#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

namespace simnpo::optim {

// PyTorch's clip_grad_norm_ over the whole gradient slab, taken as one parameter group:
// returns the L2 norm of model.grads() before clipping and, when max_norm > 0, multiplies the
// gradients by min(1, max_norm / (norm + 1e-6)). As in PyTorch a norm just under max_norm is
// still scaled (by a factor within 1e-6 of 1). max_norm <= 0 disables clipping.
// A non-finite norm (an overflow or a NaN in the gradients) is returned as it is and the
// gradients are left alone: PyTorch would scale them into zeros and NaNs, which hides the cause;
// the caller decides whether to skip the step or stop.
template <class Model>
double clip_grad_norm(Model& model, double max_norm) {
    auto& grads = model.grads();
    const auto n = static_cast<std::int64_t>(grads.size());
    const double norm = std::sqrt(sum_of_squares(model.backend(), grads.data(), n));
    if (max_norm > 0.0 && std::isfinite(norm)) {
        // In the gradients' precision, as PyTorch computes it from its norm tensor, unless the
        // norm (summed in double) is beyond that precision's range.
        using S = typename Model::scalar_type;
        const auto norm_s = static_cast<S>(norm);
        const double coefficient =
            std::isfinite(norm_s) ? static_cast<double>(static_cast<S>(max_norm) / (norm_s + static_cast<S>(1e-6)))
                                  : max_norm / (norm + 1e-6);
        if (coefficient < 1.0) scale_in_place(model.backend(), grads.data(), n, coefficient);
    }
    return norm;
}

}  // namespace simnpo::optim
