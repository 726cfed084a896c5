#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>

namespace simnpo {

// A 64-bit fingerprint of bytes, fed piece by piece: enough to tell whether a
// resumed run was given the same model and data as the run it continues (not a
// defence against forgery). Eight bytes a round, each round mixed as in
// SplitMix64's finaliser, so a model's gigabytes hash at memory speed.
class Fingerprint {
public:
    void add(std::span<const std::byte> bytes) {
        std::size_t i = 0;
        for (; i + 8 <= bytes.size(); i += 8) {
            std::uint64_t word;
            std::memcpy(&word, bytes.data() + i, 8);
            mix(word);
        }
        std::uint64_t tail = 0;
        if (i < bytes.size()) std::memcpy(&tail, bytes.data() + i, bytes.size() - i);  // never from an empty span's null
        mix(tail ^ (static_cast<std::uint64_t>(bytes.size() - i) << 56));
        mix(bytes.size());  // a piece's length, so that where one ends and the next begins counts
    }

    template <class T>
    void add_values(std::span<const T> values) {
        add(std::as_bytes(values));
    }

    // 16 hexadecimal digits.
    std::string hex() const {
        char text[17];
        std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(state_));
        return text;
    }

private:
    void mix(std::uint64_t word) {
        std::uint64_t z = state_ ^ (word + 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        state_ = z ^ (z >> 31);
    }

    std::uint64_t state_ = 0x243f6a8885a308d3ULL;
};

}  // namespace simnpo
