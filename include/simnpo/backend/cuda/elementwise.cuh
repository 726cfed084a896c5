#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include <thrust/execution_policy.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>
#include <thrust/system_error.h>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/core/bf16.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cuda {

// The kernels of simnpo/backend/cpu/elementwise.hpp, with the same signatures and meaning.

inline constexpr float gelu_scale = 0.7978845608028654f;  // √(2/π)

template <class S>
__global__ void gelu_forward_kernel(S* out, const S* inp, std::int64_t n) {
    SIMNPO_GRID_LOOP(i, n) {
        const S x = inp[i];
        out[i] = S{0.5} * x * (S{1} + tanh(S{gelu_scale} * (x + S{0.044715} * x * x * x)));
    }
}

template <class S>
__global__ void gelu_backward_kernel(S* dinp, const S* dout, const S* inp, std::int64_t n) {
    SIMNPO_GRID_LOOP(i, n) {
        const S x = inp[i];
        const S th = tanh(S{gelu_scale} * (x + S{0.044715} * x * x * x));
        const S local = S{0.5} * (S{1} + th) +
                        S{0.5} * x * (S{1} - th * th) * S{gelu_scale} * (S{1} + S{3 * 0.044715} * x * x);
        dinp[i] = dout[i] * local;
    }
}

template <class S>
__global__ void residual_add_kernel(S* out, const S* inp, std::int64_t n) {
    SIMNPO_GRID_LOOP(i, n) out[i] += inp[i];
}

// The row kernels below take one block per row of C, so that finding an
// element's row costs no 64-bit division per element.
template <class S>
__global__ void encoder_forward_kernel(S* out, const std::int32_t* tokens, const S* wte, const S* wpe, std::int64_t T,
                                       std::int64_t C) {
    const std::int64_t bt = blockIdx.x;
    const S* token_row = wte + static_cast<std::int64_t>(tokens[bt]) * C;
    const S* position_row = wpe + (bt % T) * C;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) out[bt * C + c] = token_row[c] + position_row[c];
}

// Two positions may hold the same token: their rows of dwte meet in atomicAdd.
template <class S>
__global__ void encoder_backward_wte_kernel(S* dwte, const S* dout, const std::int32_t* tokens, std::int64_t C) {
    const std::int64_t bt = blockIdx.x;
    S* token_row = dwte + static_cast<std::int64_t>(tokens[bt]) * C;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(token_row + c, dout[bt * C + c]);
}

// dwpe [P, C]: position t sums its B rows in order (no atomics: run-to-run identical);
// positions t >= T get nothing, or zero when overwriting.
template <class S>
__global__ void encoder_backward_wpe_kernel(S* dwpe, const S* dout, std::int64_t B, std::int64_t T, std::int64_t C,
                                            std::int64_t P, bool accumulate) {
    SIMNPO_GRID_LOOP(i, P * C) {
        const std::int64_t t = i / C, c = i % C;
        if (t >= T) {
            if (!accumulate) dwpe[i] = 0;
            continue;
        }
        S sum = 0;
        for (std::int64_t b = 0; b < B; ++b) sum += dout[(b * T + t) * C + c];
        dwpe[i] = accumulate ? dwpe[i] + sum : sum;
    }
}

template <class S>
__global__ void gather_rows_kernel(S* out, const S* inp, const std::int64_t* rows, std::int64_t C) {
    const std::int64_t n = blockIdx.x;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = inp[rows[n] * C + c];
}

template <class S>
__global__ void scatter_add_rows_kernel(S* out, const S* inp, const std::int64_t* rows, std::int64_t C) {
    const std::int64_t n = blockIdx.x;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) out[rows[n] * C + c] += inp[n * C + c];
}

// SwiGLU, a block per row of gate_up [N, 2I] (gate, then up).
template <class S>
__global__ void swiglu_forward_kernel(S* out, const S* gate_up, std::int64_t I) {
    const std::int64_t n = blockIdx.x;
    const S* gate = gate_up + n * 2 * I;
    for (std::int64_t i = threadIdx.x; i < I; i += blockDim.x) out[n * I + i] = gate[i] / (S{1} + exp(-gate[i])) * gate[I + i];
}

