// A predicate for BOOST_CHECK_EXCEPTION on simnpo::Error: the message is one
// line and holds every one of `parts`.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

namespace simnpo::testing {

inline auto message_has(std::vector<std::string> parts) {
    return [parts = std::move(parts)](const simnpo::Error& error) {
        const std::string message = error.what();
        BOOST_TEST_MESSAGE("error: " << message);
        if (message.find('\n') != std::string::npos) return false;
        for (const auto& part : parts)
            if (message.find(part) == std::string::npos) return false;
        return true;
    };
}

}  // namespace simnpo::testing
