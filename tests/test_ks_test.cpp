#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/error_message.hpp"

BOOST_AUTO_TEST_SUITE(test_ks_test)

namespace {

namespace fs = std::filesystem;
using simnpo::eval::ks_2samp;
using simnpo::testing::message_has;
using Sample = std::vector<double>;

// What tests/reference/make_ks_fixture.py recorded from scipy.stats.ks_2samp (SciPy 1.10).
const nlohmann::json& fixture() {
    static const nlohmann::json data =
        simnpo::read_json_file(fs::path(SIMNPO_FIXTURES_DIR) / "ks_2samp_cases.json");
    return data;
}

// A stored sample: a list of numbers, or {"grid": [start, count, denominator]} for the
// values i/denominator, i = start .. start+count-1.
Sample sample(const nlohmann::json& stored) {
    if (stored.is_array()) return stored.get<Sample>();
    const auto& g = stored.at("grid");
    const auto start = g.at(0).get<std::int64_t>();
    const auto count = g.at(1).get<std::int64_t>();
    const auto denominator = static_cast<double>(g.at(2).get<std::int64_t>());
    Sample values;
    for (std::int64_t i = start; i < start + count; ++i) values.push_back(static_cast<double>(i) / denominator);
    return values;
}

constexpr double p_rtol = 1e-9;
constexpr double p_atol = 1e-300;  // for p-values that underflow

double relative_error(double got, double want) {
    if (got == want) return 0.0;
    return std::abs(got - want) / std::max(std::abs(want), p_atol);
}

bool close(double got, double want) { return std::abs(got - want) <= p_rtol * std::abs(want) + p_atol; }

}  // namespace

BOOST_AUTO_TEST_CASE(matches_scipy_ks_2samp) {
    const auto& cases = fixture().at("cases");
    BOOST_TEST_REQUIRE(cases.size() >= 150u);
    double worst = 0.0;
    std::size_t asymptotic = 0;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("case " << c.at("name").get<std::string>()) {
            const Sample a = sample(c.at("a"));
            const Sample b = sample(c.at("b"));
            const auto result = ks_2samp(a, b);
            const double statistic = c.at("statistic").get<double>();
            const double p = c.at("pvalue").get<double>();
            BOOST_TEST(result.statistic == statistic);  // bit for bit
            BOOST_TEST(close(result.p_value, p), "p " << result.p_value << " != " << p);
            BOOST_TEST(result.exact == c.at("exact").get<bool>());
            worst = std::max(worst, relative_error(result.p_value, p));
            if (!result.exact) ++asymptotic;
        }
    }
    BOOST_TEST(asymptotic >= 20u);
    BOOST_TEST_MESSAGE("worst p-value relative error " << worst);
}

// The asymptotic branch's Kolmogorov distribution on its own, through every branch.
BOOST_AUTO_TEST_CASE(kolmogorov_distribution_matches_scipy_kstwo) {
    const auto& points = fixture().at("kstwo_sf");
    BOOST_TEST_REQUIRE(points.size() >= 150u);
    double worst = 0.0;
    for (const auto& point : points) {
        const auto n = point.at(0).get<std::int64_t>();
        const double x = point.at(1).get<double>();
        const double want = point.at(2).get<double>();
        const double got = simnpo::eval::detail::ks::kolmogorov_sf(n, x);
        BOOST_TEST(close(got, want), "kstwo.sf(" << x << ", " << n << "): " << got << " != " << want);
        worst = std::max(worst, relative_error(got, want));
    }
    BOOST_TEST_MESSAGE("worst kstwo.sf relative error " << worst);
}

