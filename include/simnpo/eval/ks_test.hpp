#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "simnpo/core/error.hpp"

namespace simnpo::eval {

// The two-sample Kolmogorov–Smirnov test. TOFU's "forget quality" is its p-value for the
// unlearned model's truth ratios against the retain model's.
struct KsResult {
    double statistic;  // D = max_x |F_a(x) - F_b(x)|
    double p_value;    // two-sided
    bool exact;        // from the exact null distribution (else the asymptotic one)
};

namespace detail::ks {

inline double clip_probability(double p) { return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p); }

// ---------------------------------------------------------------------------------------
// Exact two-sample null distribution: a uniformly random lattice path from (0,0) to (m,n),
// one step right per element of the first sample and one up per element of the second,
// in pooled sorted order. D >= h/lcm(m,n) iff the path touches a point with
// |x·(n/g) − y·(m/g)| >= h (g = gcd(m,n)); the p-value is the probability that it does.

// Equal sizes n (reflection principle):
//   Pr(D >= h/n) = 2 Σ_{k>=1} (−1)^(k−1) C(2n, n−kh) / C(2n, n).
// The ratio of consecutive terms is r_k = Π_{j<h} (n−kh−j)/(n+kh+j+1), so the sum is
// 2·r_0·(1 − r_1·(1 − r_2·(…))), evaluated innermost first. The operations are ordered as
// SciPy orders them: its rounding can leave the result an ulp above 1, which SciPy treats
// as a failed exact computation (see ks_2samp below), and that decision is reproduced.
inline double equal_sizes_sf(std::int64_t n, std::int64_t h) {
    double p = 0.0;
    for (std::int64_t k = n / h; k >= 0; --k) {
        double ratio = 1.0;
        for (std::int64_t j = 0; j < h; ++j)
            ratio = static_cast<double>(n - k * h - j) * ratio / static_cast<double>(n + k * h + j + 1);
        p = ratio * (1.0 - p);
    }
    return 2.0 * p;
}

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {  // b > 0
    const std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return -floor_div(-a, b); }

// Unequal sizes: Hodges' "inside" recursion, rewritten (Viehmann 2021, arXiv:2102.08037)
// to carry the probability of having already left the band rather than a path count, so
// nothing overflows and tiny p-values keep their relative precision. With q(x,y) the
// fraction of paths from (0,0) to (x,y) that have touched the boundary:
//   q = 1 outside the band, q(0,0) = 0, q(x,y) = (x·q(x−1,y) + y·q(x,y−1)) / (x+y) inside.
// Columns are x = 0..m (m the larger size); only the band of each column is visited.
inline double unequal_sizes_sf(std::int64_t m, std::int64_t n, std::int64_t g, std::int64_t h) {
    if (m < n) std::swap(m, n);
    const std::int64_t mg = m / g;
    const std::int64_t ng = n / g;
    // q of the previous column; rows above its band stay 1 (the band only moves up).
    std::vector<double> column(static_cast<std::size_t>(n + 1), 1.0);
    const std::int64_t first_top = std::min(ceil_div(h, mg), n + 1);
    std::fill(column.begin(), column.begin() + first_top, 0.0);
    for (std::int64_t x = 1; x <= m; ++x) {
        // Inside the band: x·ng − h < y·mg < x·ng + h.
        const std::int64_t low = std::min(std::max(floor_div(ng * x - h, mg) + 1, std::int64_t{0}), n);
        const std::int64_t top = std::min(ceil_div(ng * x + h, mg), n + 1);
        if (top <= low) return 1.0;  // every path leaves the band
        double below = low == 0 ? 0.0 : 1.0;
        const auto xd = static_cast<double>(x);
        for (std::int64_t y = low; y < top; ++y) {
            auto& q = column[static_cast<std::size_t>(y)];
            below = (q * xd + below * static_cast<double>(y)) / static_cast<double>(x + y);
            q = below;
        }
    }
    return column[static_cast<std::size_t>(n)];
}

// ---------------------------------------------------------------------------------------
// The one-sample two-sided Kolmogorov distribution Pr(D_n > x) (SciPy's kstwo.sf), which
// ks_2samp's asymptotic branch evaluates at n = round(m·n/(m+n)). SciPy follows Simard and
// L'Ecuyer (2011, J. Stat. Software 39(11)) and so does this: the Ruben–Gambino closed forms
// near x = 1/(2n) and x = 1; the exact one-sided Smirnov tail (doubled) for large x; Durbin's
// matrix method in the Marsaglia–Tsang–Wang form for small n·x²; and for n > 140 the
// Pelz–Good asymptotic series in the middle. One deviation: where SciPy uses Pomeranz's
// recursion (n <= 140, 0.754693 < n·x² <= 4), this uses Durbin's matrix method, which is
// exact too; the two agree to rounding (the CDF to ~1e-15, the tail there being >= ~7e-4).

// log(n!/n^n) by Stirling's series (B_2k/(2k(2k−1)) terms up to k = 8), as SciPy does.
inline double log_factorial_over_power(std::int64_t n) {
    static constexpr std::array<double, 8> coefficients{
        -3617.0 / 122400.0, 1.0 / 156.0, -691.0 / 360360.0, 1.0 / 1188.0,
        -1.0 / 1680.0,      1.0 / 1260.0, -1.0 / 360.0,     1.0 / 12.0};
    const double nd = static_cast<double>(n);
    const double rn = 1.0 / nd;
    double series = 0.0;
    for (const double c : coefficients) series = series * (rn / nd) + c;
    return std::log(nd) / 2 - nd + std::log(2 * std::numbers::pi) / 2 + rn * series;
}

// Pr(D_n <= d) by Durbin's matrix method: with n·d = k − e (k integer, 0 <= e < 1), the
// answer is n!/n^n · (H^n)[k−1][k−1] for a (2k−1)×(2k−1) matrix H of Poisson-like terms.
// Powers are rescaled by 2^128 as needed and the exponent is kept apart (Marsaglia, Tsang,
// Wang 2003).
inline double durbin_cdf(std::int64_t n, double d) {
    if (d >= 1.0) return 1.0;
    const double nd = static_cast<double>(n) * d;
    if (nd <= 0.5) return 0.0;
    const auto k = static_cast<std::int64_t>(std::ceil(nd));
    const double e = static_cast<double>(k) - nd;
    const auto m = static_cast<std::size_t>(2 * k - 1);
    using Matrix = std::vector<double>;  // m×m, row-major
    const auto multiply = [m](const Matrix& a, const Matrix& b) {
        Matrix c(m * m, 0.0);
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t l = 0; l < m; ++l) {
                const double ail = a[i * m + l];
                if (ail == 0.0) continue;
                for (std::size_t j = 0; j < m; ++j) c[i * m + j] += ail * b[l * m + j];
            }
        return c;
    };
    // v[j] = (1 − e^(j+1))/(j+1)!; w[j] = 1/j!.
    std::vector<double> v(m), w(m);
    double factorial_inverse = 1.0;
    for (std::size_t j = 1; j <= m; ++j) {
        w[j - 1] = factorial_inverse;
        factorial_inverse /= static_cast<double>(j);
        v[j - 1] = (1.0 - std::pow(e, static_cast<double>(j))) * factorial_inverse;
    }
    const double corner = std::pow(std::max(2 * e - 1.0, 0.0), static_cast<double>(m)) -
                          2 * std::pow(e, static_cast<double>(m));
    v[m - 1] = (1.0 + corner) * factorial_inverse;
    Matrix power(m * m, 0.0);
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 1; j < m; ++j)
            if (i + 1 >= j) power[i * m + j] = w[i + 1 - j];
    for (std::size_t i = 0; i < m; ++i) power[i * m] = v[i];
    for (std::size_t j = 0; j < m; ++j) power[(m - 1) * m + j] = v[m - 1 - j];

    constexpr int scale_bits = 128;
    const double big = std::ldexp(1.0, scale_bits);
    const double small = std::ldexp(1.0, -scale_bits);
    const std::size_t centre = static_cast<std::size_t>(k - 1) * m + static_cast<std::size_t>(k - 1);
    Matrix result(m * m, 0.0);
    for (std::size_t i = 0; i < m; ++i) result[i * m + i] = 1.0;
    std::int64_t result_exponent = 0;
    std::int64_t power_exponent = 0;
    for (std::int64_t left = n; left > 0; left /= 2) {
        if (left % 2 != 0) {
            result = multiply(result, power);
            result_exponent += power_exponent;
        }
        power = multiply(power, power);
        power_exponent *= 2;
        if (std::abs(power[centre]) > big) {
            for (double& x : power) x /= big;
            power_exponent += scale_bits;
        }
    }
    double p = result[centre];
    const double nn = static_cast<double>(n);
    for (std::int64_t i = 1; i <= n; ++i) {  // times n!/n^n
        p = static_cast<double>(i) * p / nn;
        if (std::abs(p) < small) {
            p *= big;
            result_exponent -= scale_bits;
        }
    }
    if (result_exponent != 0) p = std::ldexp(p, static_cast<int>(result_exponent));
    return clip_probability(p);
}

