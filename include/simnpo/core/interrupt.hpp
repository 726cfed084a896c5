#pragma once
#include "simnpo/core/internal_check.hpp"

#include <atomic>
#include <csignal>
#include <string>
#include <unistd.h>

#include "simnpo/core/error.hpp"

namespace simnpo {

// SIGINT and SIGTERM, handled so that they never leave a half-written output.
//
// Once install_interrupt_handlers() has run (the simnpo command does it first):
// - inside a SaveSection (every atomic save holds one) a signal is deferred: the
//   save finishes and cleans up, and then the signal takes its default action
//   (the process ends as killed by it: exit status 130 or 143 in a shell);
// - inside a StopSection (the training loop holds one) a signal asks the run to
//   stop: the loop finishes its step and its checkpoint, then throws Interrupted;
//   a second signal before that ends the process at once (saves still finish first);
// - anywhere else a signal takes its default action at once.
// Without the handlers installed, signals keep their default action everywhere.
class Interrupted : public Error {
public:
    explicit Interrupted(int signal, const std::string& detail = "")
        : Error(std::string("interrupted by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
                (detail.empty() ? "" : " " + detail)),
          signal_(signal) {}
    int signal() const { return signal_; }
    int exit_status() const { return 128 + signal_; }

private:
    int signal_;
};

namespace detail {

struct InterruptState {
    std::atomic<int> pending{0};       // the signal that asked to stop, 0 if none
    std::atomic<int> save_depth{0};    // SaveSections open
    std::atomic<int> stop_depth{0};    // StopSections open
};

inline InterruptState& interrupt_state() {
    static InterruptState state;
    return state;
}

[[noreturn]] inline void die_by(int signal) {
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    ::_exit(128 + signal);  // not reached: the default action of SIGINT and SIGTERM ends the process
}

// Async-signal-safe: atomics, write(2), signal(2) and raise(3) only.
inline void on_interrupt(int signal) {
    InterruptState& state = interrupt_state();
    const int before = state.pending.exchange(signal);
    if (state.save_depth.load() > 0) return;  // the save ends first; the section's close decides
    if (state.stop_depth.load() > 0 && before == 0) {
        constexpr char note[] = "\nsimnpo: stopping after this step (interrupt again to stop at once)\n";
        [[maybe_unused]] const auto written = ::write(STDERR_FILENO, note, sizeof(note) - 1);
        return;
    }
    die_by(signal);
}

}  // namespace detail

inline void install_interrupt_handlers() {
    detail::interrupt_state();  // constructed here, never first inside the handler
    std::signal(SIGINT, detail::on_interrupt);
    std::signal(SIGTERM, detail::on_interrupt);
}

// The signal that asked the run to stop (SIGINT or SIGTERM), 0 if none, taken:
// the stop it asked for is being made (a later signal asks again).
inline int take_interrupt() { return detail::interrupt_state().pending.exchange(0); }

// Holds signals back while an output is being written (see above).
class SaveSection {
public:
    SaveSection() { ++detail::interrupt_state().save_depth; }
    ~SaveSection() {
        auto& state = detail::interrupt_state();
        if (--state.save_depth > 0) return;
        const int signal = state.pending.load();
        // Outside a StopSection a deferred signal ends the process now that the save is whole.
        if (signal != 0 && state.stop_depth.load() == 0) detail::die_by(signal);
    }
    SaveSection(const SaveSection&) = delete;
    SaveSection& operator=(const SaveSection&) = delete;
};

// Turns signals into a request to stop (see above), which the holder takes
// with take_interrupt(). A request still untaken when the section closes (a
// signal after the run's last check) ends the process as the signal would.
class StopSection {
public:
    StopSection() { ++detail::interrupt_state().stop_depth; }
    ~StopSection() {
        auto& state = detail::interrupt_state();
        if (--state.stop_depth > 0 || state.save_depth.load() > 0) return;
        if (const int signal = state.pending.load(); signal != 0) detail::die_by(signal);
    }
    StopSection(const StopSection&) = delete;
    StopSection& operator=(const StopSection&) = delete;
};

}  // namespace simnpo
