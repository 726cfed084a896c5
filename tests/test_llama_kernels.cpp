// The Llama family's CPU kernels (nn.Linear products, RMSNorm, rotary
// embeddings, grouped-query attention with a sliding window, SwiGLU, the token
// embedding): each forward against a plain double loop written here from the
// formulas, each backward against central differences in double, float against
// the same loops to float tolerance, and the same bits for any thread count.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/kernel_checks.hpp"

BOOST_AUTO_TEST_SUITE(test_llama_kernels)

namespace {

namespace cpu = simnpo::backend::cpu;
using namespace simnpo::testing;
const cpu::Tag tag;

// ---- plain double loops from the formulas ----

Vec linear_loop(const Vec& inp, const Vec& weight, const Vec* bias, std::int64_t N, std::int64_t IC, std::int64_t OC) {
    Vec out(size(N * OC));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t o = 0; o < OC; ++o) {
            double sum = bias != nullptr ? (*bias)[size(o)] : 0.0;
            for (std::int64_t i = 0; i < IC; ++i) sum += inp[size(n * IC + i)] * weight[size(o * IC + i)];
            out[size(n * OC + o)] = sum;
        }
    return out;
}

Vec rmsnorm_loop(const Vec& inp, const Vec& weight, std::int64_t N, std::int64_t C, double eps) {
    Vec out(size(N * C));
    for (std::int64_t n = 0; n < N; ++n) {
        double squares = 0.0;
        for (std::int64_t c = 0; c < C; ++c) squares += inp[size(n * C + c)] * inp[size(n * C + c)];
        const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(C) + eps);
        for (std::int64_t c = 0; c < C; ++c) out[size(n * C + c)] = inp[size(n * C + c)] * rstd * weight[size(c)];
    }
    return out;
}

struct RopeShape {
    std::int64_t B, T, heads, D, row_stride;
};

Vec rope_loop(Vec x, const Vec& cos, const Vec& sin, const RopeShape& s) {
    const std::int64_t half = s.D / 2;
    for (std::int64_t row = 0; row < s.B * s.T; ++row)
        for (std::int64_t k = 0; k < s.heads; ++k)
            for (std::int64_t i = 0; i < half; ++i) {
                const std::size_t a = size(row * s.row_stride + k * s.D + i), b = a + size(half);
                const std::size_t table = size((row % s.T) * half + i);
                const double x1 = x[a], x2 = x[b];
                x[a] = x1 * cos[table] - x2 * sin[table];
                x[b] = x2 * cos[table] + x1 * sin[table];
            }
    return x;
}

struct AttentionShape {
    std::int64_t B, T, H, KV, D, window;
    std::vector<std::int64_t> lengths;
    std::int64_t stride() const { return (H + 2 * KV) * D; }
    std::size_t qkv_size() const { return size(B * T * stride()); }
    std::size_t out_size() const { return size(B * T * H * D); }
    std::size_t att_size() const { return size(B * H * T * T); }
};

// out [B, T, H·D] and the probabilities att [B, H, T, T] (zero where masked, in the valid block).
struct AttentionResult {
    Vec out, att;
};

AttentionResult attention_loop(const Vec& qkv, const AttentionShape& s) {
    AttentionResult r{Vec(s.out_size(), 0.0), Vec(s.att_size(), 0.0)};
    const std::int64_t stride = s.stride(), group = s.H / s.KV;
    for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < s.H; ++h) {
            const std::int64_t kv = h / group;
            for (std::int64_t i = 0; i < s.lengths[size(b)]; ++i) {
                const auto q = [&](std::int64_t d) { return qkv[size((b * s.T + i) * stride + h * s.D + d)]; };
                const auto key = [&](std::int64_t j, std::int64_t d) {
                    return qkv[size((b * s.T + j) * stride + (s.H + kv) * s.D + d)];
                };
                const auto value = [&](std::int64_t j, std::int64_t d) {
                    return qkv[size((b * s.T + j) * stride + (s.H + s.KV + kv) * s.D + d)];
                };
                Vec scores(size(i + 1), -INFINITY);
                double largest = -INFINITY;
                for (std::int64_t j = 0; j <= i; ++j) {
                    if (s.window > 0 && i - j >= s.window) continue;
                    double score = 0.0;
                    for (std::int64_t d = 0; d < s.D; ++d) score += q(d) * key(j, d);
                    scores[size(j)] = score / std::sqrt(static_cast<double>(s.D));
                    largest = std::max(largest, scores[size(j)]);
                }
                double total = 0.0;
                for (auto& score : scores) total += score = std::exp(score - largest);
                for (std::int64_t j = 0; j <= i; ++j) {
                    const double p = scores[size(j)] / total;
                    r.att[size(((b * s.H + h) * s.T + i) * s.T + j)] = p;
                    for (std::int64_t d = 0; d < s.D; ++d)
                        r.out[size((b * s.T + i) * s.H * s.D + h * s.D + d)] += p * value(j, d);
                }
            }
        }
    return r;
}

