#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/causal_lm.hpp"

namespace simnpo::loss {

// The absence of a reference model, for objectives that need none (SimNPO,
// gradient ascent, NLL). Passing it to a reference-based objective does not
// compile.
struct NoReference {};

// The frozen reference model of NPO, DPO and KL: a copy of the model's
// parameters taken at construction (by default the model before unlearning).
//
// The reference runs each example through its forward alone, so what it
// returns for an example is a function of that example only: the same beside
// any other examples, in any batch order, and in a resumed run whose caches
// start empty. (A row's bits in a batched forward depend on the batch's shape:
// BLAS and cuBLASLt pick their blocking and kernels by the product's size.)
//
// The reference never changes, so what it computes is cached per distinct
// example: ℓ_ref of an example is computed the first time it is asked for and
// never again. What the KL term reads is cached the same way while it fits in
// Options::distribution_cache_bytes and recomputed beyond it: on the CPU the
// head's inputs and logsumexp (head_states: width + 1 scalars per answer
// token, from which CausalLM::backward_kl computes the distributions chunk by
// chunk), elsewhere the next-token distributions themselves (distributions:
// vocab_size scalars per answer token, which is small for compact
// vocabularies and tens of gigabytes for GPT-2's on a TOFU retain set).
template <class Model>
class FrozenReference {
public:
    using Scalar = typename Model::scalar_type;
    template <class T>
    using Buffer = typename Model::template Buffer<T>;

    struct Options {
        std::size_t distribution_cache_bytes = std::size_t{1} << 30;  // 0: always recompute
        // bf16: the copy keeps its matrices and embedding tables in BF16 only
        // (CausalLM::frozen_in_bf16: half their memory; needs a model in BF16 mode).
        WeightsDtype weights = WeightsDtype::fp32;
    };

    // The reference computes as the model does (its precision).
    explicit FrozenReference(const Model& model, Options options = {})
        : model_(options.weights == WeightsDtype::bf16 ? model.frozen_in_bf16()
                                                       : Model(model.config(), model.backend())),
          options_(options) {
        if (options.weights == WeightsDtype::bf16) return;
        model_.params() = model.params();
        model_.set_precision(model.precision());
        // The reference is never differentiated (model() is const): its gradient slab would be dead weight.
        Buffer<Scalar>().swap(model_.grads());
    }

    const Model& model() const { return model_; }
    // How many forward passes the reference has run: what the caches save.
    std::int64_t forward_passes() const { return forward_passes_; }

    // ℓ_ref of each example, in order.
    std::vector<double> sequence_logprobs(std::span<const data::Example> examples) {
        const auto missing = uncached(examples, logprob_cache_);
        for (const auto& example : missing) logprob_cache_.emplace(example, score_alone(example).sequence_logprobs().front());
        std::vector<double> result;
        result.reserve(examples.size());
        for (const auto& example : examples) result.push_back(logprob_cache_.at(example));
        return result;
    }

    // log π_ref(· | context) at every answer position of the examples, as the
    // model's forward orders them for make_batch(examples): [Σ|y_i|, V] in
    // backend memory. The buffer is the reference's own and stays valid until
    // the next call; a loss may overwrite it (KL writes its gradient there).
    std::span<Scalar> distributions(std::span<const data::Example> examples) {
        const std::int64_t V = model_.config().vocab_size;
        const auto missing = uncached(examples, distribution_cache_);
        std::unordered_map<data::Example, Buffer<Scalar>, data::ExampleHash> recomputed;
        for (const auto& example : missing) {
            const auto scores = score_alone(example, model::Logits::keep);
            const auto size = static_cast<std::size_t>(example.answer_ids.size()) * static_cast<std::size_t>(V);
            Buffer<Scalar> block(size);
            log_softmax(model_.backend(), block.data(), scores.logits.data(),
                        static_cast<std::int64_t>(scores.logprobs.size()), V);
            const std::size_t bytes = size * sizeof(Scalar);
            if (cached_bytes_ + bytes <= options_.distribution_cache_bytes) {
                cached_bytes_ += bytes;
                distribution_cache_.emplace(example, std::move(block));
            } else {
                recomputed.emplace(example, std::move(block));
            }
        }
        std::size_t total = 0;
        for (const auto& example : examples) total += example.answer_ids.size() * static_cast<std::size_t>(V);
        scratch_.resize(total);
        std::size_t offset = 0;
        for (const auto& example : examples) {
            const auto cached = distribution_cache_.find(example);
            const Buffer<Scalar>& block = cached != distribution_cache_.end() ? cached->second : recomputed.at(example);
            copy_on_device(model_.backend(), scratch_.data() + offset, block.data(), block.size());
            offset += block.size();
        }
        return std::span<Scalar>(scratch_.data(), scratch_.size());
    }

