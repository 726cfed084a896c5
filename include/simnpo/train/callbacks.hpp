#pragma once
#include "simnpo/core/internal_check.hpp"

#include <unistd.h>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/train/loop.hpp"

namespace simnpo::train {

// Progress on standard error: on a terminal one live line (step/total, loss,
// tokens/s, time left) redrawn each step; otherwise a plain line every
// `every` steps (0: about twenty lines a run) and at the last.
class ProgressBar {
public:
    explicit ProgressBar(std::int64_t every = 0, std::FILE* stream = stderr)
        : stream_(stream), every_(every), live_(::isatty(::fileno(stream)) != 0) {}

    void on_begin(const RunInfo& run) {
        if (run.first_step > 0) std::fprintf(stream_, "resuming at step %lld\n", static_cast<long long>(run.first_step));
        if (every_ == 0) every_ = std::max<std::int64_t>(1, (run.total_steps - run.first_step) / 20);
    }

    void on_step(const StepInfo& info) {
        if (live_) {
            std::fprintf(stream_, "\r\x1b[Kstep %lld/%lld  loss %.4f  forget %.4f  retain %.4f  %.0f tok/s  %s left",
                         static_cast<long long>(info.step), static_cast<long long>(info.total_steps), info.loss,
                         info.forget_loss, info.retain_loss, info.tokens_per_s, duration(info.remaining_s).c_str());
            if (info.step == info.total_steps) std::fputc('\n', stream_);
        } else if (info.step % every_ == 0 || info.step == info.total_steps) {
            std::fprintf(stream_, "step %lld/%lld loss %.6f forget %.6f retain %.6f lr %.3g grad_norm %.4g %.0f tok/s %s left\n",
                         static_cast<long long>(info.step), static_cast<long long>(info.total_steps), info.loss,
                         info.forget_loss, info.retain_loss, info.lr, info.grad_norm, info.tokens_per_s,
                         duration(info.remaining_s).c_str());
        }
        std::fflush(stream_);
    }

    void on_end(const Summary& summary) {
        if (live_ && summary.stopped) std::fputc('\n', stream_);
    }

private:
    static std::string duration(double seconds) {
        const auto s = static_cast<long long>(seconds + 0.5);
        char text[32];
        if (s >= 3600) std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s % 3600 / 60);
        else std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
        return text;
    }

    std::FILE* stream_;
    std::int64_t every_;
    bool live_;
};

// One JSON line per step: step, epoch, loss, forget_loss, retain_loss, lr,
// grad_norm, tokens, tokens_per_s, seconds. Appends when `append` (resumed runs
// continue their log), else starts the file afresh.
class JsonlLog {
public:
    explicit JsonlLog(const std::filesystem::path& path, bool append = false)
        : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
        if (!out_) fail(path.string(), ": cannot open the log for writing");
    }

    void on_step(const StepInfo& info) {
        const nlohmann::json line = {{"step", info.step},
                                     {"epoch", info.epoch},
                                     {"loss", info.loss},
                                     {"forget_loss", info.forget_loss},
                                     {"retain_loss", info.retain_loss},
                                     {"lr", info.lr},
                                     {"grad_norm", info.grad_norm},
                                     {"tokens", info.tokens},
                                     {"tokens_per_s", info.tokens_per_s},
                                     {"seconds", info.seconds}};
        out_ << line.dump() << '\n';
        out_.flush();
        if (!out_) fail(path_.string(), ": write failed (disk full?)");
    }

private:
    std::filesystem::path path_;
    std::ofstream out_;
};

// Calls evaluate(info) every `every` steps and at the last: periodic
// evaluation. evaluate may return bool; true stops the run (a stop rule).
template <class Evaluate>
class EvaluateEvery {
public:
    EvaluateEvery(std::int64_t every, Evaluate evaluate) : every_(every), evaluate_(std::move(evaluate)) {
        if (every_ < 1) fail("EvaluateEvery: every must be at least 1, got ", every_);
    }

    bool on_step(const StepInfo& info) {
        if (info.step % every_ != 0 && info.step != info.total_steps) return false;
        if constexpr (std::convertible_to<decltype(evaluate_(info)), bool>) return evaluate_(info);
        else {
            evaluate_(info);
            return false;
        }
    }

private:
    std::int64_t every_;
    Evaluate evaluate_;
};

}  // namespace simnpo::train
