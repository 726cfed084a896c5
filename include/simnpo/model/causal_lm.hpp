#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <concepts>
#include <type_traits>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/layout.hpp"

namespace simnpo::model {

// The model seam (DESIGN §4, issue "Model families").
//
// A causal language model is a *family* (GPT-2, Llama, ...) behind one class
// that holds what every family shares: the parameter and gradient slabs with
// their named views, the batch checks, the gather of the scored rows, the LM
// head, the log-softmax with its target gather, and the backward entry points
// that the losses call. A family supplies only what differs:
//
//   struct Family {
//       using Config = ...;   // vocab_size, width(), max_positions(), validate(where)
//       using Layout = ...;   // a TensorLayout under Hugging Face's names, built from a
//                             // Config, with head() (the [V, C] LM head's offset; the
//                             // token embedding's when tied)
//       static constexpr std::string_view model_type = "...";
//       template <class Backend, class Scalar>
//       struct Trunk;         // embeddings, blocks and final norm: see Gpt2Trunk
//   };
//
// A Trunk is the state one forward pass leaves for its backward: reserve()
// sizes it for a batch shape and what to keep (Keep below), then forward()
// writes the final hidden states [B·T, C] and backward() takes their
// gradient; activation_bytes() says what it keeps. Everything above the model
// (losses, Objective, FrozenReference, optimizers, loops, checkpoints,
// evaluation, generation, the command) sees only CausalLM and the CausalModel
// concept below, never a family's blocks.
//
// What a trunk's forward keeps for its backward: nothing (a scoring pass:
// one layer's buffers serve every layer), every layer's activations, or only
// each block's input, the rest computed again block by block in the backward
// (activation recomputation, Recompute::blocks: the memory of the L block
// inputs and one block's activations, for one more forward through the
// blocks; the same kernels on the same inputs, so the same gradients bit for bit).
enum class Keep { nothing, all, block_inputs };

// A model's choice for its training passes: keep every activation, or recompute each block's.
enum class Recompute { none, blocks };

inline Recompute parse_recompute(std::string_view text, std::string_view where) {
    if (text == "none") return Recompute::none;
    if (text == "blocks") return Recompute::blocks;
    fail(where, ": recompute must be none or blocks, not '", std::string(text), "'");
}

// A trunk's per-layer activation: layer l's slice of a [layers, per_layer]
// buffer. A scoring pass keeps one slice for every layer (stride 0). Slices
// start on 64-byte lines, so that a kernel whose vectorised loops peel a
// misaligned start sees every layer as a scoring pass sees it: the same bits.
template <class Backend, class Scalar>
struct LayerActivation {
    typename Backend::template Buffer<Scalar> data;
    std::int64_t stride = 0;

    Scalar* at(std::int64_t l) { return data.data() + l * stride; }
    std::size_t bytes() const { return data.size() * sizeof(Scalar); }
    // Sizes it for `layers` slices when `keep`, else for one shared by all.
    void reserve(bool keep, std::int64_t layers, std::int64_t per_layer) {
        constexpr std::int64_t line = 64 / static_cast<std::int64_t>(sizeof(Scalar));
        const std::int64_t padded = (per_layer + line - 1) / line * line;
        stride = keep ? padded : 0;
        const std::int64_t slices = keep ? std::max<std::int64_t>(layers, 1) : 1;
        data.resize(static_cast<std::size_t>((slices - 1) * padded + per_layer));
    }
};

// Where a 1-D tensor of the slab lies among the packed fp32 vectors of a
// model whose weights are stored in BF16.
struct PackedTensor {
    std::size_t slab_offset = 0, packed_offset = 0;
};

// The parameter slab as a trunk reads it: `p + offset` is a 1-D tensor's fp32
// values (norm weights, biases); p.weight(offset) a matrix or embedding table
// as the products and gathers take it, with its bfloat16 rounding in BF16
// mode. A model whose weights are stored in BF16 (CausalLM::frozen_in_bf16)
// has no fp32 slab: its 1-D tensors are packed in `vectors`, in slab order
// (so tensors adjacent in the slab stay adjacent), and its weights are the
// rounding alone.
template <class Scalar>
struct Parameters {
    const Scalar* values = nullptr;  // the fp32 slab; null when the weights are stored in BF16
    const bf16* rounded = nullptr;   // the whole slab rounded (BF16 mode), else null
    const Scalar* vectors = nullptr;
    std::span<const PackedTensor> packed;  // sorted by slab offset