// By hand: a path of m right-steps and n up-steps, D >= d iff it touches |x/m − y/n| >= d;
// the p-value is the share of the C(m+n, m) equally likely paths that do.
BOOST_AUTO_TEST_CASE(hand_calculated_cases) {
    {  // One each: both orders reach D = 1.
        const auto r = ks_2samp(Sample{1.0}, Sample{2.0});
        BOOST_TEST(r.statistic == 1.0);
        BOOST_TEST(r.p_value == 1.0);
        BOOST_TEST(r.exact);
    }
    {  // 1 vs 2 apart: D = 1 only when the single point comes first or last, 2 of 3 paths.
        const auto r = ks_2samp(Sample{0.0}, Sample{1.0, 2.0});
        BOOST_TEST(r.statistic == 1.0);
        BOOST_TEST(std::abs(r.p_value - 2.0 / 3.0) <= 1e-15);
    }
    {  // 3 vs 7 apart: 2 of C(10,3) = 120 paths.
        const auto r = ks_2samp(Sample{1, 2, 3}, Sample{10, 11, 12, 13, 14, 15, 16});
        BOOST_TEST(r.statistic == 1.0);
        BOOST_TEST(std::abs(r.p_value - 2.0 / 120.0) <= 1e-15);
    }
    {  // 5 vs 5 apart: 2 of C(10,5) = 252.
        const auto r = ks_2samp(Sample{1, 2, 3, 4, 5}, Sample{6, 7, 8, 9, 10});
        BOOST_TEST(r.statistic == 1.0);
        BOOST_TEST(std::abs(r.p_value - 2.0 / 252.0) <= 1e-15);
    }
    {  // Ties: F_a − F_b is 0, 1/2, 0 at 1, 2, 3, so D = 1/2; every 2-vs-2 path reaches 1/2.
        const auto r = ks_2samp(Sample{1, 2}, Sample{1, 3});
        BOOST_TEST(r.statistic == 0.5);
        BOOST_TEST(r.p_value == 1.0);
    }
    {  // 2 vs 2 interleaved a<b<a<b: D = 1/2, p = 1; a<a<b<b: D = 1, p = 2/6.
        BOOST_TEST(ks_2samp(Sample{1, 3}, Sample{2, 4}).statistic == 0.5);
        const auto r = ks_2samp(Sample{1, 2}, Sample{3, 4});
        BOOST_TEST(std::abs(r.p_value - 1.0 / 3.0) <= 1e-15);
    }
    {  // The same values: D = 0, p = 1.
        const auto r = ks_2samp(Sample{3, 1, 2}, Sample{2, 3, 1});
        BOOST_TEST(r.statistic == 0.0);
        BOOST_TEST(r.p_value == 1.0);
        BOOST_TEST(r.exact);
    }
    {  // Infinities are ordinary values.
        const double inf = std::numeric_limits<double>::infinity();
        const auto r = ks_2samp(Sample{-inf, 0.0}, Sample{inf, 1.0});
        BOOST_TEST(r.statistic == 1.0);
        BOOST_TEST(std::abs(r.p_value - 1.0 / 3.0) <= 1e-15);
    }
}

BOOST_AUTO_TEST_CASE(symmetric_and_order_free) {
    const Sample a{0.3, -1.2, 2.5, 0.3, 0.9, 1.7, -0.4};
    const Sample b{1.1, 0.3, 2.9, 3.3, 0.8, 1.9, 2.2, 0.3, 4.1, 1.5, 2.6};
    Sample a_sorted = a;
    std::sort(a_sorted.begin(), a_sorted.end());
    const auto r = ks_2samp(a, b);
    const auto swapped = ks_2samp(b, a);
    const auto sorted = ks_2samp(a_sorted, b);
    BOOST_TEST(swapped.statistic == r.statistic);
    BOOST_TEST(swapped.p_value == r.p_value);
    BOOST_TEST(sorted.statistic == r.statistic);
    BOOST_TEST(sorted.p_value == r.p_value);
    BOOST_TEST(r.p_value > 0.0);
    BOOST_TEST(r.p_value < 1.0);
}

BOOST_AUTO_TEST_CASE(rejects_empty_samples_and_nan) {
    const Sample some{1.0, 2.0, 3.0};
    const double nan = std::numeric_limits<double>::quiet_NaN();
    BOOST_CHECK_EXCEPTION(ks_2samp(Sample{}, some), simnpo::Error, message_has({"ks_2samp", "first", "empty"}));
    BOOST_CHECK_EXCEPTION(ks_2samp(some, Sample{}), simnpo::Error, message_has({"ks_2samp", "second", "empty"}));
    BOOST_CHECK_EXCEPTION(ks_2samp(Sample{1.0, 2.0, nan}, some), simnpo::Error,
                          message_has({"ks_2samp", "first", "NaN", "index 2"}));
    BOOST_CHECK_EXCEPTION(ks_2samp(some, Sample{nan}), simnpo::Error,
                          message_has({"ks_2samp", "second", "NaN", "index 0"}));
}

BOOST_AUTO_TEST_SUITE_END()  // test_ks_test