template <class S>
__global__ void swiglu_backward_kernel(S* dgate_up, const S* dout, const S* gate_up, std::int64_t I) {
    const std::int64_t n = blockIdx.x;
    const S* gate = gate_up + n * 2 * I;
    S* dgate = dgate_up + n * 2 * I;
    for (std::int64_t i = threadIdx.x; i < I; i += blockDim.x) {
        const S g = gate[i], dy = dout[n * I + i], sigmoid = S{1} / (S{1} + exp(-g));
        dgate[i] = dy * gate[I + i] * sigmoid * (S{1} + g * (S{1} - sigmoid));
        dgate[I + i] = dy * g * sigmoid;
    }
}

template <class S>
__global__ void embedding_forward_kernel(S* out, const std::int32_t* tokens, const S* weight, std::int64_t C) {
    const std::int64_t n = blockIdx.x;
    const S* row = weight + static_cast<std::int64_t>(tokens[n]) * C;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = row[c];
}

// Rows sorted by token (stably: each token's rows in row order): the block of a
// token's first sorted row adds all of that token's rows, in order, into its
// dweight row; the other blocks have nothing to do. No atomics: the same sums,
// in the same order, as the CPU's.
template <class S>
__global__ void embedding_backward_kernel(S* dweight, const S* dout, const std::int32_t* sorted_tokens,
                                          const std::int32_t* sorted_rows, std::int64_t N, std::int64_t C) {
    const std::int64_t first = blockIdx.x;
    const std::int32_t token = sorted_tokens[first];
    if (first > 0 && sorted_tokens[first - 1] == token) return;
    std::int64_t last = first + 1;
    while (last < N && sorted_tokens[last] == token) ++last;
    S* row = dweight + static_cast<std::int64_t>(token) * C;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        S sum = row[c];
        for (std::int64_t p = first; p < last; ++p) sum += dout[static_cast<std::int64_t>(sorted_rows[p]) * C + c];
        row[c] = sum;
    }
}

// GPT-2's tanh approximation: out = x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³))).
template <class S>
void gelu_forward(Tag, S* out, const S* inp, std::int64_t n) {
    require_float<S>();
    gelu_forward_kernel<<<grid_for(n), block_threads, 0, stream()>>>(out, inp, n);
    SIMNPO_CUDA_LAUNCHED("gelu_forward_kernel");
}

// Writes dinp [n] = dout · gelu'(inp).
template <class S>
void gelu_backward(Tag, S* dinp, const S* dout, const S* inp, std::int64_t n) {
    require_float<S>();
    gelu_backward_kernel<<<grid_for(n), block_threads, 0, stream()>>>(dinp, dout, inp, n);
    SIMNPO_CUDA_LAUNCHED("gelu_backward_kernel");
}

// out [n] += inp [n].
template <class S>
void residual_add(Tag, S* out, const S* inp, std::int64_t n) {
    require_float<S>();
    residual_add_kernel<<<grid_for(n), block_threads, 0, stream()>>>(out, inp, n);
    SIMNPO_CUDA_LAUNCHED("residual_add_kernel");
}

// A table's fp32 values: weights stored in BF16 are the CPU's only so far.
template <class S>
const S* table_values(const Weight<S>& table) {
    if (table.values == nullptr) fail("CUDA: weights stored in BF16 are built for the CPU only so far");
    return table.values;
}

// out [B·T, C] = wte[tokens] + wpe[position].
template <class S>
void encoder_forward(Tag, S* out, const std::int32_t* tokens, Weight<std::type_identity_t<S>> wte,
                     Weight<std::type_identity_t<S>> wpe, std::int64_t B, std::int64_t T, std::int64_t C) {
    require_float<S>();
    encoder_forward_kernel<<<static_cast<unsigned>(B * T), block_threads, 0, stream()>>>(
        out, tokens, table_values(wte), table_values(wpe), T, C);
    SIMNPO_CUDA_LAUNCHED("encoder_forward_kernel");
}