// The att entries that the kernels define: each row's first lengths[b] x lengths[b] block.
Vec valid_att(const Vec& att, const AttentionShape& s) {
    Vec values;
    for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < s.H; ++h)
            for (std::int64_t i = 0; i < s.lengths[size(b)]; ++i)
                for (std::int64_t j = 0; j < s.lengths[size(b)]; ++j)
                    values.push_back(att[size(((b * s.H + h) * s.T + i) * s.T + j)]);
    return values;
}

template <class S>
AttentionResult attention_kernel(const Vec& qkv, const AttentionShape& s) {
    const auto input = as<S>(qkv);
    std::vector<S> out(s.out_size(), S{-1}), att(s.att_size(), S{0});  // out's padded rows must be overwritten
    cpu::attention_forward(tag, out.data(), att.data(), input.data(), s.lengths.data(), s.B, s.T, s.H, s.KV, s.D,
                           s.window);
    return {as_double(out), as_double(att)};
}

Vec silu(const Vec& gate_up, std::int64_t N, std::int64_t I) {
    Vec out(size(N * I));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t i = 0; i < I; ++i) {
            const double g = gate_up[size(n * 2 * I + i)], u = gate_up[size(n * 2 * I + I + i)];
            out[size(n * I + i)] = g / (1.0 + std::exp(-g)) * u;
        }
    return out;
}

// The shapes of the attention tests: grouped queries (H 4 over KV 2, and over KV 1),
// D 5, a window of 3 shorter than the rows, and rows padded to T 7.
std::vector<AttentionShape> attention_shapes() {
    return {{.B = 2, .T = 7, .H = 4, .KV = 2, .D = 5, .window = 0, .lengths = {7, 4}},
            {.B = 2, .T = 7, .H = 4, .KV = 2, .D = 5, .window = 3, .lengths = {5, 7}},
            {.B = 3, .T = 7, .H = 4, .KV = 1, .D = 5, .window = 3, .lengths = {7, 2, 6}},
            {.B = 2, .T = 6, .H = 3, .KV = 3, .D = 6, .window = 0, .lengths = {6, 3}}};
}

std::string name(const AttentionShape& s) {
    return "H " + std::to_string(s.H) + " KV " + std::to_string(s.KV) + " D " + std::to_string(s.D) + " window " +
           std::to_string(s.window);
}

}  // namespace

BOOST_AUTO_TEST_CASE(linear_matches_its_formula) {
    const std::int64_t N = 9, IC = 7, OC = 11;
    const Vec inp = draw(size(N * IC), 1), weight = draw(size(OC * IC), 2), bias = draw(size(OC), 3);
    for (const bool with_bias : {true, false}) {
        const Vec expected = linear_loop(inp, weight, with_bias ? &bias : nullptr, N, IC, OC);
        Vec out(size(N * OC));
        cpu::linear_forward(tag, out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N, IC, OC);
        BOOST_TEST(relative_error(out, expected) < 1e-14);
        const auto inp_f = as<float>(inp), weight_f = as<float>(weight), bias_f = as<float>(bias);
        std::vector<float> out_f(size(N * OC));
        cpu::linear_forward(tag, out_f.data(), inp_f.data(), weight_f.data(), with_bias ? bias_f.data() : nullptr, N, IC,
                            OC);
        BOOST_TEST(relative_error(as_double(out_f), expected) < 1e-5);
    }
}

