// Whether two models' parameters are equal bit for bit: the test of exact
// resumption and of a save that must leave a model as it was.
#pragma once

#include <cstring>

namespace simnpo::testing {

template <class Model>
bool same_bits(const Model& a, const Model& b) {
    return a.params().size() == b.params().size() &&
           std::memcmp(a.params().data(), b.params().data(), a.params().size() * sizeof(*a.params().data())) == 0;
}

}  // namespace simnpo::testing
