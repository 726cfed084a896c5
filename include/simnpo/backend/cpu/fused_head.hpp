#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/backend/cpu/matmul.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cpu {

// The LM head fused with what reads its logits, over chunks of the vocabulary:
// logits [N, V] = inp [N, C] · headᵀ (head [V, C]) are only ever held Vc
// columns at a time, in a workspace of head_workspace_size<S>(N, Vc) elements
// (N rows of Vc, padded), so at N = 8192, V = 128256 a pass needs tens of MB
// where the logits alone are 4 GB. The backward computes each chunk's logits
// again, but for the one the forward left in the workspace (ForwardChunk).
//
// The bits depend neither on the thread count nor on where the workspace lies:
// chunks are fixed by Vc and visited in a fixed order, each product is split
// into the fixed column blocks of parallel_column_blocks, each row's
// element-wise work runs on one thread, and each chunk row starts on a 64-byte
// line (Eigen's vectorised loops peel a misaligned start, and exp and sums
// round differently there). They do differ from the unfused kernels
// (lm_head_forward, logsoftmax_gather, logprob_backward, lm_head_backward) in
// rounding: log Σ exp is combined over chunks, and dinp's sum over the
// vocabulary is split at the chunk edges. In BF16 mode (a head Weight with its
// rounding) the products take bfloat16 roundings of inp, of the head and of
// each chunk's logit gradients, as the unfused kernels do; the rest is fp32.

// The workspace a chunk may take by default, and the fewest columns a chunk
// has (so that each product stays large enough to run at full rate). 64 MB
// holds GPT-2's whole vocabulary for 256 rows in float: one chunk, which the
// backward takes as the forward left it, so no product runs twice.
inline constexpr std::size_t head_workspace_budget = std::size_t{64} << 20;
inline constexpr std::int64_t head_chunk_min_columns = 8 * linear_block;

// How many vocabulary columns one chunk holds for N rows of `scalar_size`
// bytes within `budget_bytes`: V when the whole vocabulary fits, else a
// multiple of linear_block (so that the chunks' product blocks are the unfused
// head's), at least head_chunk_min_columns (which may exceed the budget for
// very large N) and at most V.
inline std::int64_t head_chunk_columns(std::int64_t N, std::int64_t V, std::size_t budget_bytes,
                                       std::size_t scalar_size) {
    if (V < 1) fail("head_chunk_columns: a vocabulary of ", V, " tokens");
    const std::size_t row_bytes =
        static_cast<std::size_t>(std::max<std::int64_t>(N, 1)) * std::max<std::size_t>(scalar_size, 1);
    const std::size_t fit = budget_bytes / row_bytes;
    if (fit >= static_cast<std::size_t>(V)) return V;
    return std::min(V, std::max(static_cast<std::int64_t>(fit) / linear_block * linear_block, head_chunk_min_columns));
}

// A chunk's row stride: Vc rounded up to whole 64-byte lines.
inline constexpr std::size_t head_line_bytes = 64;
template <class S>
constexpr std::int64_t head_chunk_stride(std::int64_t Vc) {
    constexpr auto line = static_cast<std::int64_t>(head_line_bytes / sizeof(S));
    return (Vc + line - 1) / line * line;
}

// The elements of S a workspace for chunks of Vc columns holds: N rows of
// head_chunk_stride, and one line to align them wherever it is allocated.
template <class S>
constexpr std::size_t head_workspace_size(std::int64_t N, std::int64_t Vc) {
    return static_cast<std::size_t>(N * head_chunk_stride<S>(Vc)) + head_line_bytes / sizeof(S);
}

