// The fused LM head (backend/cpu/fused_head.hpp), which runs over chunks of the
// vocabulary and never holds the [N, V] logits: against the unfused kernels
// (lm_head_forward, logsoftmax_gather, logprob_backward, kl_forward_backward,
// lm_head_backward) in double and float, against plain double loops and
// central differences, and the same bits for any thread count.
//
// Bounds, relative to max(1, max |expected|), with what the Eigen build shows:
// - double 1e-12 throughout (observed <= 6e-15): sums of at most V = 1000 terms.
// - float 2e-6 for log-probabilities and log Σ exp (observed <= 1.5e-7): the
//   unfused kernel sums exp over all V columns in float, the fused one over
//   each chunk in float and across chunks in double; each result is within a
//   few ε·|log Σ exp| (ε = 6e-8, |log Σ exp| ≈ 8 here) of the exact value.
// - float 5e-6 for KL (observed <= 1.2e-6): each term p·(log p − log q) carries
//   both log-probabilities' rounding, ~ε·|log Σ exp| each.
// - float 1e-5 for the gradients (observed <= 7e-7): dinp sums V float
//   products, which the fused head splits at its chunk edges.
// A wrong chunk edge (a column dropped or counted twice) moves log Σ exp by ~1e-3.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <simnpo.hpp>

#include "support/kernel_checks.hpp"

BOOST_AUTO_TEST_SUITE(test_fused_head)

namespace {

namespace cpu = simnpo::backend::cpu;
using simnpo::GradStore;
using namespace simnpo::testing;
const cpu::Tag tag;

std::vector<std::int32_t> draw_targets(std::int64_t N, std::int64_t V, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    std::vector<std::int32_t> targets(size(N));
    // The last column too: it lies in the ragged last chunk.
    for (auto& t : targets) t = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(V)));
    targets.back() = static_cast<std::int32_t>(V - 1);
    return targets;
}

// ---- plain double loops from the formulas ----

Vec logits_loop(const Vec& inp, const Vec& head, std::int64_t N, std::int64_t C, std::int64_t V) {
    Vec logits(size(N * V));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t v = 0; v < V; ++v) {
            double sum = 0.0;
            for (std::int64_t c = 0; c < C; ++c) sum += inp[size(n * C + c)] * head[size(v * C + c)];
            logits[size(n * V + v)] = sum;
        }
    return logits;
}

Vec log_softmax_loop(const Vec& logits, std::int64_t N, std::int64_t V) {
    Vec out(logits.size());
    for (std::int64_t n = 0; n < N; ++n) {
        const auto row = logits.begin() + n * V;
        const double max = *std::max_element(row, row + V);
        double sum = 0.0;
        for (std::int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - max);
        for (std::int64_t v = 0; v < V; ++v) out[size(n * V + v)] = row[v] - max - std::log(sum);
    }
    return out;
}

// Σ_n weights[n] · log softmax(inp · headᵀ)[n, targets[n]].
double logprob_loss_loop(const Vec& inp, const Vec& head, const std::vector<std::int32_t>& targets, const Vec& weights,
                         std::int64_t N, std::int64_t C, std::int64_t V) {
    const Vec logprobs = log_softmax_loop(logits_loop(inp, head, N, C, V), N, V);
    double loss = 0.0;
    for (std::int64_t n = 0; n < N; ++n) loss += weights[size(n)] * logprobs[size(n * V + targets[size(n)])];
    return loss;
}

// kl [N] = Σ_v p · (log p − log q), p the reference's softmax, q the model's.
Vec kl_loop(const Vec& inp, const Vec& head, const Vec& ref_inp, const Vec& ref_head, std::int64_t N, std::int64_t C,
            std::int64_t ref_C, std::int64_t V) {
    const Vec log_q = log_softmax_loop(logits_loop(inp, head, N, C, V), N, V);
    const Vec log_p = log_softmax_loop(logits_loop(ref_inp, ref_head, N, ref_C, V), N, V);
    Vec kl(size(N), 0.0);
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t v = 0; v < V; ++v) {
            const std::size_t i = size(n * V + v);
            kl[size(n)] += std::exp(log_p[i]) * (log_p[i] - log_q[i]);
        }
    return kl;
}