BOOST_AUTO_TEST_CASE(linear_backward_matches_central_differences) {
    const std::int64_t N = 6, IC = 5, OC = 7;
    const Vec inp = draw(size(N * IC), 4), weight = draw(size(OC * IC), 5), bias = draw(size(OC), 6);
    const Vec dout = draw(size(N * OC), 7);
    // Stale values in every output: dinp is written, the parameter gradients stored per GradStore.
    const double stale = 0.75;
    Vec dinp(size(N * IC), stale), dweight(size(OC * IC), stale), dbias(size(OC), stale);
    cpu::linear_backward(tag, dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), N, IC,
                         OC, simnpo::GradStore::accumulate);
    for (auto* g : {&dweight, &dbias})
        for (auto& x : *g) x -= stale;
    check_gradient([&](const Vec& x) { return dot(dout, linear_loop(x, weight, &bias, N, IC, OC)); }, inp, dinp, "dinp");
    check_gradient([&](const Vec& x) { return dot(dout, linear_loop(inp, x, &bias, N, IC, OC)); }, weight, dweight,
                   "dweight");
    check_gradient([&](const Vec& x) { return dot(dout, linear_loop(inp, weight, &x, N, IC, OC)); }, bias, dbias,
                   "dbias");
    // Overwrite, and no bias: the same gradients, whatever was there before.
    Vec dinp2(size(N * IC), stale), dweight2(size(OC * IC), stale);
    cpu::linear_backward(tag, dinp2.data(), dweight2.data(), nullptr, dout.data(), inp.data(), weight.data(), N, IC, OC,
                         simnpo::GradStore::overwrite);
    BOOST_TEST(relative_error(dinp2, dinp) < 1e-14);
    BOOST_TEST(relative_error(dweight2, dweight) < 1e-14);
}

BOOST_AUTO_TEST_CASE(rmsnorm_matches_its_formula) {
    const std::int64_t N = 70, C = 13;
    const double eps = 1e-6;
    const Vec inp = draw(size(N * C), 8, 2.0), weight = draw(size(C), 9);
    const Vec expected = rmsnorm_loop(inp, weight, N, C, eps);
    Vec out(size(N * C)), rstd(size(N));
    cpu::rmsnorm_forward(tag, out.data(), rstd.data(), inp.data(), weight.data(), N, C, eps);
    BOOST_TEST(relative_error(out, expected) < 1e-14);
    for (std::int64_t n = 0; n < N; ++n) {
        double squares = 0.0;
        for (std::int64_t c = 0; c < C; ++c) squares += inp[size(n * C + c)] * inp[size(n * C + c)];
        BOOST_TEST(rstd[size(n)] == 1.0 / std::sqrt(squares / C + eps), boost::test_tools::tolerance(1e-14));
    }
    const auto inp_f = as<float>(inp), weight_f = as<float>(weight);
    std::vector<float> out_f(size(N * C)), rstd_f(size(N));
    cpu::rmsnorm_forward(tag, out_f.data(), rstd_f.data(), inp_f.data(), weight_f.data(), N, C, eps);
    BOOST_TEST(relative_error(as_double(out_f), expected) < 1e-5);
}

BOOST_AUTO_TEST_CASE(rmsnorm_refuses_an_overflowing_mean_square) {
    const std::int64_t C = 4;
    const std::vector<float> inp{1e20f, 1.0f, -2.0f, 3.0f}, weight(size(C), 1.0f);
    std::vector<float> out(size(C)), rstd(1);
    BOOST_CHECK_THROW(cpu::rmsnorm_forward(tag, out.data(), rstd.data(), inp.data(), weight.data(), 1, C, 1e-5),
                      simnpo::Error);
}

BOOST_AUTO_TEST_CASE(rmsnorm_backward_matches_central_differences) {
    const std::int64_t N = 150, C = 7;  // several blocks of rows
    const double eps = 1e-5;
    const Vec inp = draw(size(N * C), 10), weight = draw(size(C), 11), dout = draw(size(N * C), 12);
    Vec out(size(N * C)), rstd(size(N));
    cpu::rmsnorm_forward(tag, out.data(), rstd.data(), inp.data(), weight.data(), N, C, eps);
    // dinp accumulates (the residual stream's gradient is there already); dweight per GradStore.
    const double already = 0.5;
    Vec dinp(size(N * C), already), dweight(size(C), 9.0);
    cpu::rmsnorm_backward(tag, dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(), rstd.data(), N, C,
                          simnpo::GradStore::overwrite);
    for (auto& x : dinp) x -= already;
    check_gradient([&](const Vec& x) { return dot(dout, rmsnorm_loop(x, weight, N, C, eps)); }, inp, dinp, "dinp");
    check_gradient([&](const Vec& x) { return dot(dout, rmsnorm_loop(inp, x, N, C, eps)); }, weight, dweight,
                   "dweight");
    Vec again = dweight, scratch(size(N * C), 0.0);
    cpu::rmsnorm_backward(tag, scratch.data(), again.data(), dout.data(), inp.data(), weight.data(), rstd.data(), N, C,
                          simnpo::GradStore::accumulate);
    for (std::size_t c = 0; c < again.size(); ++c) BOOST_TEST(again[c] == 2 * dweight[c], boost::test_tools::tolerance(1e-13));
}

