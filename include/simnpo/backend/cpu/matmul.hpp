#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/grad_store.hpp"

#ifdef EIGEN_USE_BLAS
extern "C" void openblas_set_num_threads(int threads);
#endif

namespace simnpo::backend::cpu {

// Every product is split across the OpenMP team by output blocks, each block
// one single-threaded GEMM (OpenBLAS's, or Eigen's own, which stays serial
// inside a parallel region). One thread pool only: OpenBLAS's own pool would
// compete for the cores with the OpenMP threads of the element-wise kernels.
inline void single_threaded_blas() {
#ifdef EIGEN_USE_BLAS
    static const bool once = (openblas_set_num_threads(1), true);
    (void)once;
#endif
}

// C [M, N] = op(A) · op(B), or C += op(A) · op(B) when `accumulate`, on one
// thread; op(A) is [M, K], op(B) [K, N]; all three row-major with row strides
// lda, ldb, ldc. Through BLAS when it is in use, with beta = 0 for a plain
// store: Eigen's `=` would first zero the destination, then add into it.
template <class S>
void gemm(bool accumulate, bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
          const S* A, std::int64_t lda, const S* B, std::int64_t ldb, S* C, std::int64_t ldc) {
#ifdef EIGEN_USE_BLAS
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, double>) {
        // Column-major BLAS sees each row-major matrix transposed: it computes
        // Cᵀ = op(B)ᵀ · op(A)ᵀ, which is C in row-major order.
        const char ta = transpose_b ? 'T' : 'N', tb = transpose_a ? 'T' : 'N';
        const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
        const int lda_ = static_cast<int>(ldb), ldb_ = static_cast<int>(lda), ldc_ = static_cast<int>(ldc);
        const S one = 1, beta = accumulate ? 1 : 0;
        if constexpr (std::is_same_v<S, float>)
            sgemm_(&ta, &tb, &m, &n, &k, &one, B, &lda_, A, &ldb_, &beta, C, &ldc_);
        else
            dgemm_(&ta, &tb, &m, &n, &k, &one, B, &lda_, A, &ldb_, &beta, C, &ldc_);
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

// out [N, OC] = inp [N, IC] · weight [IC, OC] + bias [OC] (bias may be null).
// Weights are Conv1D-style [in, out], as GPT-2 stores them.
template <class S>
void matmul_forward(Tag, S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias,
                    std::int64_t N, std::int64_t IC, std::int64_t OC) {
    single_threaded_blas();
    parallel_chunks(OC, [&](std::int64_t begin, std::int64_t end) {
        gemm(false, false, false, N, end - begin, IC, inp, IC, weight + begin, OC, out + begin, OC);
        if (bias != nullptr) matrix(out + begin, N, end - begin, OC).rowwise() += ConstVectorMap<S>(bias + begin, end - begin);
    });
}

// Writes dinp [N, IC] = dout · weightᵀ (in the model each dinp has this one
// producer, so no zeroing is needed); stores (adds or overwrites, per `store`)
// dweight [IC, OC] = inpᵀ · dout and dbias [OC] = column sums of dout (dbias
// may be null).
template <class S>
void matmul_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     const S* weight, std::int64_t N, std::int64_t IC, std::int64_t OC, GradStore store) {
    single_threaded_blas();
    const bool accumulate = store == GradStore::accumulate;
    parallel_chunks(IC, [&](std::int64_t begin, std::int64_t end) {
        const std::int64_t rows = end - begin;
        gemm(false, false, true, N, rows, OC, dout, OC, weight + begin * OC, OC, dinp + begin, IC);
        gemm(accumulate, true, false, rows, OC, N, inp + begin, IC, dout, OC, dweight + begin * OC, OC);
    });
    if (dbias != nullptr)
        parallel_chunks(OC, [&](std::int64_t begin, std::int64_t end) {
            VectorMap<S> db(dbias + begin, end - begin);
            const auto sums = matrix(dout + begin, N, end - begin, OC).colwise().sum();
            if (accumulate)
                db += sums;
            else
                db = sums;
        });
}

// Runs body(begin, end) over [0, n) in fixed blocks of linear_block columns,
// shared out among the threads. A GEMM's rounding may depend on its shape:
// with blocks that do not depend on the thread count, neither do the bits.
inline constexpr std::int64_t linear_block = 64;

template <class Body>
void parallel_column_blocks(std::int64_t n, Body&& body) {
    parallel_chunks((n + linear_block - 1) / linear_block, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t b = first; b < last; ++b) body(b * linear_block, std::min(n, (b + 1) * linear_block));
    });
}