// Pr(D_n <= x) by the Pelz–Good (1976) series: the Li-Chien/Korolyuk expansion
// K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5 at z = x√n, each term rewritten with Jacobi's
// theta transformation into sums over exp(−(2k−1)²π²/(8z²)) and exp(−k²π²/(2z²)) that
// converge fast for small z. Terms are summed for k up to ⌈16z/π⌉, as in SciPy.
inline double pelz_good_cdf(std::int64_t n, double x) {
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    constexpr double pi = std::numbers::pi;
    const double pi2 = std::pow(pi, 2.0);
    const double pi4 = std::pow(pi, 4.0);
    const double pi6 = std::pow(pi, 6.0);
    const double sqrt_2pi = std::sqrt(2 * pi);
    const double z = std::sqrt(static_cast<double>(n)) * x;
    const double z2 = std::pow(z, 2.0), z3 = std::pow(z, 3.0), z4 = std::pow(z, 4.0), z6 = std::pow(z, 6.0);
    const double log_q = -pi2 / 8 / z2;
    if (log_q < -708) return 0.0;
    double q = std::exp(log_q);

    // Σ_k c_j(m) q^(m²) over odd m = 2k−1, by Horner in q^8k: q^((2k+1)²) = q^((2k−1)²)·q^(8k).
    const double k1a = -z2, k1b = pi2 / 4;
    const double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
    const double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16,
                 k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * std::pow(z, 8.0);
    std::array<double, 4> terms{0.0, 0.0, 0.0, 0.0};
    const auto max_k = static_cast<std::int64_t>(std::ceil(16 * z / pi));
    for (std::int64_t k = max_k; k > 0; --k) {
        const auto m = static_cast<double>(2 * k - 1);
        const double m2 = m * m, m4 = std::pow(m, 4.0), m6 = std::pow(m, 6.0);
        const double step = std::pow(q, static_cast<double>(8 * k));
        const std::array<double, 4> c{1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                                      k3a + k3b * m2 + k3c * m4 + k3d * m6};
        for (std::size_t i = 0; i < 4; ++i) terms[i] = terms[i] * step + c[i];
    }
    const std::array<double, 4> denominators{z, 6 * z4, 72 * std::pow(z, 7.0), 6480 * std::pow(z, 10.0)};
    for (std::size_t i = 0; i < 4; ++i) terms[i] = terms[i] * q * sqrt_2pi / denominators[i];

    // The remaining parts of K2 and K3, sums over all k of k²·exp(−k²π²/(2z²)).
    q = std::exp(-pi2 / 2 / z2);
    const double sqrt3z = std::sqrt(3.0) * z;
    double k2_extra = 0.0, k3_extra = 0.0;
    for (std::int64_t k = max_k; k > 0; --k) {
        const auto kd = static_cast<double>(k);
        const double k2 = kd * kd;
        const double q_power = std::pow(q, k2);
        k2_extra += k2 * q_power;
        k3_extra += (sqrt3z + pi * kd) * (sqrt3z - pi * kd) * k2 * q_power;
    }
    terms[2] += k2_extra * (pi2 * sqrt_2pi / (-36 * z3));
    terms[3] += k3_extra * (pi2 * sqrt_2pi / (216 * z6));
    const double nd = static_cast<double>(n);
    double sum = 0.0;
    for (std::size_t i = 0; i < 4; ++i) sum += terms[i] / std::pow(nd, static_cast<double>(i) / 2.0);
    return sum;
}

