#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"
#ifdef SIMNPO_USE_DNNL
#include "simnpo/backend/cpu/dnnl.hpp"
#endif

namespace simnpo::backend::cpu {

// Every product is split across the OpenMP team by output blocks, each block
// one single-threaded GEMM: oneDNN's (which runs on the calling thread inside
// a parallel region), or Eigen's own for other scalar types (double, in the
// gradient checks) and in builds without oneDNN. One thread pool only, and
// blocks of a fixed size (below), so the bits do not depend on the thread count.
//
// C [M, N] = op(A) · op(B), or C += op(A) · op(B) when `accumulate`; op(A) is
// [M, K], op(B) [K, N]; all three row-major with row strides lda, ldb, ldc.
template <class S>
void gemm(bool accumulate, bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
          const S* A, std::int64_t lda, const S* B, std::int64_t ldb, S* C, std::int64_t ldc) {
#ifdef SIMNPO_USE_DNNL
    if constexpr (std::is_same_v<S, float>) {
        dnnl_detail::gemm(accumulate, transpose_a, transpose_b, M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    auto c = matrix(C, M, N, ldc);
    const auto store = [&](const auto& a, const auto& b) {
        if (accumulate)
            c.noalias() += a * b;
        else
            c.noalias() = a * b;
    };
    if (!transpose_a && !transpose_b) store(matrix(A, M, K, lda), matrix(B, K, N, ldb));
    else if (!transpose_a) store(matrix(A, M, K, lda), matrix(B, N, K, ldb).transpose());
    else if (!transpose_b) store(matrix(A, K, M, lda).transpose(), matrix(B, K, N, ldb));
    else store(matrix(A, K, M, lda).transpose(), matrix(B, N, K, ldb).transpose());
}

// The same with bfloat16 operands and fp32 sums and output (BF16 mode).
inline void gemm(bool accumulate, bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
                 const bf16* A, std::int64_t lda, const bf16* B, std::int64_t ldb, float* C, std::int64_t ldc) {
#ifdef SIMNPO_USE_DNNL
    dnnl_detail::gemm(accumulate, transpose_a, transpose_b, M, N, K, A, lda, B, ldb, C, ldc);
#else
    (void)accumulate, (void)transpose_a, (void)transpose_b, (void)M, (void)N, (void)K;
    (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    fail("BF16 products need oneDNN: this program was built without it (SIMNPO_USE_DNNL)");
#endif
}

// out [n] = in rounded to bfloat16 (BF16 mode's copy of the weights).
inline void round_to_bf16(Tag, bf16* out, const float* in, std::int64_t n) {
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        simnpo::round_to_bf16(out + begin, in + begin, end - begin);
    });
}

// Whether this build multiplies in BF16 (it needs oneDNN).
inline constexpr bool bf16_products_available =
#ifdef SIMNPO_USE_DNNL
    true;
#else
    false;
#endif

// Fixed blocks of linear_block output columns, shared out among the threads:
// body(begin, end) over [0, n). A GEMM's rounding may depend on its shape; with
// blocks that do not depend on the thread count, neither do the bits.
inline constexpr std::int64_t linear_block = 64;

template <class Body>
void parallel_column_blocks(std::int64_t n, Body&& body) {
    parallel_chunks((n + linear_block - 1) / linear_block, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t b = first; b < last; ++b) body(b * linear_block, std::min(n, (b + 1) * linear_block));
    });
}

namespace detail {

// An operand of a product is a Weight (core/bf16.hpp): fp32 values and, in
// BF16 mode, their rounding. An activation is rounded to bfloat16 into the calling thread's scratch slot
// `slot` when the product runs in BF16 (`bf16_mode`), else as it is.
template <class S>
Weight<S> activation(const S* values, std::int64_t n, bool bf16_mode, int slot) {
    if (!bf16_mode) return {values, nullptr};
    if constexpr (!std::is_same_v<S, float>) {
        fail("BF16 products take float activations");
    } else {
        thread_local std::vector<bf16> scratch[2];
        std::vector<bf16>& out = scratch[slot];
        if (out.size() < static_cast<std::size_t>(n)) out.resize(static_cast<std::size_t>(n));
        round_to_bf16(Tag{}, out.data(), values, n);
        return {values, out.data()};
    }
}

// gemm() on two operands of one precision.
template <class S>
void product(bool accumulate, bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
             const Weight<S>& A, std::int64_t a_offset, std::int64_t lda, const Weight<S>& B, std::int64_t b_offset,
             std::int64_t ldb, S* C, std::int64_t ldc) {
    if ((A.rounded != nullptr) != (B.rounded != nullptr)) fail("product: operands of two precisions");
    if (A.rounded != nullptr) {
        if constexpr (std::is_same_v<S, float>)
            gemm(accumulate, transpose_a, transpose_b, M, N, K, A.rounded + a_offset, lda, B.rounded + b_offset, ldb,
                 C, ldc);
        else
            fail("BF16 products take float operands");
    } else {
        gemm(accumulate, transpose_a, transpose_b, M, N, K, A.values + a_offset, lda, B.values + b_offset, ldb, C,
             ldc);
    }
}

// Runs product(begin, end) over output columns [0, n): in fp32 over the fixed
// column blocks, each on one thread; in BF16 as one call, which oneDNN
// threads itself (its AMX/AVX-512 BF16 kernels want whole rows of tiles:
// about 1.5x the rate of 64-column blocks here).
template <class Product>
void product_columns(bool bf16_mode, std::int64_t n, Product&& product) {
    if (bf16_mode)
        product(std::int64_t{0}, n);
    else
        parallel_column_blocks(n, product);
}

template <class S>
void add_bias(S* out, const S* bias, std::int64_t N, std::int64_t OC) {
    if (bias == nullptr) return;
    parallel_column_blocks(OC, [&](std::int64_t begin, std::int64_t end) {
        matrix(out + begin, N, end - begin, OC).rowwise() += ConstVectorMap<S>(bias + begin, end - begin);
    });
}

// dbias [OC] = column sums of dout [N, OC] (added, or stored, per `accumulate`).
template <class S>
void column_sums(S* dbias, const S* dout, std::int64_t N, std::int64_t OC, bool accumulate) {
    if (dbias == nullptr) return;
    parallel_column_blocks(OC, [&](std::int64_t begin, std::int64_t end) {
        VectorMap<S> db(dbias + begin, end - begin);
        const auto sums = matrix(dout + begin, N, end - begin, OC).colwise().sum();
        if (accumulate)
            db += sums;
        else
            db = sums;
    });
}

}  // namespace detail