    const Scalar* operator+(std::size_t offset) const {
        if (values != nullptr) return values + offset;
        const auto found = std::lower_bound(packed.begin(), packed.end(), offset,
                                            [](const PackedTensor& t, std::size_t o) { return t.slab_offset < o; });
        if (found == packed.end() || found->slab_offset != offset)
            fail("model: the tensor at slab offset ", offset, " is stored in BF16 only");
        return vectors + found->packed_offset;
    }
    Weight<Scalar> weight(std::size_t offset) const {
        return {values != nullptr ? values + offset : nullptr, rounded != nullptr ? rounded + offset : nullptr};
    }
};

// Whether a forward pass keeps the logits [scored, V] (CausalLM::logits(),
// backward_logits(), Scores::logits): losses and statistics on whole
// next-token distributions (KL, membership inference, divergences) need them;
// log-probabilities do not. Without them the CPU runs the LM head fused with
// its log-softmax and their backward over chunks of the vocabulary
// (backend/cpu/fused_head.hpp), so the logits are never held whole; other
// backends compute them and do not hand them out.
enum class Logits { drop, keep };

template <class Family, class Backend, class Scalar>
class CausalLM {
public:
    using family_type = Family;
    using backend_type = Backend;
    using scalar_type = Scalar;
    using config_type = typename Family::Config;
    using layout_type = typename Family::Layout;
    template <class T>
    using Buffer = typename Backend::template Buffer<T>;
    using Trunk = typename Family::template Trunk<Backend, Scalar>;

    // What a scoring pass returns: each scored position's log-probability and,
    // for Logits::keep, the logits [scored, V] there (in backend memory).
    struct Scores {
        std::vector<std::int64_t> positions;  // flat indices b·T + t, in row order
        std::int64_t rows = 0, columns = 0;   // the batch's [B, T]
        std::vector<Scalar> logprobs;         // in the order of positions
        Buffer<Scalar> logits;
        // What the head read and gave, in the order of positions: the final
        // hidden states [scored, C] and each row's log Σ exp of the logits
        // [scored] (for backward_kl, which recomputes the logits from them).
        Buffer<Scalar> head_inputs, logsumexp;

        // ℓ(b) = Σ over row b's scored tokens of log π, accumulated in double.
        std::vector<double> sequence_logprobs() const {
            std::vector<double> sums(static_cast<std::size_t>(rows), 0.0);
            for (std::size_t n = 0; n < logprobs.size(); ++n)
                sums[static_cast<std::size_t>(positions[n] / columns)] += static_cast<double>(logprobs[n]);
            return sums;
        }
    };

    explicit CausalLM(config_type config, Backend backend = {})
        : config_(std::move(config)), layout_(config_), backend_(backend) {
        config_.validate("model config");
        params_.assign(layout_.total(), Scalar{0});
        grads_.assign(layout_.total(), Scalar{0});
    }

    const config_type& config() const { return config_; }
    const layout_type& layout() const { return layout_; }
    Backend& backend() { return backend_; }
    const Backend& backend() const { return backend_; }
    // Writable access counts as a change: BF16 mode rounds the slab again
    // before the next pass. (Write through a reference taken after the last pass.)
    Buffer<Scalar>& params() {
        check_fp32_weights("params()");
        ++params_version_;
        return params_;
    }
    const Buffer<Scalar>& params() const {
        check_fp32_weights("params()");
        return params_;
    }
    Buffer<Scalar>& grads() {
        check_fp32_weights("grads()");
        return grads_;
    }
    const Buffer<Scalar>& grads() const {
        check_fp32_weights("grads()");
        return grads_;
    }

    // Named views into the slabs, by Hugging Face tensor name ("h.0.ln_1.weight",
    // "model.layers.0.self_attn.q_proj.weight"). On a GPU backend they point to device memory.
    std::span<Scalar> param(std::string_view name) { return view(params(), name); }
    std::span<const Scalar> param(std::string_view name) const { return view(params(), name); }
    std::span<Scalar> grad(std::string_view name) { return view(grads(), name); }
    std::span<const Scalar> grad(std::string_view name) const { return view(grads(), name); }

    void zero_grad() { fill_zero(backend_, grads().data(), grads_.size()); }

