#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cpu {

// GPT-2's tanh approximation: out = x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³))).
// Eigen's array tanh is vectorised; std::tanh in a loop is not.
template <class S>
void gelu_forward(Tag, S* out, const S* inp, std::int64_t n) {
    const S scale = static_cast<S>(std::sqrt(2.0 / std::numbers::pi));
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        const ConstArrayMap<S> x(inp + begin, end - begin);
        ArrayMap<S>(out + begin, end - begin) =
            S{0.5} * x * (S{1} + (scale * (x + S{0.044715} * x.cube())).tanh());
    });
}

// Writes dinp [n] = dout · gelu'(inp).
template <class S>
void gelu_backward(Tag, S* dinp, const S* dout, const S* inp, std::int64_t n) {
    const S scale = static_cast<S>(std::sqrt(2.0 / std::numbers::pi));
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        const std::int64_t count = end - begin;
        const ConstArrayMap<S> x(inp + begin, count);
        const auto th = (scale * (x + S{0.044715} * x.cube())).tanh().eval();
        const auto local = S{0.5} * (S{1} + th) +
                           S{0.5} * x * (S{1} - th.square()) * scale * (S{1} + S{3 * 0.044715} * x.square());
        ArrayMap<S>(dinp + begin, count) = ConstArrayMap<S>(dout + begin, count) * local;
    });
}

// out [n] += inp [n]: the residual connection.
template <class S>
void residual_add(Tag, S* out, const S* inp, std::int64_t n) {
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        ArrayMap<S>(out + begin, end - begin) += ConstArrayMap<S>(inp + begin, end - begin);
    });
}

// out [B·T, C] = wte[tokens] + wpe[position].
template <class S>
void encoder_forward(Tag, S* out, const std::int32_t* tokens, const S* wte, const S* wpe,
                     std::int64_t B, std::int64_t T, std::int64_t C) {
#pragma omp parallel for schedule(static)
    for (std::int64_t bt = 0; bt < B * T; ++bt) {
        const S* token_row = wte + static_cast<std::int64_t>(tokens[bt]) * C;
        const S* position_row = wpe + (bt % T) * C;
        S* y = out + bt * C;
        for (std::int64_t c = 0; c < C; ++c) y[c] = token_row[c] + position_row[c];
    }
}

// From dout [B·T, C]: accumulates dwte [V, C] (the tied LM head has already
// stored its part) and stores (per `store`) dwpe [P, C]. Sequential over
// positions: two positions may hold the same token.
template <class S>
void encoder_backward(Tag, S* dwte, S* dwpe, const S* dout, const std::int32_t* tokens, std::int64_t B,
                      std::int64_t T, std::int64_t C, std::int64_t P, GradStore store) {
    if (store == GradStore::overwrite) std::fill_n(dwpe, P * C, S{0});
    for (std::int64_t bt = 0; bt < B * T; ++bt) {
        S* token_row = dwte + static_cast<std::int64_t>(tokens[bt]) * C;
        S* position_row = dwpe + (bt % T) * C;
        const S* dy = dout + bt * C;
#pragma omp simd
        for (std::int64_t c = 0; c < C; ++c) {
            token_row[c] += dy[c];
            position_row[c] += dy[c];
        }
    }
}

// out [N, C] = inp[rows[n]]: picks the scored positions out of [B·T, C].
template <class S>
void gather_rows(Tag, S* out, const S* inp, const std::int64_t* rows, std::int64_t N, std::int64_t C) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) std::copy_n(inp + rows[n] * C, C, out + n * C);
}

// Accumulates out[rows[n]] += inp [N, C]; rows are distinct.
template <class S>
void scatter_add_rows(Tag, S* out, const S* inp, const std::int64_t* rows, std::int64_t N,
                      std::int64_t C) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        S* y = out + rows[n] * C;
        const S* x = inp + n * C;
        for (std::int64_t c = 0; c < C; ++c) y[c] += x[c];
    }
}

}  // namespace simnpo::backend::cpu