// ---- the head's inputs and what each path makes of them ----

struct Shape {
    std::int64_t N, C, V, Vc;
};

struct HeadInputs {
    Shape shape;
    Vec inp, head, weights, dhead_before;
    std::vector<std::int32_t> targets;

    HeadInputs(Shape s, std::uint64_t seed)
        : shape(s), inp(draw(size(s.N * s.C), seed)), head(draw(size(s.V * s.C), seed + 1, 0.3)),
          weights(draw(size(s.N), seed + 2)), dhead_before(draw(size(s.V * s.C), seed + 3)),
          targets(draw_targets(s.N, s.V, seed + 4)) {}
};

template <class S>
struct HeadOutputs {
    std::vector<S> logprobs, logsumexp, dinp, dhead;
};

// The unfused kernels, holding logits and dlogits [N, V]. dhead starts from
// dhead_before, dinp from a stale value that must not survive.
template <class S>
HeadOutputs<S> unfused_head(const HeadInputs& in, GradStore store) {
    const auto [N, C, V, Vc] = in.shape;
    const auto inp = as<S>(in.inp), head = as<S>(in.head), weights = as<S>(in.weights);
    HeadOutputs<S> out{std::vector<S>(size(N)), std::vector<S>(size(N)), std::vector<S>(size(N * C), S(0.75)),
                       as<S>(in.dhead_before)};
    std::vector<S> logits(size(N * V)), dlogits(size(N * V));
    cpu::lm_head_forward(tag, logits.data(), inp.data(), head.data(), N, C, V);
    cpu::logsoftmax_gather(tag, out.logprobs.data(), out.logsumexp.data(), logits.data(), in.targets.data(), N, V);
    cpu::logprob_backward(tag, dlogits.data(), logits.data(), out.logsumexp.data(), in.targets.data(), weights.data(),
                          N, V);
    cpu::lm_head_backward(tag, out.dinp.data(), out.dhead.data(), dlogits.data(), inp.data(), head.data(), N, C, V,
                          store);
    return out;
}

// The workspace starts `offset` elements into its allocation.
template <class S>
HeadOutputs<S> fused_head(const HeadInputs& in, GradStore store, std::size_t offset = 0,
                          cpu::ForwardChunk forward_chunk = cpu::ForwardChunk::recompute) {
    const auto [N, C, V, Vc] = in.shape;
    const auto inp = as<S>(in.inp), head = as<S>(in.head), weights = as<S>(in.weights);
    HeadOutputs<S> out{std::vector<S>(size(N)), std::vector<S>(size(N)), std::vector<S>(size(N * C), S(0.75)),
                       as<S>(in.dhead_before)};
    std::vector<S> allocation(cpu::head_workspace_size<S>(N, Vc) + offset);
    S* workspace = allocation.data() + offset;
    cpu::fused_head_logprobs(tag, out.logprobs.data(), out.logsumexp.data(), workspace, inp.data(), head.data(),
                             in.targets.data(), N, C, V, Vc);
    cpu::fused_head_logprob_backward(tag, out.dinp.data(), out.dhead.data(), workspace, inp.data(), head.data(),
                                     out.logsumexp.data(), in.targets.data(), weights.data(), N, C, V, Vc, store,
                                     forward_chunk);
    return out;
}

// The reference's inputs for a KL term: a narrower model than the one trained.
struct ReferenceInputs {
    std::int64_t C;
    Vec inp, head;

    ReferenceInputs(const Shape& s, std::int64_t width, std::uint64_t seed)
        : C(width), inp(draw(size(s.N * width), seed)), head(draw(size(s.V * width), seed + 1, 0.3)) {}
};

struct KlOutputs {
    Vec kl, dinp, dhead;
};