    // The precision of the products (core/bf16.hpp). BF16 needs float
    // parameters, and on the CPU a build with oneDNN.
    Precision precision() const { return precision_; }
    void set_precision(Precision precision) {
        if (bf16_weights_ && precision != Precision::bf16)
            fail("model: its weights are stored in BF16, so its products are BF16");
        if (precision == Precision::bf16) {
            if constexpr (!std::is_same_v<Scalar, float>)
                fail("model: BF16 products need a float model");
            else if constexpr (std::is_same_v<Backend, simnpo::cpu> && !backend::cpu::bf16_products_available)
                fail("model: BF16 products need oneDNN, and this program was built without it (SIMNPO_USE_DNNL)");
        }
        if (bf16_weights_) return;
        precision_ = precision;
        rounded_version_ = 0;
        if (precision != Precision::bf16) rounded_ = {};
    }

    // A frozen copy for scoring (a reference model) with its weights stored
    // in BF16 (WeightsDtype::bf16): its matrices and embedding tables only as
    // the bfloat16 rounding that BF16 products multiply, half the memory of
    // their fp32 values; its vectors (norm weights, biases) in fp32. It scores
    // as this model does in BF16 mode, except that it gathers its embedding
    // rows from the rounding too. It has no fp32 slab and no gradients:
    // params(), grads() and forward() fail; score(), visit_logits() and being
    // backward_kl()'s reference work. Needs BF16 mode (set_precision).
    CausalLM frozen_in_bf16() const {
        if (precision_ != Precision::bf16)
            fail("model: weights stored in BF16 need BF16 products (set_precision(Precision::bf16) first)");
        if constexpr (!std::is_same_v<Backend, simnpo::cpu>)
            fail("model: weights stored in BF16 are built for the CPU only so far");
        CausalLM frozen(config_, backend_, Unallocated{});
        if constexpr (std::is_same_v<Backend, simnpo::cpu>) {
            const Parameters<Scalar> p = parameters();  // rounded now if the weights changed
            frozen.rounded_.assign(p.rounded, p.rounded + params_.size());
            std::vector<TensorSlot> vectors;
            for (const auto& slot : layout_.slots())
                if (slot.shape.size() == 1) vectors.push_back(slot);
            std::sort(vectors.begin(), vectors.end(),
                      [](const TensorSlot& a, const TensorSlot& b) { return a.offset < b.offset; });
            for (const auto& slot : vectors) {
                frozen.packed_.push_back({slot.offset, frozen.vectors_.size()});
                frozen.vectors_.insert(frozen.vectors_.end(), params_.data() + slot.offset,
                                       params_.data() + slot.offset + slot.size);
            }
        }
        frozen.precision_ = Precision::bf16;
        frozen.bf16_weights_ = true;
        return frozen;
    }
    WeightsDtype weights_dtype() const { return bf16_weights_ ? WeightsDtype::bf16 : WeightsDtype::fp32; }

    // Whether training passes keep every block's activations or recompute them
    // in the backward (Keep above); the gradients are the same either way.
    Recompute recompute() const { return recompute_; }
    void set_recompute(Recompute recompute) { recompute_ = recompute; }

    // The bytes of activations the last forward() kept for backward() (the trunk's).
    std::size_t activation_bytes() const { return tape_.trunk.activation_bytes(); }

    // The forward pass of training: the log-probability of every scored target
    // token, keeping every layer's activations (or, with Recompute::blocks,
    // each block's input) for backward().
    void forward(const data::Batch& batch, Logits logits = Logits::drop) {
        check_fp32_weights("forward()");
        run(tape_, batch, true, logits);
    }

    // The forward pass of evaluation: the same log-probabilities, on a const
    // model, keeping no per-layer activations (one layer's buffers serve all).
    Scores score(const data::Batch& batch, Logits logits = Logits::drop) const {
        Pass pass;
        run(pass, batch, false, logits);
        Scores scores{std::move(pass.host_rows), pass.B,
                      pass.T,                      host_logprobs(pass),
                      std::move(pass.logits),      std::move(pass.head_in),
                      std::move(pass.logsumexp)};
        return scores;
    }

    // Scored positions of the last forward(), as flat indices b·T + t in row order.
    std::span<const std::int64_t> scored_positions() const { return tape_.host_rows; }
    std::int64_t scored_count() const { return tape_.scored; }
    // T of the last forward's [B, T] batch: scored position p is row p / T.
    std::int64_t batch_columns() const { return tape_.T; }