BOOST_AUTO_TEST_CASE(rope_matches_its_formula_on_the_heads_it_is_given) {
    // Queries and keys of a packed qkv row rotated (heads = H + KV), values left alone; D 6.
    const std::int64_t H = 4, KV = 2, D = 6;
    const RopeShape shape{.B = 2, .T = 5, .heads = H + KV, .D = D, .row_stride = (H + 2 * KV) * D};
    const Vec inv_freq{1.0, 0.21, 0.0464};
    std::vector<double> cos, sin;
    cpu::rope_tables(cos, sin, std::span<const double>(inv_freq), 3, shape.T);
    BOOST_REQUIRE_EQUAL(cos.size(), size(shape.T * D / 2));
    const Vec x = draw(size(shape.B * shape.T * shape.row_stride), 13);
    const Vec expected = rope_loop(x, cos, sin, shape);
    Vec rotated = x;
    cpu::rope_forward(tag, rotated.data(), cos.data(), sin.data(), shape.B, shape.T, shape.heads, D, shape.row_stride);
    BOOST_TEST(relative_error(rotated, expected) < 1e-15);
    for (std::int64_t row = 0; row < shape.B * shape.T; ++row)
        for (std::int64_t c = shape.heads * D; c < shape.row_stride; ++c)
            BOOST_TEST(rotated[size(row * shape.row_stride + c)] == x[size(row * shape.row_stride + c)]);
    const auto cos_f = as<float>(cos), sin_f = as<float>(sin);
    auto rotated_f = as<float>(x);
    cpu::rope_forward(tag, rotated_f.data(), cos_f.data(), sin_f.data(), shape.B, shape.T, shape.heads, D,
                      shape.row_stride);
    BOOST_TEST(relative_error(as_double(rotated_f), expected) < 1e-6);
}

BOOST_AUTO_TEST_CASE(rope_backward_matches_central_differences) {
    const RopeShape shape{.B = 2, .T = 4, .heads = 2, .D = 10, .row_stride = 25};
    Vec inv_freq(5);
    for (std::size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0, -2.0 * static_cast<double>(i) / 10);
    std::vector<double> cos, sin;
    cpu::rope_tables(cos, sin, std::span<const double>(inv_freq), 0, shape.T);
    const Vec x = draw(size(shape.B * shape.T * shape.row_stride), 14), dout = draw(x.size(), 15);
    Vec dx = dout;
    cpu::rope_backward(tag, dx.data(), cos.data(), sin.data(), shape.B, shape.T, shape.heads, shape.D,
                       shape.row_stride);
    check_gradient([&](const Vec& v) { return dot(dout, rope_loop(v, cos, sin, shape)); }, x, dx, "dx");
}

BOOST_AUTO_TEST_CASE(rope_tables_follow_hugging_face_in_float_and_double) {
    // Llama's inverse frequencies (head 64, base 10000) at long positions, where the float
    // angle's rounding shows: HF computes position · inv_freq in float, then its cos and sin.
    const std::int64_t half = 32, first = 4000, T = 96;
    Vec inv_freq(size(half));
    for (std::int64_t i = 0; i < half; ++i) inv_freq[size(i)] = 1.0 / std::pow(10000.0, 2.0 * static_cast<double>(i) / 64);
    std::vector<float> cos_f, sin_f;
    cpu::rope_tables(cos_f, sin_f, std::span<const double>(inv_freq), first, T);
    std::vector<double> cos_d, sin_d;
    cpu::rope_tables(cos_d, sin_d, std::span<const double>(inv_freq), first, T);
    BOOST_REQUIRE_EQUAL(cos_f.size(), size(T * half));
    BOOST_REQUIRE_EQUAL(sin_d.size(), size(T * half));
    int away_from_double = 0;
    for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t i = 0; i < half; ++i) {
            const std::size_t k = size(t * half + i);
            const float angle = static_cast<float>(first + t) * static_cast<float>(inv_freq[size(i)]);
            // The float angle's cos and sin, to within an ulp of float (as torch's float cos).
            const double ulp = std::ldexp(1.0, -23);
            BOOST_TEST(std::abs(cos_f[k] - std::cos(static_cast<double>(angle))) <= ulp);
            BOOST_TEST(std::abs(sin_f[k] - std::sin(static_cast<double>(angle))) <= ulp);
            const double exact = static_cast<double>(first + t) * inv_freq[size(i)];
            BOOST_TEST(cos_d[k] == std::cos(exact));
            BOOST_TEST(sin_d[k] == std::sin(exact));
            if (std::abs(cos_f[k] - std::cos(exact)) > 4 * ulp) ++away_from_double;
        }
    BOOST_TEST(away_from_double > 0);  // the double route would not have matched HF's float tables
}