template <class S>
KlOutputs unfused_kl(const HeadInputs& in, const ReferenceInputs& ref, double scale, GradStore store) {
    const auto [N, C, V, Vc] = in.shape;
    const auto inp = as<S>(in.inp), head = as<S>(in.head), ref_inp = as<S>(ref.inp), ref_head = as<S>(ref.head);
    std::vector<S> logits(size(N * V)), ref_logits(size(N * V)), ref_logprobs(size(N * V)), dlogits(size(N * V));
    cpu::lm_head_forward(tag, logits.data(), inp.data(), head.data(), N, C, V);
    cpu::lm_head_forward(tag, ref_logits.data(), ref_inp.data(), ref_head.data(), N, ref.C, V);
    cpu::log_softmax(tag, ref_logprobs.data(), ref_logits.data(), N, V);
    Vec kl(size(N));
    cpu::kl_forward_backward(tag, dlogits.data(), kl.data(), logits.data(), ref_logprobs.data(), static_cast<S>(scale),
                             N, V);
    std::vector<S> dinp(size(N * C), S(0.75)), dhead = as<S>(in.dhead_before);
    cpu::lm_head_backward(tag, dinp.data(), dhead.data(), dlogits.data(), inp.data(), head.data(), N, C, V, store);
    return {kl, as_double(dinp), as_double(dhead)};
}

template <class S>
KlOutputs fused_kl(const HeadInputs& in, const ReferenceInputs& ref, double scale, GradStore store,
                   cpu::ForwardChunk forward_chunk = cpu::ForwardChunk::recompute) {
    const auto [N, C, V, Vc] = in.shape;
    const auto inp = as<S>(in.inp), head = as<S>(in.head), ref_inp = as<S>(ref.inp), ref_head = as<S>(ref.head);
    std::vector<S> workspace(cpu::head_workspace_size<S>(N, Vc)), ref_workspace(workspace.size());
    std::vector<S> logprobs(size(N)), logsumexp(size(N)), ref_logprobs(size(N)), ref_logsumexp(size(N));
    // The reference first, in the other workspace: the model's keeps its last chunk for the backward.
    cpu::fused_head_logprobs(tag, ref_logprobs.data(), ref_logsumexp.data(), ref_workspace.data(), ref_inp.data(),
                             ref_head.data(), in.targets.data(), N, ref.C, V, Vc);
    cpu::fused_head_logprobs(tag, logprobs.data(), logsumexp.data(), workspace.data(), inp.data(), head.data(),
                             in.targets.data(), N, C, V, Vc);
    Vec kl(size(N), 0.5);
    std::vector<S> dinp(size(N * C), S(0.75)), dhead = as<S>(in.dhead_before);
    cpu::fused_head_kl_backward(tag, dinp.data(), dhead.data(), kl.data(), workspace.data(), ref_workspace.data(),
                                inp.data(), head.data(), logsumexp.data(), ref_inp.data(), ref_head.data(),
                                ref_logsumexp.data(), static_cast<S>(scale), N, C, ref.C, V, Vc, store,
                                forward_chunk);
    return {kl, as_double(dinp), as_double(dhead)};
}

// Several chunks with a ragged last one (1000 = 3·256 + 232), one chunk
// narrower than Vc, one row, rows past one 64-row block, chunks of a width that
// is not a multiple of 64.
const std::vector<Shape> shapes = {
    {1, 24, 1000, 256}, {130, 24, 1000, 256}, {70, 24, 100, 256}, {67, 40, 1000, 320}, {5, 24, 1000, 100}};