// out [N, OC] = inp [N, IC] · weight [IC, OC] + bias [OC] (bias may be null).
// Weights are Conv1D-style [in, out], as GPT-2 stores them.
template <class S>
void matmul_forward(Tag, S* out, const S* inp, Weight<std::type_identity_t<S>> weight,
                    const std::type_identity_t<S>* bias, std::int64_t N, std::int64_t IC, std::int64_t OC) {
    const Weight<S>& w = weight;
    const bool low = w.rounded != nullptr;
    const auto x = detail::activation(inp, N * IC, low, 0);
    detail::product_columns(low, OC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(false, false, false, N, end - begin, IC, x, 0, IC, w, begin, OC, out + begin, OC);
    });
    detail::add_bias(out, bias, N, OC);
}

// Writes dinp [N, IC] = dout · weightᵀ (in the model each dinp has this one
// producer, so no zeroing is needed); stores (adds or overwrites, per `store`)
// dweight [IC, OC] = inpᵀ · dout and dbias [OC] = column sums of dout (dbias
// may be null).
template <class S>
void matmul_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     Weight<std::type_identity_t<S>> weight, std::int64_t N, std::int64_t IC, std::int64_t OC,
                     GradStore store) {
    const bool accumulate = store == GradStore::accumulate;
    const Weight<S>& w = weight;
    const bool low = w.rounded != nullptr;
    const auto dy = detail::activation(dout, N * OC, low, 0), x = detail::activation(inp, N * IC, low, 1);
    detail::product_columns(low, IC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(false, false, true, N, end - begin, OC, dy, 0, OC, w, begin * OC, OC, dinp + begin, IC);
    });
    // dweight's rows are inp's columns: blocks of them, as output rows.
    detail::product_columns(low, IC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(accumulate, true, false, end - begin, OC, N, x, begin, IC, dy, 0, OC, dweight + begin * OC,
                        OC);
    });
    detail::column_sums(dbias, dout, N, OC, accumulate);
}

// out [N, OC] = inp [N, IC] · weightᵀ + bias [OC] (bias may be null): nn.Linear's
// layout, weight [OC, IC], as the Llama family stores it.
template <class S>
void linear_forward(Tag, S* out, const S* inp, Weight<std::type_identity_t<S>> weight,
                    const std::type_identity_t<S>* bias, std::int64_t N, std::int64_t IC, std::int64_t OC) {
    const Weight<S>& w = weight;
    const bool low = w.rounded != nullptr;
    const auto x = detail::activation(inp, N * IC, low, 0);
    detail::product_columns(low, OC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(false, false, true, N, end - begin, IC, x, 0, IC, w, begin * IC, IC, out + begin, OC);
    });
    detail::add_bias(out, bias, N, OC);
}

// Writes dinp [N, IC] = dout · weight; stores (adds or overwrites, per `store`)
// dweight [OC, IC] = doutᵀ · inp and dbias [OC] = column sums of dout (dbias may be null).
template <class S>
void linear_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     Weight<std::type_identity_t<S>> weight, std::int64_t N, std::int64_t IC, std::int64_t OC,
                     GradStore store) {
    const bool accumulate = store == GradStore::accumulate;
    const Weight<S>& w = weight;
    const bool low = w.rounded != nullptr;
    const auto dy = detail::activation(dout, N * OC, low, 0), x = detail::activation(inp, N * IC, low, 1);
    detail::product_columns(low, IC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(false, false, false, N, end - begin, OC, dy, 0, OC, w, begin, IC, dinp + begin, IC);
    });
    // dweight's rows are dout's columns: blocks of them, as output rows.
    detail::product_columns(low, OC, [&](std::int64_t begin, std::int64_t end) {
        detail::product(accumulate, true, false, end - begin, IC, N, dy, begin, OC, x, 0, IC, dweight + begin * IC,
                        IC);
    });
    detail::column_sums(dbias, dout, N, OC, accumulate);
}

// The LM head: logits [N, V] = inp [N, C] · headᵀ, head [V, C] (GPT-2's is the
// token embedding, tied).
template <class S>
void lm_head_forward(Tag tag, S* logits, const S* inp, Weight<std::type_identity_t<S>> head, std::int64_t N,
                     std::int64_t C, std::int64_t V) {
    linear_forward(tag, logits, inp, head, nullptr, N, C, V);
}

// Writes dinp [N, C] = dlogits · head; stores (per `store`) dhead [V, C] = dlogitsᵀ · inp.
template <class S>
void lm_head_backward(Tag tag, S* dinp, S* dhead, const S* dlogits, const S* inp, Weight<std::type_identity_t<S>> head,
                      std::int64_t N, std::int64_t C, std::int64_t V, GradStore store) {
    linear_backward(tag, dinp, dhead, nullptr, dlogits, inp, head, N, C, V, store);
}

}  // namespace simnpo::backend::cpu