// The one-sided Smirnov tail Pr(D_n^+ >= x) (SciPy's special.smirnov), by the
// Smirnov/Birnbaum–Tingey sum of positive terms
//   x · Σ_{v=0}^{⌊n(1−x)⌋} C(n,v) (x + v/n)^(v−1) (1 − x − v/n)^(n−v),
// each term in log space in long double, with n·x carried exactly as a double pair so that
// 1 − x − v/n loses nothing near the band edges. Where SciPy uses closed forms or an
// approximation (x <= 1/n, x >= 1 − 1/n, a tail below DBL_MIN, n > 10^6) this does too.
inline double smirnov_sf(std::int64_t n, double x) {
    if (!(x > 0.0)) return 1.0;
    if (x >= 1.0) return 0.0;
    if (n == 1) return 1.0 - x;
    const double nd = static_cast<double>(n);
    // n·x = nx_hi + nx_lo exactly; floor(n·x) and its fraction from that.
    const double nx_hi = nd * x;
    const double nx_lo = std::fma(nd, x, -nx_hi);
    double floor_nx = std::floor(nx_hi);
    long double fraction = static_cast<long double>(nx_hi - floor_nx) + nx_lo;
    if (fraction < 0) {
        floor_nx -= 1;
        fraction += 1;
    } else if (fraction >= 1) {
        floor_nx += 1;
        fraction -= 1;
    }
    const auto nx_floor = static_cast<std::int64_t>(floor_nx);
    if (nx_floor == 0 || (nx_floor == 1 && fraction == 0)) {  // x <= 1/n
        return 1.0 - x * std::pow(1.0 + x, nd - 1);
    }
    constexpr double min_log = -7.451332191019412076235E2;  // log(2^-1075), cephes MINLOG
    if (-2 * nd * x * x < min_log) return 0.0;
    if (nx_floor >= n - 1) return std::pow(1.0 - x, nd);
    if (n > 1000000) {  // SciPy's approximation for huge n: exp(−(6nx+1)²/(18n))
        const double log_p = -std::pow(6.0 * nd * x + 1, 2.0) / 18.0 / nd;
        return log_p < -std::numbers::ln2 ? std::exp(log_p) : 1 - (-std::expm1(log_p));
    }
    const long double n_l = static_cast<long double>(n);
    const long double log_n = std::log(n_l);
    const long double log_n_factorial = std::lgamma(n_l + 1);
    const std::int64_t last = n - nx_floor - 1;
    long double sum = 0;
    for (std::int64_t v = 0; v <= last; ++v) {
        const auto vl = static_cast<long double>(v);
        // n(x + v/n) and n(1 − x − v/n), the latter without cancellation.
        const long double up = (static_cast<long double>(nx_hi) + vl) + nx_lo;
        const long double rest = (static_cast<long double>(n - v) - nx_hi) - nx_lo;
        if (!(rest > 0)) break;
        const long double log_term = log_n_factorial - std::lgamma(vl + 1) - std::lgamma(n_l - vl + 1) +
                                     (vl - 1) * std::log(up) + (n_l - vl) * std::log(rest) - (n_l - 1) * log_n;
        const long double term = std::exp(log_term);
        sum += term;
        // SciPy's stopping rule: the remaining terms cannot matter.
        if (term != 0) {
            if (4 * static_cast<long double>(last + 1 - v) * term <
                    static_cast<long double>(std::numeric_limits<double>::epsilon()) * sum &&
                v != last)
                break;
        } else if (v > n / 2) {
            break;
        }
    }
    return clip_probability(static_cast<double>(sum * static_cast<long double>(x)));
}

