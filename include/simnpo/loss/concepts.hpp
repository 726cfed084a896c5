#pragma once
#include "simnpo/core/internal_check.hpp"

#include <concepts>
#include <span>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/loss/retain.hpp"
#include "simnpo/loss/sequence.hpp"

namespace simnpo::loss {

// What Objective asks of a loss. A user's own type that meets these concepts
// plugs in exactly as the library's do.

// A loss on the per-sequence statistics of a batch (NPO, SimNPO, GA, DPO, NLL):
// evaluate() returns the value and dL/dℓ_θ(i) for each row; needs_reference
// says whether it reads stats.ref_logprob.
template <class L>
concept SequenceLoss = requires(const L& loss, const SequenceStats& stats) {
    { L::needs_reference } -> std::convertible_to<bool>;
    { loss.evaluate(stats) } -> std::same_as<LossResult>;
};

// A loss on whole next-token distributions (KL): evaluate() writes weight ·
// dL/dlogits and returns the value, through the backend's kernels.
template <class L>
concept DistributionLoss = requires(const L& loss, backend::cpu::Tag& backend, const Distributions<float>& d) {
    { L::needs_reference } -> std::convertible_to<bool>;
    { loss.evaluate(backend, d) } -> std::same_as<double>;
};

// An optional hook: a forget loss that scores other rows than the forget
// examples alone (DPO adds each one's refusal) says which. Without it the
// rows are the forget examples.
template <class L>
concept ExpandsRows = requires(const L& loss, std::span<const data::Example> forget) {
    { loss.rows(forget) } -> std::same_as<std::vector<data::Example>>;
};

template <class L>
concept ForgetLoss = SequenceLoss<L>;

template <class L>
concept RetainLoss = std::same_as<L, NoRetain> || SequenceLoss<L> || DistributionLoss<L>;

}  // namespace simnpo::loss
