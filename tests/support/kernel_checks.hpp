// What the kernel tests share: random inputs in double, conversions, the
// relative error against a double reference, central differences, and the
// same bits for any thread count.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/scoped_threads.hpp"

namespace simnpo::testing {

using Vec = std::vector<double>;

inline std::size_t size(std::int64_t n) { return static_cast<std::size_t>(n); }

inline Vec draw(std::size_t n, std::uint64_t seed, double stddev = 1.0) {
    Rng rng(seed);
    Vec v(n);
    for (auto& x : v) x = rng.normal(0.0, stddev);
    return v;
}

template <class S>
std::vector<S> as(const Vec& v) {
    return std::vector<S>(v.begin(), v.end());
}

template <class S>
Vec as_double(const std::vector<S>& v) {
    return Vec(v.begin(), v.end());
}

inline double dot(const Vec& a, const Vec& b) {
    double sum = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
    return sum;
}

// max |actual − expected| over max(1, max |expected|).
template <class S>
double relative_error(const std::vector<S>& actual, const Vec& expected) {
    BOOST_REQUIRE_EQUAL(actual.size(), expected.size());
    double difference = 0.0, scale = 1.0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        difference = std::max(difference, std::abs(static_cast<double>(actual[i]) - expected[i]));
        scale = std::max(scale, std::abs(expected[i]));
    }
    return difference / scale;
}

// Central differences of f at x against the analytic gradient, at every `every`-th element.
inline void check_gradient(const std::function<double(const Vec&)>& f, Vec x, const Vec& analytic,
                           const std::string& what, std::size_t every = 1) {
    BOOST_REQUIRE_EQUAL(x.size(), analytic.size());
    const double step = 1e-5;
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); i += every) {
        const double saved = x[i];
        x[i] = saved + step;
        const double plus = f(x);
        x[i] = saved - step;
        const double minus = f(x);
        x[i] = saved;
        const double numeric = (plus - minus) / (2 * step);
        worst = std::max(worst, std::abs(numeric - analytic[i]) / (1e-3 + std::abs(numeric)));
    }
    BOOST_TEST(worst < 1e-6, what << ": worst relative difference from central differences " << worst);
}

// run() with 1, 2 and 3 threads gives the same bits; the thread count is restored.
template <class Run>
void check_thread_independent(Run run, const std::string& what) {
    ScopedThreads threads(1);
    const auto one = run();
    for (const int count : {2, 3}) {
        threads.set(count);
        BOOST_TEST((run() == one), what << ": " << count << " threads differ from one");
    }
}

}  // namespace simnpo::testing