BOOST_AUTO_TEST_CASE(attention_matches_its_formula) {
    for (const auto& shape : attention_shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw(shape.qkv_size(), 16, 1.5);
            const auto expected = attention_loop(qkv, shape);
            const auto actual = attention_kernel<double>(qkv, shape);
            BOOST_TEST(relative_error(actual.out, expected.out) < 1e-14);  // padded rows zero
            BOOST_TEST(relative_error(valid_att(actual.att, shape), valid_att(expected.att, shape)) < 1e-14);
            const auto actual_f = attention_kernel<float>(qkv, shape);
            BOOST_TEST(relative_error(actual_f.out, expected.out) < 1e-5);
            BOOST_TEST(relative_error(valid_att(actual_f.att, shape), valid_att(expected.att, shape)) < 1e-5);
        }
    }
}

BOOST_AUTO_TEST_CASE(attention_backward_matches_central_differences) {
    for (const auto& shape : attention_shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            const Vec qkv = draw(shape.qkv_size(), 17, 1.5), dout = draw(shape.out_size(), 18);
            const auto forward = attention_kernel<double>(qkv, shape);
            // Accumulated into: padded positions keep what was there, since they have no gradient.
            const double already = 0.25;
            Vec dqkv(shape.qkv_size(), already);
            cpu::attention_backward(tag, dqkv.data(), dout.data(), qkv.data(), forward.att.data(), shape.lengths.data(),
                                    shape.B, shape.T, shape.H, shape.KV, shape.D, shape.window);
            for (auto& x : dqkv) x -= already;
            check_gradient([&](const Vec& x) { return dot(dout, attention_loop(x, shape).out); }, qkv, dqkv, "dqkv");
        }
    }
}

BOOST_AUTO_TEST_CASE(gpt2_attention_is_the_general_one_with_one_key_head_per_query_head) {
    const std::int64_t B = 2, T = 6, C = 12, H = 3;
    const std::vector<std::int64_t> lengths{6, 4};
    const AttentionShape shape{.B = B, .T = T, .H = H, .KV = H, .D = C / H, .window = 0, .lengths = lengths};
    const auto qkv = as<float>(draw(shape.qkv_size(), 19)), dout = as<float>(draw(shape.out_size(), 20));
    const auto run = [&](bool gpt2) {
        std::vector<float> out(shape.out_size()), att(shape.att_size()), dqkv(shape.qkv_size(), 0.5f);
        if (gpt2) {
            cpu::attention_forward(tag, out.data(), att.data(), qkv.data(), lengths.data(), B, T, C, H);
            cpu::attention_backward(tag, dqkv.data(), dout.data(), qkv.data(), att.data(), lengths.data(), B, T, C, H);
        } else {
            cpu::attention_forward(tag, out.data(), att.data(), qkv.data(), lengths.data(), B, T, H, H, C / H,
                                   std::int64_t{0});
            cpu::attention_backward(tag, dqkv.data(), dout.data(), qkv.data(), att.data(), lengths.data(), B, T, H, H,
                                    C / H, std::int64_t{0});
        }
        out.insert(out.end(), dqkv.begin(), dqkv.end());
        return out;
    };
    BOOST_TEST((run(true) == run(false)));
}