// Pr(D_n > x) for the one-sample two-sided statistic (SciPy 1.10's kstwo.sf(x, n)).
inline double kolmogorov_sf(std::int64_t n, double x) {
    const double nd = static_cast<double>(n);
    if (std::isnan(x)) return x;
    if (x <= 0.5 / nd) return 1.0;  // below the support
    if (x >= 1.0) return 0.0;
    const double t = nd * x;
    if (t <= 1.0) {  // Ruben–Gambino: Pr(D_n <= x) = n!/n^n (2t − 1)^n for 1/(2n) <= x <= 1/n
        double cdf = 1.0;
        if (n <= 140) {
            for (std::int64_t i = 1; i <= n; ++i) cdf *= static_cast<double>(i) * (1.0 / nd) * (2 * t - 1);
        } else {
            cdf = std::exp(log_factorial_over_power(n) + nd * std::log(2 * t - 1));
        }
        return clip_probability(1.0 - cdf);
    }
    if (t >= nd - 1) return clip_probability(2 * std::pow(1.0 - x, nd));  // Ruben–Gambino
    if (x >= 0.5) return clip_probability(2 * smirnov_sf(n, x));        // the two tails are disjoint
    const double nx2 = t * x;
    if (n <= 140) {
        if (nx2 <= 4) return clip_probability(1.0 - durbin_cdf(n, x));
        return clip_probability(2 * smirnov_sf(n, x));
    }
    if (nx2 >= 370.0) return 0.0;
    if (nx2 >= 2.2) return clip_probability(2 * smirnov_sf(n, x));
    double cdf = 1.0;
    if (nx2 < 18.0) {
        cdf = (n <= 100000 && nd * std::pow(x, 1.5) <= 1.4) ? durbin_cdf(n, x) : pelz_good_cdf(n, x);
    }
    return clip_probability(1.0 - cdf);
}

}  // namespace detail::ks

