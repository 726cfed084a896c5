// Compiled by tests/compile_fail/CMakeLists.txt, never run. A reference-based
// objective asked for a gradient without its frozen reference model must not
// compile, and must say why (DESIGN §3). Each macro picks one such call:
//   SIMNPO_NO_ARGUMENT, or none: NPO+GD, gradient(model, forget, retain)
//   SIMNPO_PASS_NO_REFERENCE:    NPO+GD, gradient(model, forget, retain, none)
//   SIMNPO_KL_RETAIN:            SimNPO+KL: the forget loss needs no reference, its KL retain term does
// With SIMNPO_GIVE_REFERENCE the same objectives get a FrozenReference and the
// file must compile: the failures are then due to the missing reference, not
// to a broken source.
#include <vector>

#include <simnpo.hpp>

namespace sl = simnpo::loss;

void unlearning_step() {
    using Model = simnpo::model::Gpt<simnpo::cpu, float>;
    Model model({.vocab_size = 8, .n_positions = 8, .n_embd = 8, .n_layer = 1, .n_head = 2});
    const std::vector<simnpo::data::Example> forget{{{1}, {2, 3}}};
    const std::vector<simnpo::data::Example> retain{{{4}, {5, 6}}};
#if defined(SIMNPO_GIVE_REFERENCE)
    sl::FrozenReference reference(model);
    sl::NPO_GD{}.gradient(model, forget, retain, reference);
    sl::SimNPO_KL{}.gradient(model, forget, retain, reference);
    sl::SimNPO_GD{}.gradient(model, forget, retain);  // reference-free: needs none
#elif defined(SIMNPO_PASS_NO_REFERENCE)
    sl::NoReference none;
    sl::NPO_GD{}.gradient(model, forget, retain, none);
#elif defined(SIMNPO_KL_RETAIN)
    sl::SimNPO_KL{}.gradient(model, forget, retain);
#else
    sl::NPO_GD{}.gradient(model, forget, retain);
#endif
}
