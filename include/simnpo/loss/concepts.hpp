#pragma once
#include "simnpo/core/internal_check.hpp"

#include <concepts>
#include <cstdint>
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
// dL/dlogits and returns the value, through the backend's kernels. Checked on
// the CPU backend in float: a loss must at least work there.
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

// The two policies of the preference family (forget.hpp), as static functions.
// Reference: r_i from the normalised ℓ_θ(i) and ℓ_ref(i).
template <class P>
concept ReferencePolicy = requires(double normalized, double normalized_reference) {
    { P::needs_reference } -> std::convertible_to<bool>;
    { P::reward(normalized, normalized_reference) } -> std::convertible_to<double>;
};

// Normalisation: N(ℓ) for an answer of |y| tokens, and dN/dℓ.
template <class P>
concept NormalizationPolicy = requires(double logprob, std::int64_t length) {
    { P::normalize(logprob, length) } -> std::convertible_to<double>;
    { P::derivative(length) } -> std::convertible_to<double>;
};

// What an objective asks of a reference model (FrozenReference).
template <class R>
concept ReferenceSource = requires(R& reference, std::span<const data::Example> examples) {
    { reference.sequence_logprobs(examples) } -> std::same_as<std::vector<double>>;
};

template <class L>
concept RetainLoss = std::same_as<L, NoRetain> || SequenceLoss<L> || DistributionLoss<L>;

}  // namespace simnpo::loss
