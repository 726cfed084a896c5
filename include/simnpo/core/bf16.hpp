#pragma once
#include "simnpo/core/internal_check.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "simnpo/core/error.hpp"

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace simnpo {

// bfloat16: the upper half of a binary32 (8 exponent bits, 8 significant
// bits), the storage type of the BF16 products. Arithmetic is never done in
// it: values are widened to float, or multiplied by oneDNN with fp32 sums.
struct bf16 {
    std::uint16_t bits;
};

inline float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

// A binary32 rounded to the nearest bfloat16, ties to even, as PyTorch's
// c10::BFloat16 does: overflow rounds to infinity, and every NaN becomes the
// quiet NaN 0x7FC0. (Tensor.to(torch.bfloat16) on a contiguous CPU tensor
// writes 0xFFFF for NaN instead; every other value is the same bit for bit.)
inline std::uint16_t float_to_bf16(float value) {
    if (std::isnan(value)) return 0x7fc0;
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    const std::uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<std::uint16_t>((bits + rounding_bias) >> 16);
}

// out[i] = in[i] rounded to bfloat16, on the calling thread. The AVX-512 BF16
// instruction rounds the same way, except that it takes a subnormal float
// (below 2⁻¹²⁶ in magnitude) as a zero of its sign, and keeps a NaN's payload.
inline void round_to_bf16(bf16* out, const float* in, std::int64_t n) {
    std::int64_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            std::bit_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(in + i))));
#endif
    for (; i < n; ++i) out[i].bits = float_to_bf16(in[i]);
}

}  // namespace simnpo

namespace simnpo {

// The precision of a model's matrix products. fp32: everything in float.
// bf16 (mixed precision): the products multiply bfloat16 roundings of the fp32
// weights and activations with fp32 sums; normalisation, softmax,
// log-probabilities, losses, reductions, gradients, the master weights and the
// optimizer state stay fp32.
enum class Precision { fp32, bf16 };

inline std::string_view precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

// "fp32" or "bf16"; anything else is an error naming `where`.
inline Precision parse_precision(std::string_view text, std::string_view where) {
    if (text == "fp32") return Precision::fp32;
    if (text == "bf16") return Precision::bf16;
    fail(where, ": precision must be fp32 or bf16, not '", std::string(text), "'");
}

// How a frozen model (a reference, never trained) stores its weights. fp32:
// as the trained model does. bf16: its matrices and embedding tables only as
// their bfloat16 rounding, half the memory, its vectors (norm weights,
// biases) in fp32 (CausalLM::frozen_in_bf16); its products are then BF16.
enum class WeightsDtype { fp32, bf16 };

inline std::string_view weights_dtype_name(WeightsDtype d) { return d == WeightsDtype::bf16 ? "bf16" : "fp32"; }

inline WeightsDtype parse_weights_dtype(std::string_view text, std::string_view where) {
    if (text == "fp32") return WeightsDtype::fp32;
    if (text == "bf16") return WeightsDtype::bf16;
    fail(where, ": weights dtype must be fp32 or bf16, not '", std::string(text), "'");
}

// A weight matrix (or embedding table) as the products and gathers read it:
// its fp32 (master) values and, in BF16 mode, their bfloat16 rounding, which
// the products then multiply (null in fp32 mode). A model that stores its
// weights in BF16 (WeightsDtype::bf16) has the rounding only: values null.
// Both point to the backend's memory.
template <class S>
struct Weight {
    const S* values = nullptr;
    const bf16* rounded = nullptr;

    // Implicit: a plain pointer is an fp32 weight.
    Weight(const S* values_, const bf16* rounded_ = nullptr) : values(values_), rounded(rounded_) {}
};

}  // namespace simnpo
