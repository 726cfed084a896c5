// The counting tasks of the training tests: prompt (topic, start), answer the
// next three numbers counting by `step`, all within 3..15. Topic 1 counts up
// (a forget set), topic 2 down (a retain set); vocabulary 16.
#pragma once

#include <cstdint>
#include <vector>

#include <simnpo.hpp>

namespace simnpo::testing {

inline std::vector<data::Example> counting(std::int32_t topic, std::int32_t step) {
    std::vector<data::Example> examples;
    for (std::int32_t start = 3; start <= 15; ++start) {
        data::Example example{{topic, start}, {}};
        for (std::int32_t k = 1; k <= 3; ++k) example.answer_ids.push_back(start + k * step);
        if (example.answer_ids.back() >= 3 && example.answer_ids.back() <= 15) examples.push_back(example);
    }
    return examples;
}

}  // namespace simnpo::testing
