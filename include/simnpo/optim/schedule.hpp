#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>

#include "simnpo/core/error.hpp"

namespace simnpo::optim {

enum class ScheduleKind { constant, linear, cosine };

// "constant", "linear" or "cosine" (the --schedule flag); anything else is an Error listing the choices.
inline ScheduleKind schedule_kind(std::string_view name) {
    if (name == "constant") return ScheduleKind::constant;
    if (name == "linear") return ScheduleKind::linear;
    if (name == "cosine") return ScheduleKind::cosine;
    fail("unknown learning-rate schedule '", name, "' (choose constant, linear or cosine)");
}

inline const char* schedule_name(ScheduleKind kind) {
    switch (kind) {
        case ScheduleKind::constant: return "constant";
        case ScheduleKind::linear: return "linear";
        case ScheduleKind::cosine: return "cosine";
    }
    return "unknown";
}

// The learning-rate factors of Hugging Face's get_{constant,linear,cosine}_schedule_with_warmup:
// the rate of 0-based optimizer step `step` is the base rate times factor(step). A linear warmup
// from 0 over warmup_steps, then
//   constant: 1
//   linear:   max(0, (total − step) / max(1, total − warmup))
//   cosine:   max(0, ½ (1 + cos(π · progress))), progress = (step − warmup) / max(1, total − warmup)
// As in Hugging Face, the cosine rises again past total_steps; a run stops there.
struct Schedule {
    ScheduleKind kind = ScheduleKind::constant;
    std::int64_t warmup_steps = 0;
    std::int64_t total_steps = 0;

    double factor(std::int64_t step) const {
        if (step < warmup_steps)
            return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warmup_steps));
        const auto decay_steps = static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps));
        switch (kind) {
            case ScheduleKind::constant:
                return 1.0;
            case ScheduleKind::linear:
                return std::max(0.0, static_cast<double>(total_steps - step) / decay_steps);
            case ScheduleKind::cosine: {
                const double progress = static_cast<double>(step - warmup_steps) / decay_steps;
                return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
            }
        }
        return 1.0;  // not reached: every kind is handled above
    }
};

}  // namespace simnpo::optim
