#pragma once
#include "simnpo/core/internal_check.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <type_traits>

#include <cuda_bf16.h>

#include "simnpo/backend/cuda/common.cuh"
#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/grad_store.hpp"

namespace simnpo::backend::cuda {

// One matrix operand as cuBLASLt sees it: column-major rows x cols with leading
// dimension ld, optionally a strided batch. Owns its layout descriptor.
class LtLayout {
public:
    LtLayout(std::int64_t rows, std::int64_t cols, std::int64_t ld, int batch, std::int64_t batch_stride,
             cudaDataType_t type = CUDA_R_32F) {
        SIMNPO_CUDA_CHECK(cublasLtMatrixLayoutCreate(&layout_, type, static_cast<std::uint64_t>(rows),
                                                     static_cast<std::uint64_t>(cols), ld));
        if (batch > 1) {
            SIMNPO_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(layout_, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                               sizeof(batch)));
            SIMNPO_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(layout_, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                               &batch_stride, sizeof(batch_stride)));
        }
    }
    LtLayout(const LtLayout&) = delete;
    LtLayout& operator=(const LtLayout&) = delete;
    ~LtLayout() { (void)cublasLtMatrixLayoutDestroy(layout_); }
    cublasLtMatrixLayout_t get() const { return layout_; }

private:
    cublasLtMatrixLayout_t layout_ = nullptr;
};

// What one gemm() computes, in row-major terms (as the CPU backend's gemm):
//   C [M, N] = op(A) · op(B)  (+ C when accumulate)  (+ bias [N] on every row)
// op(A) is [M, K], op(B) [K, N]; row strides lda, ldb, ldc. With batch > 1, the
// same for `batch` triples of matrices stride_a, stride_b, stride_c apart.
// A and B are float, or with bf16_inputs bfloat16 (BF16 mode: the tensor
// cores multiply them with fp32 sums); C and the bias are float.
struct Gemm {
    bool accumulate = false, transpose_a = false, transpose_b = false;
    std::int64_t M = 0, N = 0, K = 0;
    const void* A = nullptr;
    std::int64_t lda = 0;
    const void* B = nullptr;
    std::int64_t ldb = 0;
    float* C = nullptr;
    std::int64_t ldc = 0;
    const float* bias = nullptr;
    int batch = 1;
    std::int64_t stride_a = 0, stride_b = 0, stride_c = 0;
    float alpha = 1.0f;
    bool bf16_inputs = false;
};

// The alignment in bytes (up to 256, cuBLASLt's default assumption) that a
// matrix of `element_bytes` elements starting at `p`, and every matrix of its batch, has.
inline std::uint32_t alignment_of(const void* p, std::int64_t batch_stride, std::size_t element_bytes) {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const auto stride = static_cast<std::uintptr_t>(batch_stride) * element_bytes;
    std::uint32_t alignment = 256;
    while (alignment > 4 && (address % alignment != 0 || stride % alignment != 0)) alignment /= 2;
    return alignment;
}