BOOST_AUTO_TEST_CASE(attention_decode_is_the_last_row_of_the_forward) {
    for (auto shape : attention_shapes()) {
        BOOST_TEST_CONTEXT(name(shape)) {
            // One full row: the decode query is its last position, the cache its keys and values.
            shape.B = 1;
            shape.lengths = {shape.T};
            const Vec qkv = draw(shape.qkv_size(), 21, 1.5);
            const auto expected = attention_loop(qkv, shape);
            const std::int64_t n = shape.T, stride = shape.stride(), HD = shape.H * shape.D, KD = shape.KV * shape.D;
            Vec q(size(HD)), keys(size(n * KD)), values(size(n * KD));
            for (std::int64_t j = 0; j < n; ++j)
                for (std::int64_t c = 0; c < KD; ++c) {
                    keys[size(j * KD + c)] = qkv[size(j * stride + HD + c)];
                    values[size(j * KD + c)] = qkv[size(j * stride + HD + KD + c)];
                }
            std::copy_n(qkv.begin() + (n - 1) * stride, HD, q.begin());
            const Vec last(expected.out.end() - HD, expected.out.end());
            Vec out(size(HD));
            cpu::attention_decode(tag, out.data(), q.data(), keys.data(), values.data(), n, shape.H, shape.KV, shape.D,
                                  shape.window);
            BOOST_TEST(relative_error(out, last) < 1e-14);
            const auto q_f = as<float>(q), keys_f = as<float>(keys), values_f = as<float>(values);
            std::vector<float> out_f(size(HD));
            cpu::attention_decode(tag, out_f.data(), q_f.data(), keys_f.data(), values_f.data(), n, shape.H, shape.KV,
                                  shape.D, shape.window);
            BOOST_TEST(relative_error(as_double(out_f), last) < 1e-5);
        }
    }
}

BOOST_AUTO_TEST_CASE(swiglu_matches_its_formula_and_central_differences) {
    const std::int64_t N = 5, I = 9;
    const Vec gate_up = draw(size(N * 2 * I), 22, 3.0), dout = draw(size(N * I), 23);
    const Vec expected = silu(gate_up, N, I);
    Vec out(size(N * I));
    cpu::swiglu_forward(tag, out.data(), gate_up.data(), N, I);
    BOOST_TEST(relative_error(out, expected) < 1e-14);
    const auto gate_up_f = as<float>(gate_up);
    std::vector<float> out_f(size(N * I));
    cpu::swiglu_forward(tag, out_f.data(), gate_up_f.data(), N, I);
    BOOST_TEST(relative_error(as_double(out_f), expected) < 1e-5);
    Vec dgate_up(size(N * 2 * I), 7.0);  // written, not accumulated
    cpu::swiglu_backward(tag, dgate_up.data(), dout.data(), gate_up.data(), N, I);
    check_gradient([&](const Vec& x) { return dot(dout, silu(x, N, I)); }, gate_up, dgate_up, "dgate_up");
}

BOOST_AUTO_TEST_CASE(swiglu_is_finite_far_out) {
    // e^−g overflows for very negative gates: silu is 0 there, and g itself far above 0.
    const std::vector<float> gate_up{-1e30f, -200.0f, 200.0f, 1e30f, 1.0f, 2.0f, 3.0f, 4.0f};
    std::vector<float> out(4), dgate_up(8);
    const std::vector<float> dout(4, 1.0f);
    cpu::swiglu_forward(tag, out.data(), gate_up.data(), 1, 4);
    cpu::swiglu_backward(tag, dgate_up.data(), dout.data(), gate_up.data(), 1, 4);
    BOOST_TEST(out[0] == 0.0f);
    BOOST_TEST(out[1] == 0.0f);
    BOOST_TEST(out[2] == 600.0f);
    BOOST_TEST(out[3] == 4e30f);
    for (const float g : dgate_up) BOOST_TEST(std::isfinite(g));
    BOOST_TEST(dgate_up[0] == 0.0f);
    BOOST_TEST(dgate_up[3] == 4.0f);
}

BOOST_AUTO_TEST_CASE(embedding_gathers_and_scatters_repeated_tokens) {
    const std::int64_t N = 9, C = 5, V = 6;
    const std::vector<std::int32_t> tokens{3, 0, 3, 5, 3, 1, 0, 5, 2};
    const Vec weight = draw(size(V * C), 24), dout = draw(size(N * C), 25);
    Vec out(size(N * C));
    cpu::embedding_forward(tag, out.data(), tokens.data(), weight.data(), N, C);
    Vec expected(size(V * C), 0.0);
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t c = 0; c < C; ++c) {
            BOOST_TEST(out[size(n * C + c)] == weight[size(tokens[size(n)] * C + c)]);
            expected[size(tokens[size(n)] * C + c)] += dout[size(n * C + c)];
        }
    Vec dweight(size(V * C), 3.0);
    cpu::embedding_backward(tag, dweight.data(), dout.data(), tokens.data(), N, C, V, simnpo::GradStore::overwrite);
    BOOST_TEST(relative_error(dweight, expected) < 1e-15);  // token 4 appears nowhere: zero
    cpu::embedding_backward(tag, dweight.data(), dout.data(), tokens.data(), N, C, V, simnpo::GradStore::accumulate);
    for (auto& x : expected) x *= 2;
    BOOST_TEST(relative_error(dweight, expected) < 1e-15);
}