// From dout [B·T, C]: accumulates dwte [V, C]; stores (per `store`) dwpe [P, C].
template <class S>
void encoder_backward(Tag, S* dwte, S* dwpe, const S* dout, const std::int32_t* tokens, std::int64_t B,
                      std::int64_t T, std::int64_t C, std::int64_t P, GradStore store) {
    require_float<S>();
    encoder_backward_wte_kernel<<<static_cast<unsigned>(B * T), block_threads, 0, stream()>>>(dwte, dout, tokens, C);
    SIMNPO_CUDA_LAUNCHED("encoder_backward_wte_kernel");
    encoder_backward_wpe_kernel<<<grid_for(P * C), block_threads, 0, stream()>>>(dwpe, dout, B, T, C, P,
                                                                                store == GradStore::accumulate);
    SIMNPO_CUDA_LAUNCHED("encoder_backward_wpe_kernel");
}

// out [N, I] = silu(gate_up[n, 0..I)) · gate_up[n, I..2I), silu(g) = g / (1 + e^−g).
template <class S>
void swiglu_forward(Tag, S* out, const S* gate_up, std::int64_t N, std::int64_t I) {
    require_float<S>();
    if (N == 0) return;
    swiglu_forward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(out, gate_up, I);
    SIMNPO_CUDA_LAUNCHED("swiglu_forward_kernel");
}

// Writes dgate_up [N, 2I] from dout [N, I].
template <class S>
void swiglu_backward(Tag, S* dgate_up, const S* dout, const S* gate_up, std::int64_t N, std::int64_t I) {
    require_float<S>();
    if (N == 0) return;
    swiglu_backward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(dgate_up, dout, gate_up, I);
    SIMNPO_CUDA_LAUNCHED("swiglu_backward_kernel");
}

// out [N, C] = weight[tokens[n]].
template <class S>
void embedding_forward(Tag, S* out, const std::int32_t* tokens, Weight<std::type_identity_t<S>> weight, std::int64_t N,
                       std::int64_t C) {
    require_float<S>();
    if (N == 0) return;
    embedding_forward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(out, tokens,
                                                                                        table_values(weight), C);
    SIMNPO_CUDA_LAUNCHED("embedding_forward_kernel");
}

// Adds each row of dout [N, C] into dweight [V, C] at its token's row (zeroed
// first with GradStore::overwrite), deterministically: see embedding_backward_kernel.
template <class S>
void embedding_backward(Tag tag, S* dweight, const S* dout, const std::int32_t* tokens, std::int64_t N, std::int64_t C,
                        std::int64_t V, GradStore store) {
    require_float<S>();
    if (store == GradStore::overwrite) fill_zero(tag, dweight, static_cast<std::size_t>(V * C));
    if (N == 0) return;
    auto* sorted_tokens = static_cast<std::int32_t*>(Context::get().scratch(static_cast<std::size_t>(2 * N) * sizeof(std::int32_t)));
    std::int32_t* sorted_rows = sorted_tokens + N;
    copy_on_device(tag, sorted_tokens, tokens, static_cast<std::size_t>(N));
    try {
        const auto policy = thrust::cuda::par.on(stream());
        thrust::sequence(policy, sorted_rows, sorted_rows + N);
        thrust::stable_sort_by_key(policy, sorted_tokens, sorted_tokens + N, sorted_rows);
    } catch (const thrust::system_error& error) {
        fail("thrust: sorting the embedding's tokens failed: ", error.what());
    }
    embedding_backward_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(dweight, dout, sorted_tokens,
                                                                                       sorted_rows, N, C);
    SIMNPO_CUDA_LAUNCHED("embedding_backward_kernel");
}

// out [N, C] = inp[rows[n]].
template <class S>
void gather_rows(Tag, S* out, const S* inp, const std::int64_t* rows, std::int64_t N, std::int64_t C) {
    require_float<S>();
    if (N == 0) return;
    gather_rows_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(out, inp, rows, C);
    SIMNPO_CUDA_LAUNCHED("gather_rows_kernel");
}

// out[rows[n]] += inp [N, C]; rows are distinct.
template <class S>
void scatter_add_rows(Tag, S* out, const S* inp, const std::int64_t* rows, std::int64_t N, std::int64_t C) {
    require_float<S>();
    if (N == 0) return;
    scatter_add_rows_kernel<<<static_cast<unsigned>(N), block_threads, 0, stream()>>>(out, inp, rows, C);
    SIMNPO_CUDA_LAUNCHED("scatter_add_rows_kernel");
}

}  // namespace simnpo::backend::cuda