namespace detail {

// The first 64-byte line of a workspace.
template <class S>
S* head_chunk_rows(S* workspace) {
    const auto misalignment = reinterpret_cast<std::uintptr_t>(workspace) % head_line_bytes;
    return workspace + (misalignment == 0 ? 0 : (head_line_bytes - misalignment) / sizeof(S));
}

inline void check_head_chunk(std::int64_t V, std::int64_t Vc, const char* kernel) {
    if (V < 1 || Vc < 1) fail(kernel, ": ", V, " vocabulary columns in chunks of ", Vc);
}

// Token ids index the logits' columns: one outside [0, V) is an error, not a read out of bounds.
inline void check_head_targets(const std::int32_t* targets, std::int64_t N, std::int64_t V, const char* kernel) {
    for (std::int64_t n = 0; n < N; ++n)
        if (targets[n] < 0 || targets[n] >= V)
            fail(kernel, ": target ", targets[n], " of row ", n, " is outside the vocabulary of ", V);
}

// A product's operand [rows, columns] (row stride ld) as the head's
// precision wants it: rounded into `storage` (same stride) when the head is
// (BF16 mode).
template <class S>
Weight<S> head_operand(const S* values, std::int64_t rows, std::int64_t columns, std::int64_t ld,
                       const Weight<S>& head, std::vector<bf16>& storage) {
    if (head.rounded == nullptr) return {values, nullptr};
    if constexpr (!std::is_same_v<S, float>) {
        fail("fused LM head: BF16 products take float operands");
    } else {
        storage.resize(static_cast<std::size_t>(rows * ld));
#pragma omp parallel for schedule(static)
        for (std::int64_t r = 0; r < rows; ++r) simnpo::round_to_bf16(storage.data() + r * ld, values + r * ld, columns);
        return {values, storage.data()};
    }
}

// chunk [N, vc] (row stride ld) = inp · head[v0 : v0 + vc]ᵀ.
template <class S>
void head_chunk_logits(S* chunk, std::int64_t ld, const Weight<S>& inp, const Weight<S>& head, std::int64_t N,
                       std::int64_t C, std::int64_t v0, std::int64_t vc) {
    product_columns(head.rounded != nullptr, vc, [&](std::int64_t begin, std::int64_t end) {
        product(false, false, true, N, end - begin, C, inp, 0, C, head, (v0 + begin) * C, C, chunk + begin, ld);
    });
}

// Σ_v p_v·(log p_v − log q_v) over one chunk's columns of a row, from the
// model's logits `row` and the reference's `ref` with their logsumexps (p =
// softmax of the reference's), summed in double, with 0·log 0 = 0 where the
// reference gives a token no mass.
template <class Row, class S>
double chunk_kl(const Row& row, const Row& ref, S logsumexp, S ref_logsumexp) {
    const auto log_p = ref - ref_logsumexp;
    const auto p = log_p.exp();
    return (p > S(0)).select(p * (log_p - (row - logsumexp)), S(0)).template cast<double>().sum();
}

// Each row's KL chunk by chunk ([N, chunks], row-major), then summed in the
// vocabulary's order, whichever order the chunks were visited in: the forward
// and the backward (which runs from the last chunk) give the same bits.
struct ChunkKl {
    std::int64_t chunks, Vc;
    std::vector<double> parts;
    ChunkKl(std::int64_t N, std::int64_t V, std::int64_t Vc_)
        : chunks((V + Vc_ - 1) / Vc_), Vc(Vc_), parts(static_cast<std::size_t>(N * chunks)) {}
    double& at(std::int64_t n, std::int64_t v0) { return parts[static_cast<std::size_t>(n * chunks + v0 / Vc)]; }
    void sum_into(double* kl) const {
        const auto N = static_cast<std::int64_t>(parts.size()) / chunks;
        for (std::int64_t n = 0; n < N; ++n) {
            kl[n] = 0.0;
            for (std::int64_t c = 0; c < chunks; ++c) kl[n] += parts[static_cast<std::size_t>(n * chunks + c)];
        }
    }
};

}  // namespace detail

