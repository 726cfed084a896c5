// The library's thread count set for a scope and restored when it ends, also
// when a failed BOOST_TEST_REQUIRE throws out of the test: later tests see the
// count they started with.
#pragma once

#include <simnpo/core/threads.hpp>

namespace simnpo::testing {

class ScopedThreads {
public:
    explicit ScopedThreads(int count) : before_(thread_count()) { set_threads(count); }
    ScopedThreads(const ScopedThreads&) = delete;
    ScopedThreads& operator=(const ScopedThreads&) = delete;
    ~ScopedThreads() { set_threads(before_); }

    // Another count within the scope.
    void set(int count) { set_threads(count); }

private:
    int before_;
};

}  // namespace simnpo::testing
