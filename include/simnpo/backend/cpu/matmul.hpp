#pragma once
#include "simnpo/core/internal_check.hpp"

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

// out [N, OC] = inp [N, IC] · weight [IC, OC] + bias [OC] (bias may be null).
// Weights are Conv1D-style [in, out], as GPT-2 stores them.
template <class S>
void matmul_forward(Tag, S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias,
                    std::int64_t N, std::int64_t IC, std::int64_t OC) {
    single_threaded_blas();
    parallel_chunks(OC, [&](std::int64_t begin, std::int64_t end) {
        auto result = matrix(out + begin, N, end - begin, OC);
        result.noalias() = matrix(inp, N, IC) * matrix(weight + begin, IC, end - begin, OC);
        if (bias != nullptr) result.rowwise() += ConstVectorMap<S>(bias + begin, end - begin);
    });
}

// Accumulates dinp [N, IC] += dout · weightᵀ; stores (adds or overwrites, per
// `store`) dweight [IC, OC] = inpᵀ · dout and dbias [OC] = column sums of dout
// (dbias may be null).
template <class S>
void matmul_backward(Tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     const S* weight, std::int64_t N, std::int64_t IC, std::int64_t OC, GradStore store) {
    single_threaded_blas();
    const auto gradient = matrix(dout, N, OC);
    parallel_chunks(IC, [&](std::int64_t begin, std::int64_t end) {
        const std::int64_t rows = end - begin;
        matrix(dinp + begin, N, rows, IC).noalias() += gradient * matrix(weight + begin * OC, rows, OC).transpose();
        auto dw = matrix(dweight + begin * OC, rows, OC);
        const auto product = matrix(inp + begin, N, rows, IC).transpose() * gradient;
        if (store == GradStore::overwrite)
            dw.noalias() = product;
        else
            dw.noalias() += product;
    });
    if (dbias != nullptr)
        parallel_chunks(OC, [&](std::int64_t begin, std::int64_t end) {
            VectorMap<S> db(dbias + begin, end - begin);
            const auto sums = matrix(dout + begin, N, end - begin, OC).colwise().sum();
            if (store == GradStore::overwrite)
                db = sums;
            else
                db += sums;
        });
}

// The tied LM head: logits [N, V] = inp [N, C] · wteᵀ, wte [V, C].
template <class S>
void lm_head_forward(Tag, S* logits, const S* inp, const S* wte, std::int64_t N, std::int64_t C, std::int64_t V) {
    single_threaded_blas();
    parallel_chunks(V, [&](std::int64_t begin, std::int64_t end) {
        matrix(logits + begin, N, end - begin, V).noalias() =
            matrix(inp, N, C) * matrix(wte + begin * C, end - begin, C).transpose();
    });
}

// Accumulates dinp [N, C] += dlogits · wte; stores (per `store`) dwte [V, C] = dlogitsᵀ · inp.
template <class S>
void lm_head_backward(Tag, S* dinp, S* dwte, const S* dlogits, const S* inp, const S* wte, std::int64_t N,
                      std::int64_t C, std::int64_t V, GradStore store) {
    single_threaded_blas();
    parallel_chunks(C, [&](std::int64_t begin, std::int64_t end) {
        matrix(dinp + begin, N, end - begin, C).noalias() +=
            matrix(dlogits, N, V) * matrix(wte + begin, V, end - begin, C);
    });
    parallel_chunks(V, [&](std::int64_t begin, std::int64_t end) {
        auto dw = matrix(dwte + begin * C, end - begin, C);
        const auto product = matrix(dlogits + begin, N, end - begin, V).transpose() * matrix(inp, N, C);
        if (store == GradStore::overwrite)
            dw.noalias() = product;
        else
            dw.noalias() += product;
    });
}

}  // namespace simnpo::backend::cpu