template <class S>
void check_against_unfused(double logprob_bound, double gradient_bound) {
    std::uint64_t seed = 10;
    for (const Shape& shape : shapes) {
        const HeadInputs in(shape, seed += 10);
        for (const GradStore store : {GradStore::accumulate, GradStore::overwrite}) {
            const auto expected = unfused_head<S>(in, store),
                       actual = fused_head<S>(in, store, 0, cpu::ForwardChunk::kept);
            const std::string what = "N " + std::to_string(shape.N) + " V " + std::to_string(shape.V) + " Vc " +
                                     std::to_string(shape.Vc) +
                                     (store == GradStore::accumulate ? " accumulate" : " overwrite");
            BOOST_TEST(relative_error(actual.logprobs, as_double(expected.logprobs)) < logprob_bound, what);
            BOOST_TEST(relative_error(actual.logsumexp, as_double(expected.logsumexp)) < logprob_bound, what);
            BOOST_TEST(relative_error(actual.dinp, as_double(expected.dinp)) < gradient_bound, what);
            BOOST_TEST(relative_error(actual.dhead, as_double(expected.dhead)) < gradient_bound, what);
        }
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(head_chunk_columns_fill_the_budget_in_whole_blocks) {
    const std::size_t budget = cpu::head_workspace_budget;
    for (const auto& [N, V] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {8192, 128256}, {256, 50257}, {1, 50257}, {3000, 50257}, {8192, 32000}}) {
        for (const std::size_t scalar : {sizeof(float), sizeof(double)}) {
            const std::int64_t Vc = cpu::head_chunk_columns(N, V, budget, scalar);
            BOOST_TEST((Vc == V || Vc % cpu::linear_block == 0));
            BOOST_TEST(Vc >= cpu::head_chunk_min_columns);
            BOOST_TEST(static_cast<std::size_t>(N * Vc) * scalar <= budget);
            // The widest such chunk, short of the whole vocabulary.
            if (Vc < V) BOOST_TEST(static_cast<std::size_t>(N * (Vc + cpu::linear_block)) * scalar > budget);
        }
    }
    BOOST_TEST(cpu::head_chunk_columns(8192, 128256, std::size_t{32} << 20, sizeof(float)) == 1024);
    BOOST_TEST(cpu::head_chunk_columns(256, 50257, std::size_t{64} << 20, sizeof(float)) == 50257);
    // Never wider than the vocabulary; never narrower than the minimum, even past the budget.
    BOOST_TEST(cpu::head_chunk_columns(256, 300, budget, sizeof(float)) == 300);
    BOOST_TEST(cpu::head_chunk_columns(1 << 20, 128256, budget, sizeof(float)) == cpu::head_chunk_min_columns);
    BOOST_TEST(cpu::head_chunk_columns(1 << 20, 300, budget, sizeof(float)) == 300);
    BOOST_TEST(cpu::head_chunk_columns(0, 128256, 0, sizeof(float)) == cpu::head_chunk_min_columns);
    BOOST_CHECK_THROW(cpu::head_chunk_columns(8, 0, budget, sizeof(float)), simnpo::Error);
}

BOOST_AUTO_TEST_CASE(fused_head_matches_the_unfused_kernels_in_double) { check_against_unfused<double>(1e-12, 1e-12); }

BOOST_AUTO_TEST_CASE(fused_head_matches_the_unfused_kernels_in_float) { check_against_unfused<float>(2e-6, 1e-5); }

BOOST_AUTO_TEST_CASE(fused_head_matches_a_double_loop) {
    const HeadInputs in({67, 40, 1000, 320}, 7);
    const auto [N, C, V, Vc] = in.shape;
    const Vec logprobs = log_softmax_loop(logits_loop(in.inp, in.head, N, C, V), N, V);
    Vec expected(size(N));
    for (std::int64_t n = 0; n < N; ++n) expected[size(n)] = logprobs[size(n * V + in.targets[size(n)])];
    BOOST_TEST(relative_error(fused_head<double>(in, GradStore::overwrite).logprobs, expected) < 1e-12);
    // In float the products' own rounding too.
    BOOST_TEST(relative_error(fused_head<float>(in, GradStore::overwrite).logprobs, expected) < 1e-5);
}

BOOST_AUTO_TEST_CASE(fused_head_backward_matches_central_differences) {
    // Three chunks of 4 columns, the last of 3.
    const HeadInputs in({3, 4, 11, 4}, 50);
    const auto [N, C, V, Vc] = in.shape;
    auto out = fused_head<double>(in, GradStore::accumulate);
    for (std::size_t i = 0; i < out.dhead.size(); ++i) out.dhead[i] -= in.dhead_before[i];
    check_gradient([&](const Vec& x) { return logprob_loss_loop(x, in.head, in.targets, in.weights, N, C, V); },
                   in.inp, out.dinp, "dinp");
    check_gradient([&](const Vec& x) { return logprob_loss_loop(in.inp, x, in.targets, in.weights, N, C, V); },
                   in.head, out.dhead, "dhead");

    const ReferenceInputs ref(in.shape, 5, 60);
    const double scale = 0.7;
    auto kl = fused_kl<double>(in, ref, scale, GradStore::accumulate);
    for (std::size_t i = 0; i < kl.dhead.size(); ++i) kl.dhead[i] -= in.dhead_before[i];
    const auto loss = [&](const Vec& inp, const Vec& head) {
        const Vec values = kl_loop(inp, head, ref.inp, ref.head, N, C, ref.C, V);
        double sum = 0.0;
        for (const double v : values) sum += scale * v;
        return sum;
    };
    check_gradient([&](const Vec& x) { return loss(x, in.head); }, in.inp, kl.dinp, "KL dinp");
    check_gradient([&](const Vec& x) { return loss(in.inp, x); }, in.head, kl.dhead, "KL dhead");
}

BOOST_AUTO_TEST_CASE(fused_kl_matches_kl_forward_backward_and_a_double_loop) {
    const double scale = 0.37;
    std::uint64_t seed = 100;
    for (const Shape& shape : shapes) {
        const HeadInputs in(shape, seed += 10);
        const ReferenceInputs ref(shape, 16, seed + 5);
        const Vec kl = kl_loop(in.inp, in.head, ref.inp, ref.head, shape.N, shape.C, ref.C, shape.V);
        for (const GradStore store : {GradStore::accumulate, GradStore::overwrite}) {
            const std::string what = "N " + std::to_string(shape.N) + " V " + std::to_string(shape.V) + " Vc " +
                                     std::to_string(shape.Vc) +
                                     (store == GradStore::accumulate ? " accumulate" : " overwrite");
            // double to 1e-12; float to 5e-6 (the KL) and 1e-5 (the gradients)
            const auto check = [&]<class S>(S, double kl_bound, double grad_bound) {
                const auto expected = unfused_kl<S>(in, ref, scale, store), actual = fused_kl<S>(in, ref, scale, store);
                BOOST_TEST(relative_error(actual.kl, expected.kl) < kl_bound, what);
                BOOST_TEST(relative_error(actual.kl, kl) < kl_bound, what);
                BOOST_TEST(relative_error(actual.dinp, expected.dinp) < grad_bound, what);
                BOOST_TEST(relative_error(actual.dhead, expected.dhead) < grad_bound, what);
            };
            check(double{}, 1e-12, 1e-12);
            check(float{}, 5e-6, 1e-5);
        }
    }
}

// The KL alone (fused_head_kl, an evaluation's) is the backward's kl, bit for
// bit, and a double loop's to the same bounds.
BOOST_AUTO_TEST_CASE(the_kl_without_its_gradient_is_the_backwards_kl) {
    std::uint64_t seed = 300;
    for (const Shape& shape : shapes) {
        const auto [N, C, V, Vc] = shape;
        const HeadInputs in(shape, seed += 10);
        const ReferenceInputs ref(shape, 16, seed + 5);
        const Vec kl = kl_loop(in.inp, in.head, ref.inp, ref.head, N, C, ref.C, V);
        const auto check = [&]<class S>(S, double kl_bound) {
            const auto inp = as<S>(in.inp), head = as<S>(in.head), ref_inp = as<S>(ref.inp), ref_head = as<S>(ref.head);
            std::vector<S> workspace(cpu::head_workspace_size<S>(N, Vc)), ref_workspace(workspace.size());
            std::vector<S> logprobs(size(N)), logsumexp(size(N)), ref_logprobs(size(N)), ref_logsumexp(size(N));
            cpu::fused_head_logprobs(tag, ref_logprobs.data(), ref_logsumexp.data(), ref_workspace.data(),
                                     ref_inp.data(), ref_head.data(), in.targets.data(), N, ref.C, V, Vc);
            cpu::fused_head_logprobs(tag, logprobs.data(), logsumexp.data(), workspace.data(), inp.data(),
                                     head.data(), in.targets.data(), N, C, V, Vc);
            Vec alone(size(N), 0.5);
            cpu::fused_head_kl(tag, alone.data(), workspace.data(), ref_workspace.data(), inp.data(), head.data(),
                               logsumexp.data(), ref_inp.data(), ref_head.data(), ref_logsumexp.data(), N, C, ref.C, V,
                               Vc);
            const auto with_gradient = fused_kl<S>(in, ref, 0.37, GradStore::overwrite);
            BOOST_TEST((alone == with_gradient.kl), "N " << N << " V " << V << " Vc " << Vc);
            BOOST_TEST(relative_error(alone, kl) < kl_bound);
        };
        check(double{}, 1e-12);
        check(float{}, 5e-6);
    }
}

BOOST_AUTO_TEST_CASE(fused_head_chunks_visit_the_vocabulary_in_order) {
    // Per-row moments of the log-probabilities (what a membership-inference
    // statistic reads), chunk by chunk, from the logsumexp of a forward pass.
    const HeadInputs in({67, 40, 1000, 320}, 200);
    const auto [N, C, V, Vc] = in.shape;
    const Vec logprobs = log_softmax_loop(logits_loop(in.inp, in.head, N, C, V), N, V);
    std::vector<double> workspace(cpu::head_workspace_size<double>(N, Vc));
    std::vector<double> lp(size(N)), logsumexp(size(N)), sum(size(N)), sum_sq(size(N));
    cpu::fused_head_logprobs(tag, lp.data(), logsumexp.data(), workspace.data(), in.inp.data(), in.head.data(),
                             in.targets.data(), N, C, V, Vc);
    std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
    cpu::fused_head_chunks(tag, workspace.data(), in.inp.data(), in.head.data(), N, C, V, Vc,
                           [&](std::int64_t v0, std::int64_t vc, const double* chunk, std::int64_t ld) {
                               chunks.emplace_back(v0, vc);
                               for (std::int64_t n = 0; n < N; ++n)
                                   for (std::int64_t v = 0; v < vc; ++v) {
                                       const double x = chunk[n * ld + v] - logsumexp[size(n)];
                                       sum[size(n)] += x;
                                       sum_sq[size(n)] += x * x;
                                   }
                           });
    const std::vector<std::pair<std::int64_t, std::int64_t>> expected_chunks = {{0, 320}, {320, 320}, {640, 320},
                                                                                {960, 40}};
    BOOST_TEST((chunks == expected_chunks));
    Vec mean(size(N)), mean_sq(size(N));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t v = 0; v < V; ++v) {
            mean[size(n)] += logprobs[size(n * V + v)] / static_cast<double>(V);
            mean_sq[size(n)] += logprobs[size(n * V + v)] * logprobs[size(n * V + v)] / static_cast<double>(V);
        }
    for (auto& x : sum) x /= static_cast<double>(V);
    for (auto& x : sum_sq) x /= static_cast<double>(V);
    BOOST_TEST(relative_error(sum, mean) < 1e-12);
    BOOST_TEST(relative_error(sum_sq, mean_sq) < 1e-12);
}