// out [N, OC] = inp [N, IC] · weightᵀ + bias [OC] (bias may be null): nn.Linear's
// layout, weight [OC, IC], as the Llama family stores it.
template <class S>
void linear_forward(Tag, S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias, std::int64_t N,
                    std::int64_t IC, std::int64_t OC) {
    single_threaded_blas();
    parallel_column_blocks(OC, [&](std::int64_t begin, std::int64_t end) {
        gemm(false, false, true, N, end - begin, IC, inp, IC, weight + begin * IC, IC, out + begin, OC);
        if (bias != nullptr) matrix(out + begin, N, end - begin, OC).rowwise() += ConstVectorMap<S>(bias + begin, end - begin);
    });
}

// Writes dinp [N, IC] = dout · weight; stores (adds or overwrites, per `store`)
// dweight [OC, IC] = doutᵀ · inp and dbias [OC] = column sums of dout (dbias may be null).
template <class S>
void linear_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     const S* weight, std::int64_t N, std::int64_t IC, std::int64_t OC, GradStore store) {
    single_threaded_blas();
    const bool accumulate = store == GradStore::accumulate;
    parallel_column_blocks(IC, [&](std::int64_t begin, std::int64_t end) {
        gemm(false, false, false, N, end - begin, OC, dout, OC, weight + begin, IC, dinp + begin, IC);
    });
    parallel_column_blocks(OC, [&](std::int64_t begin, std::int64_t end) {
        gemm(accumulate, true, false, end - begin, IC, N, dout + begin, OC, inp, IC, dweight + begin * IC, IC);
        if (dbias == nullptr) return;
        VectorMap<S> db(dbias + begin, end - begin);
        const auto sums = matrix(dout + begin, N, end - begin, OC).colwise().sum();
        if (accumulate)
            db += sums;
        else
            db = sums;
    });
}

// The tied LM head: logits [N, V] = inp [N, C] · wteᵀ, wte [V, C].
template <class S>
void lm_head_forward(Tag, S* logits, const S* inp, const S* wte, std::int64_t N, std::int64_t C, std::int64_t V) {
    single_threaded_blas();
    parallel_chunks(V, [&](std::int64_t begin, std::int64_t end) {
        gemm(false, false, true, N, end - begin, C, inp, C, wte + begin * C, C, logits + begin, V);
    });
}

// Writes dinp [N, C] = dlogits · wte; stores (per `store`) dwte [V, C] = dlogitsᵀ · inp.
template <class S>
void lm_head_backward(Tag, S* dinp, S* dwte, const S* dlogits, const S* inp, const S* wte, std::int64_t N,
                      std::int64_t C, std::int64_t V, GradStore store) {
    single_threaded_blas();
    parallel_chunks(C, [&](std::int64_t begin, std::int64_t end) {
        gemm(false, false, false, N, end - begin, V, dlogits, V, wte + begin, C, dinp + begin, C);
    });
    parallel_chunks(V, [&](std::int64_t begin, std::int64_t end) {
        gemm(store == GradStore::accumulate, true, false, end - begin, C, N, dlogits + begin, V, inp, C,
             dwte + begin * C, C);
    });
}

}  // namespace simnpo::backend::cpu