// cuBLASLt's description of one product shape and the algorithm its heuristic
// chose for it. A training step runs the same few shapes over and over, and the
// heuristic costs more host time than a small product takes on the GPU, so a
// plan is made once per shape and kept for the life of the process.
class GemmPlan {
public:
    // cuBLASLt is column-major, where a row-major matrix reads as its
    // transpose: the plan computes Cᵀ = op(B)ᵀ · op(A)ᵀ, which is C.
    GemmPlan(const Tag& tag, const Gemm& g)
        : first_(g.transpose_b ? g.K : g.N, g.transpose_b ? g.N : g.K, g.ldb, g.batch, g.stride_b, input_type(g)),
          second_(g.transpose_a ? g.M : g.K, g.transpose_a ? g.K : g.M, g.lda, g.batch, g.stride_a, input_type(g)),
          out_(g.N, g.M, g.ldc, g.batch, g.stride_c) {
        // BF16 inputs: fp32 sums (their tensor-core kernels); TF32 concerns fp32 inputs only.
        const cublasComputeType_t compute =
            tag.tf32 && !g.bf16_inputs ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        SIMNPO_CUDA_CHECK(cublasLtMatmulDescCreate(&desc_, compute, CUDA_R_32F));
        const cublasOperation_t op_first = g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cublasOperation_t op_second = g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
        SIMNPO_CUDA_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof(op_first)));
        SIMNPO_CUDA_CHECK(
            cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof(op_second)));
        if (g.bias != nullptr) {
            const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
            SIMNPO_CUDA_CHECK(
                cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
        }
        cublasLtMatmulPreference_t preference = nullptr;
        SIMNPO_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&preference));
        struct PreferenceGuard {
            cublasLtMatmulPreference_t p;
            ~PreferenceGuard() { (void)cublasLtMatmulPreferenceDestroy(p); }
        } preference_guard{preference};
        const std::size_t workspace = Context::workspace_bytes;
        SIMNPO_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace, sizeof(workspace)));
        // Views into the slabs need not be 256-byte aligned, as the heuristic otherwise assumes.
        const auto alignments = plan_alignments(g);
        const cublasLtMatmulPreferenceAttributes_t alignment_attributes[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; ++i)
            SIMNPO_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, alignment_attributes[i], &alignments[i],
                                                                   sizeof(alignments[i])));
        cublasLtMatmulHeuristicResult_t heuristic{};
        int found = 0;
        SIMNPO_CUDA_CHECK(cublasLtMatmulAlgoGetHeuristic(Context::get().blas(), desc_, first_.get(), second_.get(),
                                                         out_.get(), out_.get(), preference, 1, &heuristic, &found));
        if (found == 0)
            fail("cuBLASLt: no algorithm for a ", g.M, "x", g.N, "x", g.K, " product (batch ", g.batch, ")");
        algo_ = heuristic.algo;
    }
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    ~GemmPlan() { (void)cublasLtMatmulDescDestroy(desc_); }

    static cudaDataType_t input_type(const Gemm& g) { return g.bf16_inputs ? CUDA_R_16BF : CUDA_R_32F; }

    // The alignments of the four operands (first, second, C, D as cuBLASLt names them).
    static std::array<std::uint32_t, 4> plan_alignments(const Gemm& g) {
        const std::size_t input_bytes = g.bf16_inputs ? sizeof(bf16) : sizeof(float);
        const std::uint32_t c = alignment_of(g.C, g.stride_c, sizeof(float));
        return {alignment_of(g.B, g.stride_b, input_bytes), alignment_of(g.A, g.stride_a, input_bytes), c, c};
    }

    void run(const Gemm& g) const {
        Context& context = Context::get();
        if (g.bias != nullptr)  // the plan's own descriptor: the host runs one product at a time
            SIMNPO_CUDA_CHECK(
                cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
        const float beta = g.accumulate ? 1.0f : 0.0f;
        SIMNPO_CUDA_CHECK(cublasLtMatmul(context.blas(), desc_, &g.alpha, g.B, first_.get(), g.A, second_.get(), &beta,
                                         g.C, out_.get(), g.C, out_.get(), &algo_, context.workspace(),
                                         Context::workspace_bytes, context.stream()));
    }

private:
    LtLayout first_, second_, out_;
    cublasLtMatmulDesc_t desc_ = nullptr;
    cublasLtMatmulAlgo_t algo_{};
};

// What makes two products share a plan: everything but the pointers' values.
using PlanKey = std::array<std::int64_t, 19>;

inline PlanKey plan_key(const Tag& tag, const Gemm& g) {
    const auto alignments = GemmPlan::plan_alignments(g);
    return {tag.tf32,   g.bf16_inputs, g.transpose_a,  g.transpose_b,  g.bias != nullptr, g.M, g.N,
            g.K,        g.lda,         g.ldb,          g.ldc,          g.batch,           g.stride_a, g.stride_b,
            g.stride_c, alignments[0], alignments[1], alignments[2], alignments[3]};
}

struct PlanKeyHash {
    std::size_t operator()(const PlanKey& key) const {
        std::size_t hash = 0xcbf29ce484222325ULL;
        for (const std::int64_t value : key) hash = (hash ^ static_cast<std::size_t>(value)) * 0x100000001b3ULL;
        return hash;
    }
};

// Runs a Gemm through cuBLASLt, with the plan for its shape.
inline void gemm(const Tag& tag, const Gemm& g) {
    if (g.M == 0 || g.N == 0) return;
    Context::get();  // created before the plans, so destroyed after them
    static std::unordered_map<PlanKey, std::unique_ptr<GemmPlan>, PlanKeyHash> plans;
    auto& plan = plans[plan_key(tag, g)];
    if (!plan) plan = std::make_unique<GemmPlan>(tag, g);
    plan->run(g);
}

// Column sums of x [N, C], stored or added into out [C]: per-chunk partial
// sums, then the chunks in order, so the result is the same on every run (an
// atomicAdd's order is not). Kernels are templates, so that a header-only
// library defines them once however many files include it.
inline constexpr std::int64_t column_chunk_rows = 128;