BOOST_AUTO_TEST_CASE(fused_head_gives_the_same_bits_for_any_thread_count) {
    // Several product blocks per chunk (256 columns, C 200) and per row range.
    const HeadInputs in({130, 200, 1000, 256}, 300);
    const ReferenceInputs ref(in.shape, 72, 310);
    const auto run = [&]<class S>(S) {
        const auto out = fused_head<S>(in, GradStore::accumulate);
        const auto kl = fused_kl<S>(in, ref, 0.5, GradStore::overwrite);
        std::vector<double> bits;
        for (const auto* part : {&out.logprobs, &out.logsumexp, &out.dinp, &out.dhead})
            bits.insert(bits.end(), part->begin(), part->end());
        for (const auto* part : {&kl.kl, &kl.dinp, &kl.dhead}) bits.insert(bits.end(), part->begin(), part->end());
        return bits;
    };
    check_thread_independent([&] { return run(float{}); }, "float");
    check_thread_independent([&] { return run(double{}); }, "double");
}

BOOST_AUTO_TEST_CASE(a_backward_from_the_chunk_the_forward_kept_gives_the_same_bits) {
    // Several chunks (the last one kept) and one chunk (nothing computed again).
    for (const Shape& shape : {Shape{67, 40, 1000, 320}, Shape{67, 40, 300, 320}}) {
        const HeadInputs in(shape, 500);
        const ReferenceInputs ref(shape, 16, 510);
        const auto kept = cpu::ForwardChunk::kept, recompute = cpu::ForwardChunk::recompute;
        for (const GradStore store : {GradStore::accumulate, GradStore::overwrite}) {
            const auto a = fused_head<float>(in, store, 0, kept), b = fused_head<float>(in, store, 0, recompute);
            BOOST_TEST((a.dinp == b.dinp));
            BOOST_TEST((a.dhead == b.dhead));
            const auto c = fused_kl<double>(in, ref, 0.5, store, kept), d = fused_kl<double>(in, ref, 0.5, store,
                                                                                              recompute);
            BOOST_TEST((c.kl == d.kl));
            BOOST_TEST((c.dinp == d.dinp));
            BOOST_TEST((c.dhead == d.dhead));
        }
    }
}

