#pragma once
#include "simnpo/core/internal_check.hpp"

#include <type_traits>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// out [N, OC] = inp [N, IC] · weight [IC, OC] + bias [OC] (bias may be null).
// Weights are Conv1D-style [in, out], as GPT-2 stores them.
template <class S>
void matmul_forward(Tag, S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias,
                    std::int64_t N, std::int64_t IC, std::int64_t OC) {
    auto result = matrix(out, N, OC);
    result.noalias() = matrix(inp, N, IC) * matrix(weight, IC, OC);
    if (bias != nullptr) result.rowwise() += ConstVectorMap<S>(bias, OC);
}

// Accumulates dinp [N, IC] += dout · weightᵀ, dweight [IC, OC] += inpᵀ · dout,
// dbias [OC] += column sums of dout (dbias may be null).
template <class S>
void matmul_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     const S* weight, std::int64_t N, std::int64_t IC, std::int64_t OC) {
    const auto gradient = matrix(dout, N, OC);
    matrix(dinp, N, IC).noalias() += gradient * matrix(weight, IC, OC).transpose();
    matrix(dweight, IC, OC).noalias() += matrix(inp, N, IC).transpose() * gradient;
    if (dbias != nullptr) VectorMap<S>(dbias, OC) += gradient.colwise().sum();
}

// The tied LM head: logits [N, V] = inp [N, C] · wteᵀ, wte [V, C].
template <class S>
void lm_head_forward(Tag, S* logits, const S* inp, const S* wte, std::int64_t N, std::int64_t C,
                     std::int64_t V) {
    matrix(logits, N, V).noalias() = matrix(inp, N, C) * matrix(wte, V, C).transpose();
}

// Accumulates dinp [N, C] += dlogits · wte and dwte [V, C] += dlogitsᵀ · inp.
template <class S>
void lm_head_backward(Tag, S* dinp, S* dwte, const S* dlogits, const S* inp, const S* wte,
                      std::int64_t N, std::int64_t C, std::int64_t V) {
    const auto gradient = matrix(dlogits, N, V);
    matrix(dinp, N, C).noalias() += gradient * matrix(wte, V, C);
    matrix(dwte, V, C).noalias() += gradient.transpose() * matrix(inp, N, C);
}

}  // namespace simnpo::backend::cpu