BOOST_AUTO_TEST_CASE(backward_kernels_do_not_depend_on_the_thread_count) {
    // Float, accumulating stores, sizes that split unevenly across threads.
    using simnpo::GradStore;
    const auto f = [](std::size_t n, std::uint64_t seed) { return as<float>(draw(n, seed)); };
    {
        const std::int64_t N = 67, IC = 150, OC = 203;  // products of several column blocks
        const auto inp = f(size(N * IC), 30), weight = f(size(OC * IC), 31), bias = f(size(OC), 32);
        const auto dout = f(size(N * OC), 33);
        check_thread_independent([&] {
            std::vector<float> out(size(N * OC));
            cpu::linear_forward(tag, out.data(), inp.data(), weight.data(), bias.data(), N, IC, OC);
            std::vector<float> grads(size(N * IC + OC * IC + OC), 0.25f);
            float* g = grads.data();
            cpu::linear_backward(tag, g, g + N * IC, g + N * IC + OC * IC, dout.data(), inp.data(), weight.data(), N,
                                 IC, OC, GradStore::accumulate);
            grads.insert(grads.end(), out.begin(), out.end());
            return grads;
        }, "linear");
    }
    {
        const std::int64_t N = 300, C = 24;
        const auto inp = f(size(N * C), 34), weight = f(size(C), 35), dout = f(size(N * C), 36);
        check_thread_independent([&] {
            std::vector<float> out(size(N * C)), rstd(size(N)), grads(size(N * C + C), 0.25f);
            cpu::rmsnorm_forward(tag, out.data(), rstd.data(), inp.data(), weight.data(), N, C, 1e-5);
            cpu::rmsnorm_backward(tag, grads.data(), grads.data() + N * C, dout.data(), inp.data(), weight.data(),
                                  rstd.data(), N, C, GradStore::accumulate);
            grads.insert(grads.end(), out.begin(), out.end());
            return grads;
        }, "rmsnorm");
    }
    for (const auto& shape : attention_shapes()) {
        const auto qkv = f(shape.qkv_size(), 37), dout = f(shape.out_size(), 38);
        check_thread_independent([&] {
            std::vector<float> out(shape.out_size()), att(shape.att_size()), dqkv(shape.qkv_size(), 0.25f);
            cpu::attention_forward(tag, out.data(), att.data(), qkv.data(), shape.lengths.data(), shape.B, shape.T,
                                   shape.H, shape.KV, shape.D, shape.window);
            cpu::attention_backward(tag, dqkv.data(), dout.data(), qkv.data(), att.data(), shape.lengths.data(),
                                    shape.B, shape.T, shape.H, shape.KV, shape.D, shape.window);
            dqkv.insert(dqkv.end(), out.begin(), out.end());
            return dqkv;
        }, "attention " + name(shape));
    }
    {
        const std::int64_t N = 77, C = 19, V = 5, I = 23;
        std::vector<std::int32_t> tokens(size(N));
        for (std::int64_t n = 0; n < N; ++n) tokens[size(n)] = static_cast<std::int32_t>((n * n) % V);
        const auto dout = f(size(N * C), 39), gate_up = f(size(N * 2 * I), 40), dmlp = f(size(N * I), 41);
        check_thread_independent([&] {
            std::vector<float> dweight(size(V * C), 0.25f), dgate_up(size(N * 2 * I));
            cpu::embedding_backward(tag, dweight.data(), dout.data(), tokens.data(), N, C, V, GradStore::accumulate);
            cpu::swiglu_backward(tag, dgate_up.data(), dmlp.data(), gate_up.data(), N, I);
            dweight.insert(dweight.end(), dgate_up.begin(), dgate_up.end());
            return dweight;
        }, "embedding and swiglu");
    }
}

BOOST_AUTO_TEST_SUITE_END()  // test_llama_kernels