// The two-sample Kolmogorov–Smirnov test, two-sided, as scipy.stats.ks_2samp(a, b)
// computes it with its defaults (method='auto'; checked against SciPy 1.10):
// - D is evaluated at every pooled value with both empirical CDFs taken as
//   #{sample <= value}/size, so ties are handled as SciPy handles them;
// - when neither sample exceeds 10000 elements, the p-value is exact (lattice-path
//   counting with D in integer units of 1/lcm(m,n)), and the statistic returned is that
//   rounded h/lcm, as SciPy returns it;
// - otherwise, or when the exact value comes out outside [0,1] (SciPy's test for a failed
//   computation: for equal sizes and small D its sum can round to 1 + ulp), it is
//   Pr(D_N > D) of the one-sample Kolmogorov distribution at N = round(mn/(m+n)).
// Throws Error for an empty sample or a NaN.
inline KsResult ks_2samp(std::span<const double> a, std::span<const double> b) {
    if (a.empty() || b.empty())
        fail("ks_2samp: the ", a.empty() ? "first" : "second", " sample is empty");
    for (const auto& [sample, name] : {std::pair{a, "first"}, std::pair{b, "second"}}) {
        const auto nan = std::find_if(sample.begin(), sample.end(), [](double x) { return std::isnan(x); });
        if (nan != sample.end())
            fail("ks_2samp: the ", name, " sample holds a NaN at index ", nan - sample.begin());
    }
    std::vector<double> xs(a.begin(), a.end());
    std::vector<double> ys(b.begin(), b.end());
    std::sort(xs.begin(), xs.end());
    std::sort(ys.begin(), ys.end());
    const auto n1 = static_cast<std::int64_t>(xs.size());
    const auto n2 = static_cast<std::int64_t>(ys.size());

    // Both ECDFs after each distinct pooled value, in one merge.
    double max_diff = -1.0, min_diff = 1.0;
    std::size_t i = 0, j = 0;
    while (i < xs.size() || j < ys.size()) {
        const double value = (j == ys.size() || (i < xs.size() && xs[i] <= ys[j])) ? xs[i] : ys[j];
        while (i < xs.size() && xs[i] <= value) ++i;
        while (j < ys.size() && ys[j] <= value) ++j;
        const double diff =
            static_cast<double>(i) / static_cast<double>(n1) - static_cast<double>(j) / static_cast<double>(n2);
        max_diff = std::max(max_diff, diff);
        min_diff = std::min(min_diff, diff);
    }
    const double below = detail::ks::clip_probability(-min_diff);
    double d = below > max_diff ? below : max_diff;

    const std::int64_t g = std::gcd(n1, n2);
    constexpr std::int64_t max_exact_size = 10000;
    if (std::max(n1, n2) <= max_exact_size) {
        const std::int64_t lcm = (n1 / g) * n2;
        const auto h = static_cast<std::int64_t>(std::nearbyint(d * static_cast<double>(lcm)));
        d = static_cast<double>(h) / static_cast<double>(lcm);
        if (h == 0) return {d, 1.0, true};
        const double p = n1 == n2 ? detail::ks::equal_sizes_sf(n1, h) : detail::ks::unequal_sizes_sf(n1, n2, g, h);
        if (p >= 0.0 && p <= 1.0) return {d, p, true};
    }
    const double larger = static_cast<double>(std::max(n1, n2));
    const double smaller = static_cast<double>(std::min(n1, n2));
    const auto effective_n = static_cast<std::int64_t>(std::nearbyint(larger * smaller / (larger + smaller)));
    return {d, detail::ks::clip_probability(detail::ks::kolmogorov_sf(effective_n, d)), false};
}

}  // namespace simnpo::eval
