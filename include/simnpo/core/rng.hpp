#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>
#include <numbers>

namespace simnpo {

// Deterministic random numbers: the same seed gives the same stream on every
// platform and standard library (std::normal_distribution does not promise that).
// xoshiro256** seeded through splitmix64; normals by Box-Muller.
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) {
        for (auto& word : state_) {
            seed += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            word = z ^ (z >> 31);
        }
    }

    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

    // Uniform integer in [0, n), n > 0 (modulo bias below n / 2^64).
    std::uint64_t below(std::uint64_t n) { return next_u64() % n; }

    double normal(double mean = 0.0, double stddev = 1.0) {
        if (has_spare_) {
            has_spare_ = false;
            return mean + stddev * spare_;
        }
        const double u1 = 1.0 - uniform();  // in (0, 1]: log stays finite
        const double u2 = uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        spare_ = radius * std::sin(angle);
        has_spare_ = true;
        return mean + stddev * radius * std::cos(angle);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    std::uint64_t state_[4]{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace simnpo