    // log π(target | context) of each scored position of the last forward(), in
    // the order of scored_positions().
    std::vector<Scalar> logprobs() const { return host_logprobs(tape_); }

    // The same as a [B, T] array with 0 at positions that are not scored.
    xt::xtensor<Scalar, 2> token_logprobs() const {
        xt::xtensor<Scalar, 2> result = xt::zeros<Scalar>({static_cast<std::size_t>(tape_.B),
                                                           static_cast<std::size_t>(tape_.T)});
        const auto values = logprobs();
        for (std::size_t n = 0; n < values.size(); ++n) result.data()[tape_.host_rows[n]] = values[n];
        return result;
    }

    // ℓ(b) = Σ over row b's scored tokens of log π, accumulated in double.
    std::vector<double> sequence_logprobs() const {
        std::vector<double> sums(static_cast<std::size_t>(tape_.B), 0.0);
        const auto values = logprobs();
        for (std::size_t n = 0; n < values.size(); ++n)
            sums[static_cast<std::size_t>(tape_.host_rows[n] / tape_.T)] += static_cast<double>(values[n]);
        return sums;
    }

    // Logits [scored_count(), V] of the last forward(batch, Logits::keep) (the scored positions only).
    const Buffer<Scalar>& logits() const {
        if (!tape_.logits_kept) fail("logits: the last forward pass did not keep them (forward(batch, Logits::keep))");
        return tape_.logits;
    }

    // Stores into grads() the gradient of Σ_n token_weights[n] · logprob[n] over
    // the scored positions of the last forward(): added to what grads() holds,
    // or, with GradStore::overwrite, replacing it (no zero_grad() needed).
    void backward(std::span<const Scalar> token_weights, GradStore store = GradStore::accumulate) {
        if (tape_.B == 0) fail("backward: no forward pass to differentiate");
        if (static_cast<std::int64_t>(token_weights.size()) != tape_.scored)
            fail("backward: ", token_weights.size(), " token weights for ", tape_.scored, " scored positions");
        tape_.weights.resize(token_weights.size());
        copy_to_device(backend_, tape_.weights.data(), token_weights);
        if constexpr (fuses_head) {
            if (tape_.head_chunk > 0) {
                fused_head_backward(store);
                return;
            }
        }
        tape_.dlogits.resize(tape_.logits.size());
        logprob_backward(backend_, tape_.dlogits.data(), tape_.logits.data(), tape_.logsumexp.data(),
                         tape_.targets.data(), tape_.weights.data(), tape_.scored, config_.vocab_size);
        backward_from_logit_grad(tape_.dlogits.data(), store);
    }

    // The same for a loss over whole next-token distributions (KL): dlogits
    // [scored_count(), V], in backend memory, is the loss's gradient with
    // respect to logits() of the last forward(batch, Logits::keep).
    void backward_logits(std::span<const Scalar> dlogits, GradStore store = GradStore::accumulate) {
        if (tape_.B == 0) fail("backward_logits: no forward pass to differentiate");
        if (!tape_.logits_kept) fail("backward_logits: the last forward pass did not keep the logits (Logits::keep)");
        if (static_cast<std::int64_t>(dlogits.size()) != tape_.scored * config_.vocab_size)
            fail("backward_logits: ", dlogits.size(), " logit gradients for ", tape_.scored, " scored positions of ",
                 config_.vocab_size, " tokens");
        backward_from_logit_grad(dlogits.data(), store);
    }

    // Whether a forward without the logits runs the fused head, and so whether
    // backward_kl() exists: on the CPU.
    static constexpr bool fuses_head = std::is_same_v<Backend, simnpo::cpu>;

