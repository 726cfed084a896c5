#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "simnpo/core/error.hpp"
#include "simnpo/core/rng.hpp"

namespace simnpo::train {

// Which examples each micro-batch takes. Every order is a function of the
// seed and the micro-batch's index alone, so a resumed run recomputes exactly
// the batches the interrupted one would have taken: nothing to save but the step.
//
// The forget (or training) set is read in passes, each a fresh permutation, in
// batches of batch_size (the last of a pass may be smaller). The retain set is
// an endless stream of permutations read batch_size at a time, so that it
// cycles whatever the forget set's size; a set smaller than the batch size is
// one whole batch.
//
// Grouping by length (give the forget examples' lengths): each pass's
// permutation is cut into groups of group_batches batches, each group is
// sorted by length, longest first, and cut into batches, and the pass's
// batches are then shuffled. A batch then holds examples of similar length
// and pads little (right-padding to the longest costs a third of the work on
// TOFU), while every example is still seen once a pass, in a random batch.
class DataOrder {
public:
    static constexpr std::size_t group_batches = 50;

    DataOrder(std::size_t forget_size, std::size_t retain_size, std::int64_t batch_size, std::uint64_t seed,
              std::vector<std::size_t> forget_lengths = {})
        : forget_size_(forget_size), retain_size_(retain_size), batch_(static_cast<std::size_t>(batch_size)),
          seed_(seed), lengths_(std::move(forget_lengths)) {
        if (forget_size_ == 0) fail("DataOrder: empty forget set");
        if (batch_size < 1) fail("DataOrder: batch size must be at least 1, got ", batch_size);
        if (!lengths_.empty() && lengths_.size() != forget_size_)
            fail("DataOrder: ", lengths_.size(), " lengths for ", forget_size_, " examples");
    }

    // Micro-batches in one pass over the forget set.
    std::int64_t batches_per_pass() const {
        return static_cast<std::int64_t>((forget_size_ + batch_ - 1) / batch_);
    }

    // Indices into the forget set of micro-batch m.
    std::vector<std::size_t> forget_batch(std::int64_t m) {
        const auto pass = static_cast<std::uint64_t>(m / batches_per_pass());
        auto batch = static_cast<std::size_t>(m % batches_per_pass());
        const auto& order = lengths_.empty() ? permutation(forget_, forget_size_, forget_stream, pass)
                                             : grouped_permutation(pass, batch);
        const std::size_t begin = batch * batch_;
        return {order.begin() + static_cast<std::ptrdiff_t>(begin),
                order.begin() + static_cast<std::ptrdiff_t>(std::min(begin + batch_, forget_size_))};
    }

    // Indices into the retain set of micro-batch m (empty without a retain set).
    std::vector<std::size_t> retain_batch(std::int64_t m) {
        std::vector<std::size_t> indices;
        if (retain_size_ == 0) return indices;
        const std::size_t size = std::min(batch_, retain_size_);
        std::uint64_t position = static_cast<std::uint64_t>(m) * size;
        while (indices.size() < size) {
            const auto& order = permutation(retain_, retain_size_, retain_stream, position / retain_size_);
            indices.push_back(order[position % retain_size_]);
            ++position;
        }
        return indices;
    }

private:
    static constexpr std::uint64_t forget_stream = 1, retain_stream = 2;

    struct Cached {
        std::uint64_t pass = ~std::uint64_t{0};
        std::vector<std::size_t> order;
    };

    // Pass `pass` of a stream: a Fisher-Yates shuffle seeded from (seed, stream, pass).
    const std::vector<std::size_t>& permutation(Cached& cached, std::size_t n, std::uint64_t stream,
                                                std::uint64_t pass) {
        if (cached.pass == pass) return cached.order;
        cached.order.resize(n);
        std::iota(cached.order.begin(), cached.order.end(), std::size_t{0});
        Rng rng(seed_ ^ (stream * 0x9E3779B97F4A7C15ull) ^ (pass * 0xD1B54A32D192ED03ull));
        for (std::size_t i = n; i > 1; --i) std::swap(cached.order[i - 1], cached.order[rng.below(i)]);
        cached.pass = pass;
        return cached.order;
    }

    // Pass `pass` grouped by length; `batch` becomes the place of the batch in it.
    const std::vector<std::size_t>& grouped_permutation(std::uint64_t pass, std::size_t& batch) {
        if (grouped_.pass != pass) {
            std::vector<std::size_t> order = permutation(forget_, forget_size_, forget_stream, pass);
            const std::size_t group = group_batches * batch_;
            for (std::size_t begin = 0; begin < order.size(); begin += group)
                std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                 order.begin() + static_cast<std::ptrdiff_t>(std::min(begin + group, order.size())),
                                 [&](std::size_t a, std::size_t b) { return lengths_[a] > lengths_[b]; });
            grouped_.order = std::move(order);
            grouped_.pass = pass;
            // The batches' order: a shuffle of their places, from a stream of its own.
            const auto& places = permutation(batch_places_, static_cast<std::size_t>(batches_per_pass()),
                                             batch_order_stream, pass);
            place_of_batch_ = places;
        }
        batch = place_of_batch_[batch];
        return grouped_.order;
    }

    static constexpr std::uint64_t batch_order_stream = 3;

    std::size_t forget_size_, retain_size_, batch_;
    std::uint64_t seed_;
    std::vector<std::size_t> lengths_;
    Cached forget_, retain_, grouped_, batch_places_;
    std::vector<std::size_t> place_of_batch_;
};

}  // namespace simnpo::train
