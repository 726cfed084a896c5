#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// The rotary tables for positions first_position .. first_position + T − 1:
// cos, sin [T, D/2] (D/2 = inv_freq.size()) = cos, sin((first_position + t) · inv_freq_i).
// In S, as Hugging Face's LlamaRotaryEmbedding computes them in float: the angle
// is float(position) · float(inv_freq), rounded to float, before its cos and
// sin; at long positions that rounding moves the angle by far more than an ulp
// of the cosine, so computing in double and rounding would not match.
template <class S>
void rope_tables(std::vector<S>& cos, std::vector<S>& sin, std::span<const double> inv_freq,
                 std::int64_t first_position, std::int64_t T) {
    const auto half = static_cast<std::int64_t>(inv_freq.size());
    cos.resize(static_cast<std::size_t>(T * half));
    sin.resize(static_cast<std::size_t>(T * half));
    for (std::int64_t t = 0; t < T; ++t) {
        const auto position = static_cast<S>(first_position + t);
        for (std::int64_t i = 0; i < half; ++i) {
            const S angle = position * static_cast<S>(inv_freq[static_cast<std::size_t>(i)]);
            cos[static_cast<std::size_t>(t * half + i)] = std::cos(angle);
            sin[static_cast<std::size_t>(t * half + i)] = std::sin(angle);
        }
    }
}

// Rotates pairs (x_i, x_{i+D/2}), i < D/2, of the first `heads` heads (head k at
// columns k·D .. k·D + D − 1) of each row of x [B·T, row_stride], in place, by
// the table entry [t, i] of the row's position t = row % T (cos, sin [T, D/2]):
// sign = +1 is Hugging Face's rotate-half forward, sign = −1 its transpose.
template <class S>
void rope_rotate(S* x, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads,
                 std::int64_t D, std::int64_t row_stride, S sign) {
    const std::int64_t half = D / 2;
#pragma omp parallel for schedule(static)
    for (std::int64_t row = 0; row < B * T; ++row) {
        const S* c = cos + (row % T) * half;
        const S* s = sin + (row % T) * half;
        for (std::int64_t k = 0; k < heads; ++k) {
            S* first = x + row * row_stride + k * D;
            S* second = first + half;
#pragma omp simd
            for (std::int64_t i = 0; i < half; ++i) {
                const S a = first[i], b = second[i], rotated_sin = sign * s[i];
                // HF's q·cos + rotate_half(q)·sin: (a·cos + (−b)·sin, b·cos + a·sin).
                first[i] = a * c[i] + (-b) * rotated_sin;
                second[i] = b * c[i] + a * rotated_sin;
            }
        }
    }
}

// Rotary position embedding in place (rope_rotate's layout), Hugging Face's rotate-half convention:
//   (x_i, x_{i+D/2}) ← (x_i·cos − x_{i+D/2}·sin, x_{i+D/2}·cos + x_i·sin)
template <class S>
void rope_forward(Tag, S* x, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads,
                  std::int64_t D, std::int64_t row_stride) {
    rope_rotate(x, cos, sin, B, T, heads, D, row_stride, S{1});
}

// The gradient of the same rows in place, by the transposed rotation:
//   (dx_i, dx_{i+D/2}) ← (dx_i·cos + dx_{i+D/2}·sin, dx_{i+D/2}·cos − dx_i·sin)
template <class S>
void rope_backward(Tag, S* dx, const S* cos, const S* sin, std::int64_t B, std::int64_t T, std::int64_t heads,
                   std::int64_t D, std::int64_t row_stride) {
    rope_rotate(dx, cos, sin, B, T, heads, D, row_stride, S{-1});
}

}  // namespace simnpo::backend::cpu