    // The logits of a score() pass without holding them:
    // visit(v0, vc, chunk, ld) for the chunks [v0, v0 + vc) of the vocabulary
    // in order, chunk [scored, vc] (row stride ld) the logits there, computed
    // again from scores.head_inputs (backend/cpu/fused_head.hpp). For
    // statistics of whole distributions (membership inference).
    template <class Visit>
    void visit_logits(const Scores& scores, Visit&& visit) const
        requires fuses_head
    {
        const std::int64_t C = config_.width(), V = config_.vocab_size;
        const auto N = static_cast<std::int64_t>(scores.logprobs.size());
        if (static_cast<std::int64_t>(scores.head_inputs.size()) != N * C)
            fail("visit_logits: the scores hold ", scores.head_inputs.size(), " head inputs for ", N,
                 " positions of width ", C, " (scores of another model?)");
        if (N == 0) return;
        const std::int64_t chunk =
            backend::cpu::head_chunk_columns(N, V, backend::cpu::head_workspace_budget, sizeof(Scalar));
        Buffer<Scalar> workspace(backend::cpu::head_workspace_size<Scalar>(N, chunk));
        fused_head_chunks(backend_, workspace.data(), scores.head_inputs.data(), parameters().weight(layout_.head()), N,
                          C, V, chunk, std::forward<Visit>(visit));
    }

    // The KL retain term through the fused head, without the logits of either
    // model: after forward(batch) (Logits::drop), stores into grads() the
    // gradient of scale · Σ_n KL(p_n ‖ q_n) over the scored positions n, q_n
    // this model's next-token distribution and p_n the one `reference` gives
    // from its head inputs and logsumexp at the same positions
    // (Scores::head_inputs, Scores::logsumexp of its own passes), and returns
    // each KL(p_n ‖ q_n). The reference's logits are computed again chunk by
    // chunk beside the model's: their rounding depends on the batch's row count
    // (the products' blocking), which a resumed run repeats.
    std::vector<double> backward_kl(const CausalLM& reference, std::span<const Scalar> ref_head_inputs,
                                    std::span<const Scalar> ref_logsumexp, Scalar scale,
                                    GradStore store = GradStore::accumulate)
        requires fuses_head
    {
        Pass& pass = tape_;
        const std::int64_t C = config_.width(), V = config_.vocab_size, N = pass.scored;
        const std::int64_t ref_C = reference.config_.width();
        if (pass.B == 0) fail("backward_kl: no forward pass to differentiate");
        if (pass.head_chunk == 0) fail("backward_kl: the last forward pass kept the logits (use Logits::drop)");
        check_reference_states(reference, ref_head_inputs, ref_logsumexp, N, "backward_kl");
        pass.dhead_in.resize(static_cast<std::size_t>(N * C));
        pass.ref_workspace.resize(pass.head_workspace.size());
        std::vector<double> kl(static_cast<std::size_t>(N));
        const auto forward_chunk =
            pass.head_chunk_kept ? backend::cpu::ForwardChunk::kept : backend::cpu::ForwardChunk::recompute;
        pass.head_chunk_kept = false;
        fused_head_kl_backward(backend_, pass.dhead_in.data(), grads_.data() + layout_.head(), kl.data(),
                               pass.head_workspace.data(), pass.ref_workspace.data(), pass.head_in.data(),
                               parameters().weight(layout_.head()), pass.logsumexp.data(), ref_head_inputs.data(),
                               reference.parameters().weight(reference.layout_.head()), ref_logsumexp.data(), scale, N,
                               C, ref_C, V, pass.head_chunk, store, forward_chunk);
        backward_trunk(store);
        return kl;
    }

    // The same KL(p_n ‖ q_n) at the positions of a score() pass of this model,
    // with no gradient (an evaluation: eval::mean_token_kl).
    std::vector<double> token_kl(const Scores& scores, const CausalLM& reference,
                                 std::span<const Scalar> ref_head_inputs, std::span<const Scalar> ref_logsumexp) const
        requires fuses_head
    {
        const std::int64_t C = config_.width(), V = config_.vocab_size, ref_C = reference.config_.width();
        const auto N = static_cast<std::int64_t>(scores.logprobs.size());
        if (static_cast<std::int64_t>(scores.head_inputs.size()) != N * C)
            fail("token_kl: the scores hold ", scores.head_inputs.size(), " head inputs for ", N,
                 " positions of width ", C, " (scores of another model?)");
        check_reference_states(reference, ref_head_inputs, ref_logsumexp, N, "token_kl");
        std::vector<double> kl(static_cast<std::size_t>(N));
        if (N == 0) return kl;
        const std::int64_t chunk =
            backend::cpu::head_chunk_columns(N, V, backend::cpu::head_workspace_budget, sizeof(Scalar));
        Buffer<Scalar> workspace(backend::cpu::head_workspace_size<Scalar>(N, chunk)), ref_workspace(workspace.size());
        fused_head_kl(backend_, kl.data(), workspace.data(), ref_workspace.data(), scores.head_inputs.data(),
                      parameters().weight(layout_.head()), scores.logsumexp.data(), ref_head_inputs.data(),
                      reference.parameters().weight(reference.layout_.head()), ref_logsumexp.data(), N, C, ref_C, V,
                      chunk);
        return kl;
    }

