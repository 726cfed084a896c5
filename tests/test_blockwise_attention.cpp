// Blockwise (FlashAttention-style) attention on the CPU: its output and
// gradients against attention_forward/attention_backward, which materialise
// the probabilities, in double to rounding and in float to float tolerance; its
// log-sum-exp against a plain double loop; its backward against central
// differences; padding left alone; and the same bits for any thread count.
// The shapes span several blocks, end inside one, and mix grouped queries,
// sliding windows and ragged rows (length 1 to T).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/kernel_checks.hpp"

BOOST_AUTO_TEST_SUITE(test_blockwise_attention)

namespace {

namespace cpu = simnpo::backend::cpu;
using namespace simnpo::testing;
const cpu::Tag tag;

struct Shape {
    std::int64_t B, T, H, KV, D, window;
    std::vector<std::int64_t> lengths;
    std::int64_t stride() const { return (H + 2 * KV) * D; }
    std::size_t qkv_size() const { return size(B * T * stride()); }
    std::size_t out_size() const { return size(B * T * H * D); }
    std::size_t lse_size() const { return size(B * H * T); }
    std::size_t att_size() const { return size(B * H * T * T); }
    // Is position t of row b padding?
    bool padded(std::int64_t b, std::int64_t t) const { return t >= lengths[size(b)]; }
};

std::string name(const Shape& s) {
    std::ostringstream out;
    out << "T " << s.T << " H " << s.H << " KV " << s.KV << " D " << s.D << " window " << s.window << " lengths";
    for (const auto n : s.lengths) out << ' ' << n;
    return out.str();
}

// T 300 spans three query blocks of 128 and ten key blocks of 32, and ends inside
// both kinds; T 200 and 150 end inside their last blocks too, T 64 is two key
// blocks exactly and T 7 less than one. Windows of 1, 3, 50, 70 and 100 cut
// blocks away from their edges; lengths run from 1 to T, 257 one row into the
// third query block.
std::vector<Shape> shapes() {
    return {{.B = 3, .T = 300, .H = 4, .KV = 4, .D = 8, .window = 0, .lengths = {300, 1, 257}},
            {.B = 3, .T = 200, .H = 4, .KV = 2, .D = 8, .window = 0, .lengths = {130, 200, 64}},
            {.B = 3, .T = 150, .H = 4, .KV = 1, .D = 64, .window = 50, .lengths = {150, 65, 1}},
            {.B = 2, .T = 300, .H = 4, .KV = 2, .D = 64, .window = 70, .lengths = {129, 300}},
            {.B = 2, .T = 200, .H = 4, .KV = 1, .D = 8, .window = 100, .lengths = {200, 166}},
            {.B = 2, .T = 64, .H = 2, .KV = 2, .D = 64, .window = 0, .lengths = {64, 63}},
            {.B = 2, .T = 70, .H = 2, .KV = 1, .D = 8, .window = 1, .lengths = {70, 2}},
            {.B = 2, .T = 7, .H = 4, .KV = 2, .D = 5, .window = 3, .lengths = {5, 7}}};
}

// ---- a plain double loop from the formulas: out and each query row's log Σ exp ----

struct LoopResult {
    Vec out, lse;
};

LoopResult attention_loop(const Vec& qkv, const Shape& s) {
    LoopResult r{Vec(s.out_size(), 0.0), Vec(s.lse_size(), 0.0)};
    const std::int64_t stride = s.stride(), group = s.H / s.KV;
    for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < s.H; ++h) {
            const std::int64_t kv = h / group;
            for (std::int64_t i = 0; i < s.lengths[size(b)]; ++i) {
                const auto at = [&](std::int64_t t, std::int64_t head, std::int64_t d) {
                    return qkv[size((b * s.T + t) * stride + head * s.D + d)];
                };
                Vec scores(size(i + 1), -INFINITY);
                double largest = -INFINITY;
                for (std::int64_t j = 0; j <= i; ++j) {
                    if (s.window > 0 && i - j >= s.window) continue;
                    double score = 0.0;
                    for (std::int64_t d = 0; d < s.D; ++d) score += at(i, h, d) * at(j, s.H + kv, d);
                    scores[size(j)] = score / std::sqrt(static_cast<double>(s.D));
                    largest = std::max(largest, scores[size(j)]);
                }
                double total = 0.0;
                for (auto& score : scores) total += score = std::exp(score - largest);
                r.lse[size((b * s.H + h) * s.T + i)] = largest + std::log(total);
                for (std::int64_t j = 0; j <= i; ++j)
                    for (std::int64_t d = 0; d < s.D; ++d)
                        r.out[size((b * s.T + i) * s.H * s.D + h * s.D + d)] +=
                            scores[size(j)] / total * at(j, s.H + s.KV + kv, d);
            }
        }
    return r;
}

// ---- the kernels: materialised (attention.hpp) and blockwise ----

struct Result {
    Vec out, lse, dqkv;  // lse is empty for the materialised kernels
};

