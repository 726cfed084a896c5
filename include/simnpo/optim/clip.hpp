#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

namespace simnpo::optim {

// The L2 norm of the whole gradient slab (accumulated in double).
template <class Model>
double grad_norm(const Model& model) {
    const auto& grads = model.grads();
    return std::sqrt(sum_of_squares(model.backend(), grads.data(), static_cast<std::int64_t>(grads.size())));
}

// PyTorch's clip_grad_norm_ factor for gradients of scalar type S: min(1, max_norm / (norm + 1e-6)),
// computed in S as PyTorch computes it from its norm tensor, unless the norm (summed in double) is
// beyond S's range. 1 when max_norm <= 0 (no clipping) or the norm is not finite (the caller decides).
// As in PyTorch a norm just under max_norm still gives a factor within 1e-6 of 1.
template <class S>
double clip_coefficient(double norm, double max_norm) {
    if (!(max_norm > 0.0) || !std::isfinite(norm)) return 1.0;
    const auto norm_s = static_cast<S>(norm);
    const double coefficient = std::isfinite(norm_s)
                                   ? static_cast<double>(static_cast<S>(max_norm) / (norm_s + static_cast<S>(1e-6)))
                                   : max_norm / (norm + 1e-6);
    return coefficient < 1.0 ? coefficient : 1.0;
}

// PyTorch's clip_grad_norm_ over the whole gradient slab, taken as one parameter group:
// returns the norm before clipping and multiplies the gradients by clip_coefficient().
// A non-finite norm (an overflow or a NaN in the gradients) is returned as it is and the
// gradients are left alone: PyTorch would scale them into zeros and NaNs, which hides the cause.
// The training loop instead hands the coefficient to the optimizer's step, which applies it in
// the same pass as the update (the same bits, one trip through memory fewer).
template <class Model>
double clip_grad_norm(Model& model, double max_norm) {
    const double norm = grad_norm(model);
    const double coefficient = clip_coefficient<typename Model::scalar_type>(norm, max_norm);
    if (coefficient < 1.0)
        scale_in_place(model.backend(), model.grads().data(), static_cast<std::int64_t>(model.grads().size()),
                       coefficient);
    return norm;
}

}  // namespace simnpo::optim