    // The slab as a pass reads it (Parameters), rounded to bfloat16 first in
    // BF16 mode when it has changed since the last rounding. The rounding is a
    // cache behind const: call this once before passes on several threads
    // (generate_greedy does), and none of them rounds again.
    Parameters<Scalar> parameters() const {
        if (bf16_weights_) return {nullptr, rounded_.data(), vectors_.data(), packed_};
        if (precision_ != Precision::bf16) return {params_.data(), nullptr, nullptr, {}};
        if constexpr (std::is_same_v<Scalar, float>) {
            if (rounded_version_ != params_version_ + 1) {
                rounded_.resize(params_.size());
                round_to_bf16(backend_, rounded_.data(), params_.data(), static_cast<std::int64_t>(params_.size()));
                rounded_version_ = params_version_ + 1;
            }
        }
        return {params_.data(), rounded_.data(), nullptr, {}};
    }

private:

    // Everything one forward pass leaves behind: the trunk's activations and
    // the head's inputs and outputs at the scored rows.
    struct Pass {
        Trunk trunk;
        Buffer<std::int32_t> tokens, targets;
        Buffer<std::int64_t> lengths, rows;
        std::vector<std::int64_t> host_rows;
        Buffer<Scalar> head_in, logits, logprobs, logsumexp;
        Buffer<Scalar> weights, dlogits, dhead_in, dhidden;  // the backward's
        // The fused head's (Logits::drop on the CPU): its chunk of vocabulary
        // columns (0 when the head did not run fused), and the workspace that
        // holds a chunk of logits; the forward's last chunk is still there until a backward.
        Buffer<Scalar> head_workspace, ref_workspace;  // ref_workspace: backward_kl's reference chunk
        std::int64_t head_chunk = 0;
        bool head_chunk_kept = false, logits_kept = false;
        std::int64_t B = 0, T = 0, scored = 0;
    };

    void run(Pass& pass, const data::Batch& batch, bool keep, Logits logits) const {
        const std::int64_t B = batch.rows(), T = batch.columns();
        const std::int64_t C = config_.width(), V = config_.vocab_size;
        check_batch(batch);
        Backend backend = backend_;
        pass.B = pass.T = 0;  // set again when the pass completes
        pass.head_chunk = 0;
        pass.head_chunk_kept = pass.logits_kept = false;
        const bool fused = fuses_head && logits == Logits::drop;
        pass.trunk.reserve(config_, B, T,
                           !keep ? Keep::nothing : recompute_ == Recompute::blocks ? Keep::block_inputs : Keep::all);
        pass.tokens.resize(static_cast<std::size_t>(B * T));
        pass.lengths.resize(static_cast<std::size_t>(B));
        copy_to_device(backend, pass.tokens.data(),
                       std::span<const std::int32_t>(batch.tokens.data(), batch.tokens.size()));
        copy_to_device(backend, pass.lengths.data(), std::span<const std::int64_t>(batch.lengths));
        std::vector<std::int64_t> rows;
        std::vector<std::int32_t> targets;
        for (std::int64_t bt = 0; bt < B * T; ++bt)
            if (batch.targets.data()[bt] >= 0) {
                rows.push_back(bt);
                targets.push_back(batch.targets.data()[bt]);
            }
        const auto N = static_cast<std::int64_t>(rows.size());
        pass.rows.resize(rows.size());
        pass.targets.resize(rows.size());
        pass.head_in.resize(static_cast<std::size_t>(N * C));
        if (fused)
            pass.logits = {};
        else
            pass.logits.resize(static_cast<std::size_t>(N * V));
        pass.logprobs.resize(rows.size());
        pass.logsumexp.resize(rows.size());
        copy_to_device(backend, pass.rows.data(), std::span<const std::int64_t>(rows));
        copy_to_device(backend, pass.targets.data(), std::span<const std::int32_t>(targets));

        const Parameters<Scalar> p = parameters();
        const Scalar* hidden =
            pass.trunk.forward(backend, config_, layout_, p, pass.tokens.data(), pass.lengths.data(), B, T);
        // The LM head runs on scored positions only: the loss reads nothing else.
        gather_rows(backend, pass.head_in.data(), hidden, pass.rows.data(), N, C);
        if constexpr (fuses_head) {
            if (fused && N > 0) {
                const std::int64_t chunk = backend::cpu::head_chunk_columns(N, V, backend::cpu::head_workspace_budget,
                                                                            sizeof(Scalar));
                pass.head_workspace.resize(backend::cpu::head_workspace_size<Scalar>(N, chunk));
                fused_head_logprobs(backend, pass.logprobs.data(), pass.logsumexp.data(), pass.head_workspace.data(),
                                    pass.head_in.data(), p.weight(layout_.head()), pass.targets.data(), N, C, V, chunk);
                pass.head_chunk = chunk;
                pass.head_chunk_kept = true;
            }
        }
        if (!fused) {
            lm_head_forward(backend, pass.logits.data(), pass.head_in.data(), p.weight(layout_.head()), N, C, V);
            logsoftmax_gather(backend, pass.logprobs.data(), pass.logsumexp.data(), pass.logits.data(),
                              pass.targets.data(), N, V);
        }
        pass.logits_kept = !fused;
        pass.host_rows = std::move(rows);
        pass.scored = N;
        pass.B = B;
        pass.T = T;
    }