    // The reference's head inputs [Σ|y_i|, C] and logsumexp [Σ|y_i|] at every
    // answer position of the examples, as the model's forward orders them for
    // make_batch(examples) (CausalLM::Scores::head_inputs, logsumexp). The
    // spans are the reference's own and stay valid until the next call.
    struct HeadStates {
        std::span<const Scalar> inputs, logsumexp;
    };
    HeadStates head_states(std::span<const data::Example> examples) {
        const auto missing = uncached(examples, head_cache_);
        std::unordered_map<data::Example, CachedHead, data::ExampleHash> recomputed;
        for (const auto& example : missing) {
            auto scores = score_alone(example);
            CachedHead head{std::move(scores.head_inputs), std::move(scores.logsumexp)};
            const std::size_t bytes = (head.inputs.size() + head.logsumexp.size()) * sizeof(Scalar);
            if (cached_bytes_ + bytes <= options_.distribution_cache_bytes) {
                cached_bytes_ += bytes;
                head_cache_.emplace(example, std::move(head));
            } else {
                recomputed.emplace(example, std::move(head));
            }
        }
        head_inputs_.clear();
        head_logsumexp_.clear();
        for (const auto& example : examples) {
            const auto cached = head_cache_.find(example);
            const CachedHead& head = cached != head_cache_.end() ? cached->second : recomputed.at(example);
            head_inputs_.insert(head_inputs_.end(), head.inputs.begin(), head.inputs.end());
            head_logsumexp_.insert(head_logsumexp_.end(), head.logsumexp.begin(), head.logsumexp.end());
        }
        return {head_inputs_, head_logsumexp_};
    }

private:
    struct CachedHead {
        Buffer<Scalar> inputs, logsumexp;
    };

    // The distinct examples not yet in `cache`, in first-seen order.
    template <class Cache>
    static std::vector<data::Example> uncached(std::span<const data::Example> examples, const Cache& cache) {
        std::vector<data::Example> missing;
        std::unordered_set<data::Example, data::ExampleHash> seen;
        for (const auto& example : examples)
            if (!cache.contains(example) && seen.insert(example).second) missing.push_back(example);
        return missing;
    }

    auto score_alone(const data::Example& example, model::Logits logits = model::Logits::drop) {
        ++forward_passes_;
        return model_.score(data::make_batch(std::span<const data::Example>(&example, 1)), logits);
    }

    Model model_;
    Options options_;
    std::int64_t forward_passes_ = 0;
    std::unordered_map<data::Example, double, data::ExampleHash> logprob_cache_;
    std::unordered_map<data::Example, Buffer<Scalar>, data::ExampleHash> distribution_cache_;
    std::unordered_map<data::Example, CachedHead, data::ExampleHash> head_cache_;
    std::size_t cached_bytes_ = 0;  // of both caches above
    Buffer<Scalar> scratch_;
    std::vector<Scalar> head_inputs_, head_logsumexp_;  // head_states' result
};

}  // namespace simnpo::loss