template <class S>
__global__ void column_sums_partial_kernel(S* partial, const S* x, std::int64_t N, std::int64_t C, std::int64_t ld) {
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t chunk = blockIdx.y;
    if (c >= C) return;
    const std::int64_t first = chunk * column_chunk_rows, last = min(N, first + column_chunk_rows);
    S sum = 0;
    for (std::int64_t n = first; n < last; ++n) sum += x[n * ld + c];
    partial[chunk * C + c] = sum;
}

template <class S>
__global__ void column_sums_finish_kernel(S* out, const S* partial, std::int64_t chunks, std::int64_t C,
                                          bool accumulate) {
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    S sum = 0;
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * C + c];
    out[c] = accumulate ? out[c] + sum : sum;
}

template <class S>
void column_sums(S* out, const S* x, std::int64_t N, std::int64_t C, bool accumulate) {
    const std::int64_t chunks = (N + column_chunk_rows - 1) / column_chunk_rows;
    auto* partial = static_cast<S*>(Context::get().scratch(static_cast<std::size_t>(chunks * C) * sizeof(S)));
    const dim3 grid(grid_for(C), static_cast<unsigned>(chunks));
    column_sums_partial_kernel<S><<<grid, block_threads, 0, stream()>>>(partial, x, N, C, C);
    SIMNPO_CUDA_LAUNCHED("column_sums_partial_kernel");
    column_sums_finish_kernel<S><<<grid_for(C), block_threads, 0, stream()>>>(out, partial, chunks, C, accumulate);
    SIMNPO_CUDA_LAUNCHED("column_sums_finish_kernel");
}

// The kernels below have the CPU backend's signatures and meaning
// (simnpo/backend/cpu/matmul.hpp).

template <class S>
__global__ void round_to_bf16_kernel(bf16* out, const S* in, std::int64_t n) {
    const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) out[i].bits = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

// out [n] = in rounded to bfloat16, to nearest even (BF16 mode's copy of the
// weights, and of a product's activations).
template <class S>
void round_to_bf16(Tag, bf16* out, const S* in, std::int64_t n) {
    require_float<S>();
    if (n == 0) return;
    round_to_bf16_kernel<S><<<grid_for(n), block_threads, 0, stream()>>>(out, in, n);
    SIMNPO_CUDA_LAUNCHED("round_to_bf16_kernel");
}

namespace detail {

// A product's operand in the precision of the weight it meets: an activation
// [n] rounded into rounding slot `slot` when the weight is BF16, else as it is.
inline Weight<float> activation(const float* values, std::int64_t n, bool bf16_mode, int slot) {
    if (!bf16_mode) return {values, nullptr};
    auto* rounded = static_cast<bf16*>(Context::get().rounding_scratch(slot, static_cast<std::size_t>(n) * sizeof(bf16)));
    round_to_bf16(Tag{}, rounded, values, n);
    return {values, rounded};
}

// The pointer a product reads: the rounding in BF16 mode, else the fp32 values.
inline const void* operand(const Weight<float>& w, bool bf16_mode) {
    if (bf16_mode) return w.rounded;
    return w.values;
}

}  // namespace detail

// out [N, OC] = inp [N, IC] · weight [IC, OC] + bias [OC] (bias may be null).
template <class S>
void matmul_forward(Tag tag, S* out, const S* inp, Weight<std::type_identity_t<S>> weight,
                    const std::type_identity_t<S>* bias,
                    std::int64_t N, std::int64_t IC, std::int64_t OC) {
    require_float<S>();
    const bool low = weight.rounded != nullptr;
    const auto x = detail::activation(inp, N * IC, low, 0);
    gemm(tag, {.M = N, .N = OC, .K = IC, .A = detail::operand(x, low), .lda = IC, .B = detail::operand(weight, low),
               .ldb = OC, .C = out, .ldc = OC, .bias = bias, .bf16_inputs = low});
}

// Writes dinp [N, IC] = dout · weightᵀ; stores (per `store`) dweight [IC, OC] =
// inpᵀ · dout and dbias [OC] = column sums of dout (dbias may be null).
template <class S>
void matmul_backward(Tag tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     Weight<std::type_identity_t<S>> weight, std::int64_t N, std::int64_t IC, std::int64_t OC,
                     GradStore store) {
    require_float<S>();
    const bool accumulate = store == GradStore::accumulate, low = weight.rounded != nullptr;
    const auto dy = detail::activation(dout, N * OC, low, 0), x = detail::activation(inp, N * IC, low, 1);
    gemm(tag, {.transpose_b = true, .M = N, .N = IC, .K = OC, .A = detail::operand(dy, low), .lda = OC,
               .B = detail::operand(weight, low), .ldb = OC, .C = dinp, .ldc = IC, .bf16_inputs = low});
    gemm(tag, {.accumulate = accumulate, .transpose_a = true, .M = IC, .N = OC, .K = N, .A = detail::operand(x, low),
               .lda = IC, .B = detail::operand(dy, low), .ldb = OC, .C = dweight, .ldc = OC, .bf16_inputs = low});
    if (dbias != nullptr) column_sums(dbias, dout, N, OC, accumulate);
}