    std::vector<Scalar> host_logprobs(const Pass& pass) const {
        std::vector<Scalar> host(static_cast<std::size_t>(pass.scored));
        copy_to_host(backend_, std::span<Scalar>(host), pass.logprobs.data());
        return host;
    }

    // Backpropagates dlogits [scored, V] through the head and the trunk.
    void backward_from_logit_grad(const Scalar* dlogits, GradStore store) {
        Pass& pass = tape_;
        const std::int64_t C = config_.width(), V = config_.vocab_size;
        pass.dhead_in.resize(static_cast<std::size_t>(pass.scored * C));
        lm_head_backward(backend_, pass.dhead_in.data(), grads_.data() + layout_.head(), dlogits, pass.head_in.data(),
                         parameters().weight(layout_.head()), pass.scored, C, V, store);
        backward_trunk(store);
    }

    // The same from the token weights of backward(), through the fused head.
    void fused_head_backward(GradStore store) {
        Pass& pass = tape_;
        const std::int64_t C = config_.width(), V = config_.vocab_size;
        pass.dhead_in.resize(static_cast<std::size_t>(pass.scored * C));
        // The backward overwrites the forward's last chunk with its gradient.
        const auto forward_chunk =
            pass.head_chunk_kept ? backend::cpu::ForwardChunk::kept : backend::cpu::ForwardChunk::recompute;
        pass.head_chunk_kept = false;
        fused_head_logprob_backward(backend_, pass.dhead_in.data(), grads_.data() + layout_.head(),
                                    pass.head_workspace.data(), pass.head_in.data(), parameters().weight(layout_.head()),
                                    pass.logsumexp.data(), pass.targets.data(), pass.weights.data(), pass.scored, C, V,
                                    pass.head_chunk, store, forward_chunk);
        backward_trunk(store);
    }

    // From dhead_in, the gradient of the head's inputs: the trunk's backward.
    void backward_trunk(GradStore store) {
        Pass& pass = tape_;
        const std::int64_t C = config_.width(), BT = pass.B * pass.T;
        const Parameters<Scalar> p = parameters();
        Scalar* g = grads_.data();
        pass.dhidden.resize(static_cast<std::size_t>(BT * C));
        fill_zero(backend_, pass.dhidden.data(), pass.dhidden.size());
        scatter_add_rows(backend_, pass.dhidden.data(), pass.dhead_in.data(), pass.rows.data(), pass.scored, C);
        pass.trunk.backward(backend_, config_, layout_, p, g, pass.dhidden.data(), pass.tokens.data(),
                            pass.lengths.data(), pass.B, pass.T, store);
    }

    struct Unallocated {};
    CausalLM(config_type config, Backend backend, Unallocated)
        : config_(std::move(config)), layout_(config_), backend_(backend) {}

