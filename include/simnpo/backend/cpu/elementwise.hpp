#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/bf16.hpp"
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

namespace detail {

// Element i of a table row: its fp32 value, or its stored bfloat16 widened
// (a model that stores its weights in BF16 has no fp32 values).
template <class S>
S table_value(const Weight<S>& table, std::int64_t i) {
    if (table.values != nullptr) return table.values[i];
    return static_cast<S>(bf16_to_float(table.rounded[i].bits));
}

}  // namespace detail

// out [B·T, C] = wte[tokens] + wpe[position].
template <class S>
void encoder_forward(Tag, S* out, const std::int32_t* tokens, Weight<std::type_identity_t<S>> wte,
                     Weight<std::type_identity_t<S>> wpe, std::int64_t B, std::int64_t T, std::int64_t C) {
#pragma omp parallel for schedule(static)
    for (std::int64_t bt = 0; bt < B * T; ++bt) {
        const std::int64_t token_row = static_cast<std::int64_t>(tokens[bt]) * C, position_row = (bt % T) * C;
        S* y = out + bt * C;
        for (std::int64_t c = 0; c < C; ++c)
            y[c] = detail::table_value(wte, token_row + c) + detail::table_value(wpe, position_row + c);
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

// SwiGLU: out [N, I] = silu(gate) · up, gate_up [N, 2I] holding gate = gate_up[n, 0..I)
// then up = gate_up[n, I..2I) (Phi-3's fused gate_up_proj; Llama's gate_proj and
// up_proj stacked). silu(g) = g / (1 + e^−g), PyTorch's form: e^−g overflows to
// infinity for very negative g, and the quotient is 0, as it should be.
template <class S>
void swiglu_forward(Tag, S* out, const S* gate_up, std::int64_t N, std::int64_t I) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const ConstArrayMap<S> gate(gate_up + n * 2 * I, I), up(gate_up + n * 2 * I + I, I);
        ArrayMap<S>(out + n * I, I) = gate / (S{1} + (-gate).exp()) * up;
    }
}

// Writes dgate_up [N, 2I] from dout [N, I]:
//   dgate = dout · up · σ(g) · (1 + g · (1 − σ(g))),  dup = dout · silu(g).
template <class S>
void swiglu_backward(Tag, S* dgate_up, const S* dout, const S* gate_up, std::int64_t N, std::int64_t I) {
    parallel_chunks(N, [&](std::int64_t first, std::int64_t last) {
        Eigen::Array<S, Eigen::Dynamic, 1> sigmoid(I);
        for (std::int64_t n = first; n < last; ++n) {
            const ConstArrayMap<S> gate(gate_up + n * 2 * I, I), up(gate_up + n * 2 * I + I, I), dy(dout + n * I, I);
            sigmoid = S{1} / (S{1} + (-gate).exp());
            ArrayMap<S>(dgate_up + n * 2 * I, I) = dy * up * sigmoid * (S{1} + gate * (S{1} - sigmoid));
            ArrayMap<S>(dgate_up + n * 2 * I + I, I) = dy * gate * sigmoid;
        }
    });
}

// out [N, C] = weight[tokens[n]]: the token embedding, no positions (the Llama family's are rotary).
template <class S>
void embedding_forward(Tag, S* out, const std::int32_t* tokens, Weight<std::type_identity_t<S>> weight, std::int64_t N,
                       std::int64_t C) {
#pragma omp parallel for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
        const std::int64_t row = static_cast<std::int64_t>(tokens[n]) * C;
        if (weight.values != nullptr) std::copy_n(weight.values + row, C, out + n * C);
        else for (std::int64_t c = 0; c < C; ++c) out[n * C + c] = detail::table_value(weight, row + c);
    }
}

// Adds each row of dout [N, C] into dweight [V, C] at its token's row; with
// GradStore::overwrite dweight is zeroed first. A token may repeat, so threads
// split the columns, not the rows: each element sums its rows in row order,
// the same bits for any thread count.
template <class S>
void embedding_backward(Tag tag, S* dweight, const S* dout, const std::int32_t* tokens, std::int64_t N, std::int64_t C,
                        std::int64_t V, GradStore store) {
    if (store == GradStore::overwrite) fill_zero(tag, dweight, static_cast<std::size_t>(V * C));
    parallel_chunks(C, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t n = 0; n < N; ++n) {
            S* row = dweight + static_cast<std::int64_t>(tokens[n]) * C;
            const S* dy = dout + n * C;
#pragma omp simd
            for (std::int64_t c = begin; c < end; ++c) row[c] += dy[c];
        }
    });
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