BOOST_AUTO_TEST_CASE(fused_head_gives_the_same_bits_wherever_the_workspace_lies) {
    // Chunks of 250 columns: rows that a plain [N, Vc] layout would start off the 64-byte lines.
    const HeadInputs in({130, 40, 1000, 250}, 400);
    const auto bits = [&]<class S>(S, std::size_t offset) {
        const auto out = fused_head<S>(in, GradStore::overwrite, offset);
        std::vector<S> all = out.logprobs;
        for (const auto* part : {&out.logsumexp, &out.dinp, &out.dhead})
            all.insert(all.end(), part->begin(), part->end());
        return all;
    };
    const auto aligned_float = bits(float{}, 0);
    const auto aligned_double = bits(double{}, 0);
    for (const std::size_t offset : {1, 3, 8, 13}) {
        BOOST_TEST((bits(float{}, offset) == aligned_float), "float, offset " << offset);
        if (offset < 8) BOOST_TEST((bits(double{}, offset) == aligned_double), "double, offset " << offset);
    }
}

BOOST_AUTO_TEST_CASE(fused_head_refuses_targets_outside_the_vocabulary_and_empty_chunks) {
    const std::int64_t N = 2, C = 3, V = 5;
    const std::vector<double> inp(size(N * C), 0.1), head(size(V * C), 0.2), weights(size(N), 1.0);
    std::vector<double> workspace(cpu::head_workspace_size<double>(N, V));
    std::vector<double> logprobs(size(N)), logsumexp(size(N)), dinp(size(N * C)), dhead(size(V * C));
    for (const std::int32_t bad : {-1, 5}) {
        const std::vector<std::int32_t> targets = {0, bad};
        BOOST_CHECK_THROW(cpu::fused_head_logprobs(tag, logprobs.data(), logsumexp.data(), workspace.data(), inp.data(),
                                                   head.data(), targets.data(), N, C, V, V),
                          simnpo::Error);
        BOOST_CHECK_THROW(cpu::fused_head_logprob_backward(tag, dinp.data(), dhead.data(), workspace.data(), inp.data(),
                                                           head.data(), logsumexp.data(), targets.data(),
                                                           weights.data(), N, C, V, V, GradStore::overwrite),
                          simnpo::Error);
    }
    const std::vector<std::int32_t> targets = {0, 4};
    BOOST_CHECK_THROW(cpu::fused_head_logprobs(tag, logprobs.data(), logsumexp.data(), workspace.data(), inp.data(),
                                               head.data(), targets.data(), N, C, V, 0),
                      simnpo::Error);
}