// What dqkv holds before the backward accumulates into it: a pattern no gradient has.
Vec prefill(const Shape& s) {
    Vec v(s.qkv_size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.25 + 0.125 * static_cast<double>(i % 7);
    return v;
}

// out from a pre-fill of −1 (padded rows must be overwritten), dqkv accumulated onto prefill().
template <class S>
Result materialised(const Vec& qkv, const Vec& dout, const Shape& s) {
    const auto input = as<S>(qkv), dy = as<S>(dout);
    std::vector<S> out(s.out_size(), S{-1}), att(s.att_size()), dqkv = as<S>(prefill(s));
    cpu::attention_forward(tag, out.data(), att.data(), input.data(), s.lengths.data(), s.B, s.T, s.H, s.KV, s.D,
                           s.window);
    cpu::attention_backward(tag, dqkv.data(), dy.data(), input.data(), att.data(), s.lengths.data(), s.B, s.T, s.H,
                            s.KV, s.D, s.window);
    return {as_double(out), {}, as_double(dqkv)};
}

// As materialised(); lse from a pre-fill of 7 (its padded rows are left as they are).
template <class S>
Result blockwise(const Vec& qkv, const Vec& dout, const Shape& s) {
    const auto input = as<S>(qkv), dy = as<S>(dout);
    std::vector<S> out(s.out_size(), S{-1}), lse(s.lse_size(), S{7}), dqkv = as<S>(prefill(s));
    cpu::blockwise_attention_forward(tag, out.data(), lse.data(), input.data(), s.lengths.data(), s.B, s.T, s.H, s.KV,
                                     s.D, s.window);
    cpu::blockwise_attention_backward(tag, dqkv.data(), dy.data(), input.data(), out.data(), lse.data(),
                                      s.lengths.data(), s.B, s.T, s.H, s.KV, s.D, s.window);
    return {as_double(out), as_double(lse), as_double(dqkv)};
}

// The lse entries that the kernel defines: each row's first lengths[b] positions.
Vec valid_lse(const Vec& lse, const Shape& s) {
    Vec values;
    for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < s.H; ++h)
            for (std::int64_t t = 0; t < s.lengths[size(b)]; ++t) values.push_back(lse[size((b * s.H + h) * s.T + t)]);
    return values;
}

// What the backward added to dqkv.
Vec gained(Vec dqkv, const Shape& s) {
    const Vec before = prefill(s);
    for (std::size_t i = 0; i < dqkv.size(); ++i) dqkv[i] -= before[i];
    return dqkv;
}

Vec draw_qkv(const Shape& s, std::uint64_t seed) { return draw(s.qkv_size(), seed, 1.5); }
Vec draw_dout(const Shape& s, std::uint64_t seed) { return draw(s.out_size(), seed); }

}  // namespace

BOOST_AUTO_TEST_CASE(the_shapes_span_several_blocks_and_end_inside_one) {
    const std::int64_t query_block = cpu::attention_query_block, key_block = cpu::attention_key_block;
    const auto all = shapes();
    const auto some = [&](auto&& predicate) { return std::any_of(all.begin(), all.end(), predicate); };
    BOOST_TEST(some([&](const Shape& s) { return s.T > 2 * query_block && s.T % query_block != 0; }));
    BOOST_TEST(some([&](const Shape& s) { return s.T > 2 * key_block && s.T % key_block != 0; }));
    BOOST_TEST(some([&](const Shape& s) { return s.T % key_block == 0; }));
    BOOST_TEST(some([&](const Shape& s) { return s.T < key_block; }));
}

// Tolerances, relative to the largest expected magnitude. Double: the kernels differ
// only in the order of their sums (blocks of keys, rescaled running sums), which
// moves the result by ~1e-15 here; 1e-12 leaves room for that and still catches a
// wrong mask, scale, group or rescale, which moves it by 1e-2 or more. Float: each
// result sums up to T 300 terms, each rounded to 2^-24 ≈ 6e-8; both kernels land
// within 9e-7 of double on these shapes (about 15 roundings), and the bound of 5e-6
// is some 80 roundings, the same for the materialised kernel (checked alongside),
// so that it holds across compilers and vector widths yet stays 1e-4 below any bug.
constexpr double double_tolerance = 1e-12, float_tolerance = 5e-6;