    // A reference's head inputs [N, its width] and logsumexp [N] for N positions of this model's.
    void check_reference_states(const CausalLM& reference, std::span<const Scalar> ref_head_inputs,
                                std::span<const Scalar> ref_logsumexp, std::int64_t N, const char* what) const {
        if (reference.config_.vocab_size != config_.vocab_size)
            fail(what, ": the reference's vocabulary (", reference.config_.vocab_size, ") is not the model's (",
                 config_.vocab_size, ")");
        if (static_cast<std::int64_t>(ref_head_inputs.size()) != N * reference.config_.width() ||
            static_cast<std::int64_t>(ref_logsumexp.size()) != N)
            fail(what, ": ", ref_logsumexp.size(), " reference positions for ", N, " scored positions");
    }

    void check_fp32_weights(std::string_view what) const {
        if (bf16_weights_)
            fail("model: ", what, " of a model whose weights are stored in BF16: it is frozen, for scoring only");
    }

    template <class Slab>
    auto view(Slab& slab, std::string_view name) const {
        const TensorSlot* slot = layout_.find(name);
        if (slot == nullptr) fail("model: no parameter named '", name, "'");
        return std::span(slab.data() + slot->offset, slot->size);
    }

    void check_batch(const data::Batch& batch) const {
        const std::int64_t B = batch.rows(), T = batch.columns();
        if (B == 0 || T == 0) fail("forward: empty batch");
        if (T > config_.max_positions())
            fail("forward: batch of ", T, " positions is longer than the model's ", config_.max_positions());
        if (batch.targets.shape() != batch.tokens.shape()) fail("forward: tokens and targets differ in shape");
        if (static_cast<std::int64_t>(batch.lengths.size()) != B)
            fail("forward: ", batch.lengths.size(), " lengths for ", B, " rows");
        for (std::int64_t b = 0; b < B; ++b) {
            const std::int64_t length = batch.lengths[static_cast<std::size_t>(b)];
            if (length < 1 || length > T) fail("forward: row ", b, " has length ", length);
            for (std::int64_t t = 0; t < T; ++t) {
                const std::int32_t token = batch.tokens(b, t), target = batch.targets(b, t);
                if (token < 0 || token >= config_.vocab_size)
                    fail("forward: token id ", token, " at (", b, ", ", t, ") is outside the vocabulary");
                if (target >= config_.vocab_size || target < -1)
                    fail("forward: target id ", target, " at (", b, ", ", t, ") is outside the vocabulary");
                if (target >= 0 && t >= length) fail("forward: position (", b, ", ", t, ") is padding but scored");
            }
        }
    }

    config_type config_;
    layout_type layout_;
    Backend backend_;
    Buffer<Scalar> params_, grads_;
    Precision precision_ = Precision::fp32;
    Recompute recompute_ = Recompute::none;
    std::uint64_t params_version_ = 0;        // bumped by every writable access to params_
    mutable Buffer<bf16> rounded_;            // BF16 mode: params_ rounded, as of version rounded_version_ − 1
    mutable std::uint64_t rounded_version_ = 0;  // 0: not rounded yet
    // Weights stored in BF16 (frozen_in_bf16): rounded_ is the slab, and the
    // 1-D tensors are packed in vectors_, placed by packed_.
    bool bf16_weights_ = false;
    std::vector<Scalar> vectors_;
    std::vector<PackedTensor> packed_;
    Pass tape_;  // what the last forward() left for backward()
};

// What the rest of the library relies on from a model, whatever its family
// and backend.
template <class M>
concept CausalModel = requires(M& model, const M& frozen, const data::Batch& batch,
                               std::span<const typename M::scalar_type> values) {
    typename M::family_type;
    typename M::backend_type;
    typename M::scalar_type;
    model.forward(batch);
    model.backward(values);
    model.backward_logits(values);
    frozen.score(batch);
    { frozen.sequence_logprobs() } -> std::same_as<std::vector<double>>;
    { frozen.scored_count() } -> std::same_as<std::int64_t>;
    { frozen.config().vocab_size } -> std::convertible_to<std::int64_t>;
    { frozen.config().max_positions() } -> std::convertible_to<std::int64_t>;
    model.params();
    model.grads();
    model.zero_grad();
};

// A model on the CPU, any family (what generation and evaluation take).
template <class M>
concept CpuModel = CausalModel<M> && std::same_as<typename M::backend_type, simnpo::cpu>;

}  // namespace simnpo::model
