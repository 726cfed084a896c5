#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.h>

#include "simnpo/core/bf16.hpp"
#include "simnpo/core/error.hpp"

namespace simnpo::backend::cpu::dnnl_detail {

// One product's shape: oneDNN compiles a kernel for each, so primitives are
// created once per shape and kept.
struct GemmShape {
    std::int64_t M, N, K, lda, ldb, ldc;
    bool transpose_a, transpose_b, accumulate, bf16;
    bool operator==(const GemmShape&) const = default;
};

struct GemmShapeHash {
    std::size_t operator()(const GemmShape& s) const noexcept {
        std::size_t h = 0;
        for (const std::int64_t v : {s.M, s.N, s.K, s.lda, s.ldb, s.ldc})
            h = h * 1000003u ^ std::hash<std::int64_t>{}(v);
        return h * 31u + (s.transpose_a ? 1u : 0u) + (s.transpose_b ? 2u : 0u) + (s.accumulate ? 4u : 0u) +
               (s.bf16 ? 8u : 0u);
    }
};

// oneDNN through its C API: nvcc 13's front end fails on oneapi/dnnl/dnnl.hpp
// (an internal error), and the CUDA programs include this header too.
inline void check(dnnl_status_t status, const char* call) {
    if (status != dnnl_success) fail("oneDNN: ", call, " failed (status ", static_cast<int>(status), ")");
}

inline dnnl_engine_t engine() {
    static const dnnl_engine_t cpu = [] {
        dnnl_engine_t e = nullptr;
        check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create");
        return e;
    }();
    return cpu;
}

// One shape's product and its operands' memory objects (their data handles
// change per call). Kept for the life of the thread that made it.
class GemmPrimitive {
public:
    explicit GemmPrimitive(const GemmShape& s) {
        const dnnl_data_type_t input = s.bf16 ? dnnl_bf16 : dnnl_f32;
        // Row-major views: a transposed operand is the same memory with its strides swapped.
        const dnnl_memory_desc_t a = desc(s.M, s.K, input, s.transpose_a, s.lda);
        const dnnl_memory_desc_t b = desc(s.K, s.N, input, s.transpose_b, s.ldb);
        const dnnl_memory_desc_t c = desc(s.M, s.N, dnnl_f32, false, s.ldc);
        dnnl_matmul_desc_t matmul;
        check(dnnl_matmul_desc_init(&matmul, &a, &b, nullptr, &c), "dnnl_matmul_desc_init");
        dnnl_primitive_attr_t attributes = nullptr;
        dnnl_post_ops_t sum = nullptr;
        check(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create");
        if (s.accumulate) {
            check(dnnl_post_ops_create(&sum), "dnnl_post_ops_create");
            check(dnnl_post_ops_append_sum(sum, 1.0f), "dnnl_post_ops_append_sum");
            check(dnnl_primitive_attr_set_post_ops(attributes, sum), "dnnl_primitive_attr_set_post_ops");
        }
        dnnl_primitive_desc_t description = nullptr;
        const dnnl_status_t status = dnnl_primitive_desc_create(&description, &matmul, attributes, engine(), nullptr);
        if (sum != nullptr) dnnl_post_ops_destroy(sum);
        dnnl_primitive_attr_destroy(attributes);
        if (status != dnnl_success)
            fail("oneDNN: no ", s.bf16 ? "BF16" : "fp32", " matmul for [", s.M, " x ", s.K, "] x [", s.K, " x ", s.N,
                 "] (status ", static_cast<int>(status), ")");
        const dnnl_status_t created = dnnl_primitive_create(&product_, description);
        dnnl_primitive_desc_destroy(description);
        check(created, "dnnl_primitive_create");
        check(dnnl_memory_create(&a_, &a, engine(), DNNL_MEMORY_NONE), "dnnl_memory_create");
        check(dnnl_memory_create(&b_, &b, engine(), DNNL_MEMORY_NONE), "dnnl_memory_create");
        check(dnnl_memory_create(&c_, &c, engine(), DNNL_MEMORY_NONE), "dnnl_memory_create");
    }
    GemmPrimitive(const GemmPrimitive&) = delete;
    GemmPrimitive& operator=(const GemmPrimitive&) = delete;
    ~GemmPrimitive() {
        for (dnnl_memory_t m : {a_, b_, c_})
            if (m != nullptr) dnnl_memory_destroy(m);
        if (product_ != nullptr) dnnl_primitive_destroy(product_);
    }

    void run(dnnl_stream_t stream, const void* A, const void* B, float* C) {
        check(dnnl_memory_set_data_handle(a_, const_cast<void*>(A)), "dnnl_memory_set_data_handle");
        check(dnnl_memory_set_data_handle(b_, const_cast<void*>(B)), "dnnl_memory_set_data_handle");
        check(dnnl_memory_set_data_handle(c_, C), "dnnl_memory_set_data_handle");
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, b_}, {DNNL_ARG_DST, c_}};
        check(dnnl_primitive_execute(product_, stream, 3, args), "dnnl_primitive_execute");
    }

private:
    static dnnl_memory_desc_t desc(std::int64_t rows, std::int64_t cols, dnnl_data_type_t type, bool transposed,
                                   std::int64_t ld) {
        dnnl_memory_desc_t d;
        const dnnl_dims_t dims = {rows, cols};
        const dnnl_dims_t strides = {transposed ? 1 : ld, transposed ? ld : 1};
        check(dnnl_memory_desc_init_by_strides(&d, 2, dims, type, strides), "dnnl_memory_desc_init_by_strides");
        return d;
    }

    dnnl_primitive_t product_ = nullptr;
    dnnl_memory_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
};

// The primitive for a shape on the calling thread. oneDNN's shared scratchpad
// lets a primitive run only on the thread that created it, so each OpenMP
// thread keeps its own; a product called inside a parallel region runs on one
// thread, and one called outside is threaded by oneDNN.
inline GemmPrimitive& primitive(const GemmShape& s) {
    thread_local std::unordered_map<GemmShape, std::unique_ptr<GemmPrimitive>, GemmShapeHash> cache;
    auto& slot = cache[s];
    if (slot == nullptr) slot = std::make_unique<GemmPrimitive>(s);
    return *slot;
}

inline dnnl_stream_t stream() {
    struct Stream {
        dnnl_stream_t handle = nullptr;
        Stream() { check(dnnl_stream_create(&handle, engine(), dnnl_stream_default_flags), "dnnl_stream_create"); }
        ~Stream() { dnnl_stream_destroy(handle); }
    };
    thread_local Stream s;
    return s.handle;
}

// C [M, N] = op(A) · op(B) (+ C when accumulating), fp32 output; A and B are
// float or bf16, row-major with row strides lda, ldb, ldc.
template <class In>
void gemm(bool accumulate, bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
          const In* A, std::int64_t lda, const In* B, std::int64_t ldb, float* C, std::int64_t ldc) {
    static_assert(std::is_same_v<In, float> || std::is_same_v<In, bf16>);
    if (M == 0 || N == 0) return;
    if (K == 0) {  // an empty sum: oneDNN has no kernel for it
        if (!accumulate)
            for (std::int64_t i = 0; i < M; ++i) std::fill_n(C + i * ldc, N, 0.0f);
        return;
    }
    primitive({M, N, K, lda, ldb, ldc, transpose_a, transpose_b, accumulate, std::is_same_v<In, bf16>})
        .run(stream(), A, B, C);
}

}  // namespace simnpo::backend::cpu::dnnl_detail