// Runs visit(v0, vc, chunk, ld) for the chunks [v0, v0 + vc) of the
// vocabulary in order, chunk (row stride ld) holding the logits
// inp · head[v0 : v0 + vc]ᵀ: for consumers of whole distributions (a KL
// term, membership-inference moments). visit runs on the calling thread.
// workspace holds head_workspace_size<S>(N, Vc).
template <class S, class Visit>
void fused_head_chunks(Tag, S* workspace, const S* inp, Weight<std::type_identity_t<S>> head, std::int64_t N,
                       std::int64_t C, std::int64_t V, std::int64_t Vc, Visit&& visit) {
    detail::check_head_chunk(V, Vc, "fused_head_chunks");
    S* chunk = detail::head_chunk_rows(workspace);
    const std::int64_t ld = head_chunk_stride<S>(Vc);
    std::vector<bf16> rounded_inp;
    const Weight<S> x = detail::head_operand(inp, N, C, C, head, rounded_inp);
    for (std::int64_t v0 = 0; v0 < V; v0 += Vc) {
        const std::int64_t vc = std::min(Vc, V - v0);
        detail::head_chunk_logits(chunk, ld, x, head, N, C, v0, vc);
        visit(v0, vc, static_cast<const S*>(chunk), ld);
    }
}

// logsoftmax_gather on the head's logits without holding them:
//   logsumexp [N] = log Σ_v exp(inp[n] · head[v])
//   logprobs  [N] = inp[n] · head[targets[n]] − logsumexp[n]
// log Σ exp is combined online over the chunks (the running maximum, and the
// sum of exp(logit − maximum) in double). workspace holds
// head_workspace_size<S>(N, Vc).
template <class S>
void fused_head_logprobs(Tag tag, S* logprobs, S* logsumexp, S* workspace, const S* inp,
                         Weight<std::type_identity_t<S>> head, const std::int32_t* targets, std::int64_t N, std::int64_t C, std::int64_t V,
                         std::int64_t Vc) {
    detail::check_head_targets(targets, N, V, "fused_head_logprobs");
    // Until the last chunk, logsumexp holds each row's running maximum and logprobs its target's logit.
    std::vector<double> sums(static_cast<std::size_t>(N), 0.0);
    std::fill_n(logsumexp, N, -std::numeric_limits<S>::infinity());
    const auto combine = [&](std::int64_t v0, std::int64_t vc, const S* chunk, std::int64_t ld) {
#pragma omp parallel for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            const ConstArrayMap<S> row(chunk + n * ld, vc);
            const S chunk_max = row.maxCoeff();
            if (chunk_max > logsumexp[n]) {
                sums[n] *= std::exp(static_cast<double>(logsumexp[n]) - static_cast<double>(chunk_max));
                logsumexp[n] = chunk_max;
            }
            sums[n] += static_cast<double>((row - logsumexp[n]).exp().sum());
            const std::int64_t target = targets[n] - v0;
            if (target >= 0 && target < vc) logprobs[n] = row[target];
        }
    };
    fused_head_chunks(tag, workspace, inp, head, N, C, V, Vc, combine);
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        logsumexp[n] = static_cast<S>(static_cast<double>(logsumexp[n]) + std::log(sums[n]));
        logprobs[n] -= logsumexp[n];
    }
}

// What a backward finds in its workspace: nothing it can use, or the last
// chunk of a forward pass (fused_head_chunks, fused_head_logprobs) over the
// same inp, head, N, C, V and Vc, left as it was. Then that chunk's product
// is not computed again: with the whole vocabulary in one chunk, none is.
enum class ForwardChunk { recompute, kept };