// ---- in the model: CausalLM fuses its head unless the logits are kept ----

namespace {

using simnpo::data::Example;
using simnpo::model::Logits;

std::vector<Example> model_examples(std::int64_t vocab, std::uint64_t seed) {
    simnpo::Rng rng(seed);
    const auto token = [&] { return static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))); };
    std::vector<Example> examples(5);
    for (std::size_t i = 0; i < examples.size(); ++i) {
        for (std::size_t k = 0; k < 2 + i % 3; ++k) examples[i].prompt_ids.push_back(token());
        for (std::size_t k = 0; k < 1 + i; ++k) examples[i].answer_ids.push_back(token());
    }
    return examples;
}

template <class S>
std::vector<S> host(const auto& buffer) {
    return std::vector<S>(buffer.begin(), buffer.end());
}

// forward(batch) (fused) against forward(batch, Logits::keep) (the unfused
// kernels): log-probabilities, and every gradient of a weighted sum of them;
// then a second backward, which must compute the chunk the first overwrote
// with its gradient again and give the same bits.
template <class Model>
void check_fused_model(Model& model, double tolerance, const char* what) {
    using S = typename Model::scalar_type;
    const auto batch = simnpo::data::make_batch(model_examples(model.config().vocab_size, 5));
    model.forward(batch, Logits::keep);
    const auto kept = model.logprobs();
    const std::vector<S> weights = as<S>(draw(kept.size(), 6));
    model.backward(std::span<const S>(weights), GradStore::overwrite);
    const auto kept_grads = host<S>(model.grads());
    model.forward(batch);
    BOOST_CHECK_THROW(model.logits(), simnpo::Error);
    BOOST_TEST(relative_error(model.logprobs(), as_double(kept)) < tolerance, what << ": log-probabilities");
    model.backward(std::span<const S>(weights), GradStore::overwrite);
    const auto fused_grads = host<S>(model.grads());
    BOOST_TEST(relative_error(fused_grads, as_double(kept_grads)) < tolerance, what << ": gradients");
    model.backward(std::span<const S>(weights), GradStore::overwrite);
    BOOST_TEST((host<S>(model.grads()) == fused_grads), what << ": a second backward differs from the first");
    const auto scores = std::as_const(model).score(batch);
    BOOST_TEST(scores.logits.size() == 0u);
    BOOST_TEST((scores.logprobs == model.logprobs()), what << ": score() differs from forward()");
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_model_fuses_its_head_unless_it_keeps_the_logits) {
    simnpo::model::Gpt<simnpo::cpu, double> gpt(
        {.vocab_size = 37, .n_positions = 16, .n_embd = 16, .n_layer = 2, .n_head = 2});
    simnpo::model::init_weights(gpt, 4);
    check_fused_model(gpt, 1e-12, "gpt2, double");
    auto llama = simnpo::model::load<simnpo::model::Llama<simnpo::cpu, float>>(SIMNPO_FIXTURES_DIR "/llama/llama3");
    check_fused_model(llama, 1e-5, "llama3, float");
    // In BF16 mode both paths multiply the same roundings of the weights and
    // activations; a logit gradient's bfloat16 rounding may differ by one unit
    // (2^-8) where the two log Σ exp differ in their last float bit.
    llama.set_precision(simnpo::Precision::bf16);
    check_fused_model(llama, 2e-3, "llama3, bf16");
}

BOOST_AUTO_TEST_SUITE_END()  // test_fused_head