// out [N, OC] = inp [N, IC] · weightᵀ + bias [OC] (bias may be null); nn.Linear's weight [OC, IC].
template <class S>
void linear_forward(Tag tag, S* out, const S* inp, Weight<std::type_identity_t<S>> weight,
                    const std::type_identity_t<S>* bias,
                    std::int64_t N, std::int64_t IC, std::int64_t OC) {
    require_float<S>();
    const bool low = weight.rounded != nullptr;
    const auto x = detail::activation(inp, N * IC, low, 0);
    gemm(tag, {.transpose_b = true, .M = N, .N = OC, .K = IC, .A = detail::operand(x, low), .lda = IC,
               .B = detail::operand(weight, low), .ldb = IC, .C = out, .ldc = OC, .bias = bias, .bf16_inputs = low});
}

// Writes dinp [N, IC] = dout · weight; stores (per `store`) dweight [OC, IC] =
// doutᵀ · inp and dbias [OC] = column sums of dout (dbias may be null).
template <class S>
void linear_backward(Tag tag, S* dinp, S* dweight, std::type_identity_t<S>* dbias, const S* dout, const S* inp,
                     Weight<std::type_identity_t<S>> weight, std::int64_t N, std::int64_t IC, std::int64_t OC,
                     GradStore store) {
    require_float<S>();
    const bool accumulate = store == GradStore::accumulate, low = weight.rounded != nullptr;
    const auto dy = detail::activation(dout, N * OC, low, 0), x = detail::activation(inp, N * IC, low, 1);
    gemm(tag, {.M = N, .N = IC, .K = OC, .A = detail::operand(dy, low), .lda = OC, .B = detail::operand(weight, low),
               .ldb = IC, .C = dinp, .ldc = IC, .bf16_inputs = low});
    gemm(tag, {.accumulate = accumulate, .transpose_a = true, .M = OC, .N = IC, .K = N, .A = detail::operand(dy, low),
               .lda = OC, .B = detail::operand(x, low), .ldb = IC, .C = dweight, .ldc = IC, .bf16_inputs = low});
    if (dbias != nullptr) column_sums(dbias, dout, N, OC, accumulate);
}

// The tied LM head: logits [N, V] = inp [N, C] · wteᵀ, wte [V, C].
template <class S>
void lm_head_forward(Tag tag, S* logits, const S* inp, Weight<std::type_identity_t<S>> wte, std::int64_t N,
                     std::int64_t C, std::int64_t V) {
    require_float<S>();
    const bool low = wte.rounded != nullptr;
    const auto x = detail::activation(inp, N * C, low, 0);
    gemm(tag, {.transpose_b = true, .M = N, .N = V, .K = C, .A = detail::operand(x, low), .lda = C,
               .B = detail::operand(wte, low), .ldb = C, .C = logits, .ldc = V, .bf16_inputs = low});
}

// Writes dinp [N, C] = dlogits · wte; stores (per `store`) dwte [V, C] = dlogitsᵀ · inp.
template <class S>
void lm_head_backward(Tag tag, S* dinp, S* dwte, const S* dlogits, const S* inp, Weight<std::type_identity_t<S>> wte,
                      std::int64_t N, std::int64_t C, std::int64_t V, GradStore store) {
    require_float<S>();
    const bool low = wte.rounded != nullptr;
    const auto dy = detail::activation(dlogits, N * V, low, 0), x = detail::activation(inp, N * C, low, 1);
    gemm(tag, {.M = N, .N = C, .K = V, .A = detail::operand(dy, low), .lda = V, .B = detail::operand(wte, low),
               .ldb = C, .C = dinp, .ldc = C, .bf16_inputs = low});
    gemm(tag, {.accumulate = store == GradStore::accumulate, .transpose_a = true, .M = V, .N = C, .K = N,
               .A = detail::operand(dy, low), .lda = V, .B = detail::operand(x, low), .ldb = C, .C = dwte, .ldc = C,
               .bf16_inputs = low});
}

}  // namespace simnpo::backend::cuda