BOOST_AUTO_TEST_CASE(forward_matches_the_materialised_kernel_and_lse_the_loop) {
    for (const auto& shape : shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw_qkv(shape, 1), dout = draw_dout(shape, 2);
            const auto loop = attention_loop(qkv, shape);
            const auto expected = materialised<double>(qkv, dout, shape);
            const auto actual = blockwise<double>(qkv, dout, shape);
            BOOST_TEST(relative_error(actual.out, expected.out) < double_tolerance);  // padded rows zero in both
            BOOST_TEST(relative_error(actual.out, loop.out) < double_tolerance);
            BOOST_TEST(relative_error(valid_lse(actual.lse, shape), valid_lse(loop.lse, shape)) < double_tolerance);
            const auto actual_f = blockwise<float>(qkv, dout, shape);
            const auto materialised_f = materialised<float>(qkv, dout, shape);
            BOOST_TEST(relative_error(actual_f.out, loop.out) < float_tolerance);
            BOOST_TEST(relative_error(materialised_f.out, loop.out) < float_tolerance);
            BOOST_TEST(relative_error(valid_lse(actual_f.lse, shape), valid_lse(loop.lse, shape)) < float_tolerance);
        }
    }
}

BOOST_AUTO_TEST_CASE(padded_rows_of_out_are_zero_and_padded_lse_is_left_alone) {
    for (const auto& shape : shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const auto result = blockwise<double>(draw_qkv(shape, 3), draw_dout(shape, 4), shape);
            bool out_zero = true, lse_untouched = true, valid_nonzero = false;
            for (std::size_t i = 0; i < result.out.size(); ++i) {
                const auto row = static_cast<std::int64_t>(i) / (shape.H * shape.D);  // b·T + t
                if (shape.padded(row / shape.T, row % shape.T)) out_zero = out_zero && result.out[i] == 0.0;
                else valid_nonzero = valid_nonzero || result.out[i] != 0.0;
            }
            for (std::size_t i = 0; i < result.lse.size(); ++i) {
                const auto at = static_cast<std::int64_t>(i);  // (b·H + h)·T + t
                if (shape.padded(at / (shape.H * shape.T), at % shape.T))
                    lse_untouched = lse_untouched && result.lse[i] == 7.0;
            }
            BOOST_TEST(out_zero);
            BOOST_TEST(lse_untouched);
            BOOST_TEST(valid_nonzero);
        }
    }
}

BOOST_AUTO_TEST_CASE(backward_matches_the_materialised_kernel_and_keeps_padding) {
    for (const auto& shape : shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw_qkv(shape, 5), dout = draw_dout(shape, 6);
            const auto expected = materialised<double>(qkv, dout, shape);
            const auto actual = blockwise<double>(qkv, dout, shape);
            BOOST_TEST(relative_error(gained(actual.dqkv, shape), gained(expected.dqkv, shape)) < double_tolerance);
            // Padded positions have no gradient: dqkv there is exactly what it held.
            const Vec before = prefill(shape);
            bool padding_untouched = true;
            for (std::int64_t b = 0; b < shape.B; ++b)
                for (std::int64_t t = 0; t < shape.T; ++t)
                    for (std::int64_t c = 0; c < shape.stride(); ++c) {
                        const std::size_t at = size((b * shape.T + t) * shape.stride() + c);
                        if (shape.padded(b, t)) padding_untouched = padding_untouched && actual.dqkv[at] == before[at];
                    }
            BOOST_TEST(padding_untouched);
            const auto actual_f = blockwise<float>(qkv, dout, shape);
            const auto materialised_f = materialised<float>(qkv, dout, shape);
            const Vec truth = gained(expected.dqkv, shape);
            BOOST_TEST(relative_error(gained(actual_f.dqkv, shape), truth) < float_tolerance);
            BOOST_TEST(relative_error(gained(materialised_f.dqkv, shape), truth) < float_tolerance);
        }
    }
}

BOOST_AUTO_TEST_CASE(backward_matches_central_differences) {
    // Long enough for two query blocks, small enough for a double loop per perturbed element;
    // every 5th element, as 5 is prime to a row's 8 elements, reaches every column of qkv.
    BOOST_REQUIRE(cpu::attention_query_block < 131);
    for (const std::int64_t window : {std::int64_t{0}, std::int64_t{40}}) {
        const Shape shape{.B = 2, .T = 140, .H = 2, .KV = 1, .D = 2, .window = window, .lengths = {140, 131}};
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw_qkv(shape, 7), dout = draw_dout(shape, 8);
            const auto result = blockwise<double>(qkv, dout, shape);
            check_gradient([&](const Vec& x) { return dot(dout, attention_loop(x, shape).out); }, qkv,
                           gained(result.dqkv, shape), "dqkv", 5);
        }
    }
}

BOOST_AUTO_TEST_CASE(results_are_the_same_bits_for_any_thread_count) {
    for (const auto& shape : {shapes()[2], shapes()[3]}) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw_qkv(shape, 9), dout = draw_dout(shape, 10);
            const auto concatenated = [&](const Result& r) {
                Vec all = r.out;
                all.insert(all.end(), r.lse.begin(), r.lse.end());
                all.insert(all.end(), r.dqkv.begin(), r.dqkv.end());
                return all;
            };
            check_thread_independent([&] { return concatenated(blockwise<double>(qkv, dout, shape)); }, "double");
            check_thread_independent([&] { return concatenated(blockwise<float>(qkv, dout, shape)); }, "float");
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()  // test_blockwise_attention