// The head's backward from a loss on its logits, chunk by chunk from the last:
// for each chunk [v0, v0 + vc) it computes the logits into the workspace again
// (unless `forward_chunk` says the workspace holds them) and calls
// to_grad(v0, vc, chunk, ld), which overwrites them in place with dL/dlogits
// for those columns; then it
//   writes  dinp [N, C] = dlogits · head (summed over the chunks in that order), and
//   stores  dhead rows [v0, v0 + vc) = dlogits[:, v0 : v0 + vc]ᵀ · inp (adds
//           or overwrites, per `store`: each row is stored by one chunk only).
// workspace holds head_workspace_size<S>(N, Vc).
template <class S, class ToGrad>
void fused_head_backward(Tag, S* dinp, S* dhead, S* workspace, const S* inp, Weight<std::type_identity_t<S>> head,
                         std::int64_t N, std::int64_t C, std::int64_t V, std::int64_t Vc, GradStore store,
                         ForwardChunk forward_chunk, ToGrad&& to_grad) {
    detail::check_head_chunk(V, Vc, "fused_head_backward");
    const bool accumulate = store == GradStore::accumulate, low = head.rounded != nullptr;
    S* chunk = detail::head_chunk_rows(workspace);
    const std::int64_t ld = head_chunk_stride<S>(Vc), last = (V - 1) / Vc * Vc;
    std::vector<bf16> rounded_inp, rounded_chunk;
    const Weight<S> x = detail::head_operand(inp, N, C, C, head, rounded_inp);
    for (std::int64_t v0 = last; v0 >= 0; v0 -= Vc) {
        const std::int64_t vc = std::min(Vc, V - v0);
        const bool first = v0 == last;
        if (!first || forward_chunk == ForwardChunk::recompute)
            detail::head_chunk_logits(chunk, ld, x, head, N, C, v0, vc);
        to_grad(v0, vc, chunk, ld);
        const Weight<S> dlogits = detail::head_operand(static_cast<const S*>(chunk), N, vc, ld, head, rounded_chunk);
        detail::product_columns(low, C, [&](std::int64_t begin, std::int64_t end) {
            detail::product(!first, false, false, N, end - begin, vc, dlogits, 0, ld, head, v0 * C + begin, C,
                            dinp + begin, C);
        });
        // dhead's rows are the chunk's columns: blocks of them, as output rows.
        detail::product_columns(low, vc, [&](std::int64_t begin, std::int64_t end) {
            detail::product(accumulate, true, false, end - begin, C, N, dlogits, begin, ld, x, 0, C,
                            dhead + (v0 + begin) * C, C);
        });
    }
}

// logprob_backward and lm_head_backward without the logits: the gradient of
// Σ_n weights[n] · logprobs[n], with dL/dlogits = weights[n] · (onehot(targets[n])
// − softmax), from the logsumexp of fused_head_logprobs. Writes dinp, stores
// dhead per `store`. workspace holds head_workspace_size<S>(N, Vc), as
// fused_head_logprobs left it when `forward_chunk` is kept.
template <class S>
void fused_head_logprob_backward(Tag tag, S* dinp, S* dhead, S* workspace, const S* inp,
                                 Weight<std::type_identity_t<S>> head, const S* logsumexp, const std::int32_t* targets, const S* weights, std::int64_t N,
                                 std::int64_t C, std::int64_t V, std::int64_t Vc, GradStore store,
                                 ForwardChunk forward_chunk = ForwardChunk::recompute) {
    detail::check_head_targets(targets, N, V, "fused_head_logprob_backward");
    const auto to_grad = [&](std::int64_t v0, std::int64_t vc, S* chunk, std::int64_t ld) {
#pragma omp parallel for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            ArrayMap<S> row(chunk + n * ld, vc);
            row = -weights[n] * (row - logsumexp[n]).exp();
            const std::int64_t target = targets[n] - v0;
            if (target >= 0 && target < vc) row[target] += weights[n];
        }
    };
    fused_head_backward(tag, dinp, dhead, workspace, inp, head, N, C, V, Vc, store, forward_chunk, to_grad);
}

// kl_forward_backward and lm_head_backward without the logits: KL(p ‖ q) row
// by row, p = softmax(ref_inp · ref_headᵀ) the frozen reference's (ref_inp
// [N, ref_C], ref_head [V, ref_C]) and q = softmax(inp · headᵀ) the model's,
// each with its logsumexp [N] from fused_head_logprobs:
//   kl [N] = Σ_v p[n, v] · (log p[n, v] − log q[n, v])   (summed in double)
// and the gradient of scale · Σ_n kl[n], dL/dlogits = scale · (q − p): writes
// dinp, stores dhead per `store`. workspace and ref_workspace hold
// head_workspace_size<S>(N, Vc) each; workspace as the model's
// fused_head_logprobs left it when `forward_chunk` is kept.
template <class S>
void fused_head_kl_backward(Tag tag, S* dinp, S* dhead, double* kl, S* workspace, S* ref_workspace, const S* inp,
                            Weight<std::type_identity_t<S>> head, const S* logsumexp, const S* ref_inp,
                            Weight<std::type_identity_t<S>> ref_head,
                            const S* ref_logsumexp, std::type_identity_t<S> scale, std::int64_t N, std::int64_t C,
                            std::int64_t ref_C, std::int64_t V, std::int64_t Vc, GradStore store,
                            ForwardChunk forward_chunk = ForwardChunk::recompute) {
    detail::check_head_chunk(V, Vc, "fused_head_kl_backward");
    detail::ChunkKl parts(N, V, Vc);
    S* ref_chunk = detail::head_chunk_rows(ref_workspace);
    std::vector<bf16> rounded_ref_inp;
    const Weight<S> ref_x = detail::head_operand(ref_inp, N, ref_C, ref_C, ref_head, rounded_ref_inp);
    const auto to_grad = [&](std::int64_t v0, std::int64_t vc, S* chunk, std::int64_t ld) {
        detail::head_chunk_logits(ref_chunk, ld, ref_x, ref_head, N, ref_C, v0, vc);
#pragma omp parallel for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            ArrayMap<S> row(chunk + n * ld, vc), ref(ref_chunk + n * ld, vc);
            parts.at(n, v0) = detail::chunk_kl(row, ref, logsumexp[n], ref_logsumexp[n]);
            row = scale * ((row - logsumexp[n]).exp() - (ref - ref_logsumexp[n]).exp());
        }
    };
    fused_head_backward(tag, dinp, dhead, workspace, inp, head, N, C, V, Vc, store, forward_chunk, to_grad);
    parts.sum_into(kl);
}

// The kl [N] of fused_head_kl_backward alone, with no gradient: for a KL as
// an evaluation (eval::mean_token_kl). workspace and ref_workspace hold
// head_workspace_size<S>(N, Vc) each.
template <class S>
void fused_head_kl(Tag tag, double* kl, S* workspace, S* ref_workspace, const S* inp,
                   Weight<std::type_identity_t<S>> head, const S* logsumexp, const S* ref_inp,
                   Weight<std::type_identity_t<S>> ref_head, const S* ref_logsumexp, std::int64_t N, std::int64_t C,
                   std::int64_t ref_C, std::int64_t V, std::int64_t Vc) {
    detail::check_head_chunk(V, Vc, "fused_head_kl");
    detail::ChunkKl parts(N, V, Vc);
    S* ref_chunk = detail::head_chunk_rows(ref_workspace);
    std::vector<bf16> rounded_ref_inp;
    const Weight<S> ref_x = detail::head_operand(ref_inp, N, ref_C, ref_C, ref_head, rounded_ref_inp);
    const auto add_chunk = [&](std::int64_t v0, std::int64_t vc, const S* chunk, std::int64_t ld) {
        detail::head_chunk_logits(ref_chunk, ld, ref_x, ref_head, N, ref_C, v0, vc);
#pragma omp parallel for schedule(static)
        for (std::int64_t n = 0; n < N; ++n) {
            const ConstArrayMap<S> row(chunk + n * ld, vc), ref(ref_chunk + n * ld, vc);
            parts.at(n, v0) = detail::chunk_kl(row, ref, logsumexp[n], ref_logsumexp[n]);
        }
    };
    fused_head_chunks(tag, workspace, inp, head, N, C, V, Vc, add_chunk);
    parts.sum_into(kl);
}

}  // namespace simnpo::backend::cpu
