#pragma once
#include "simnpo/core/internal_check.hpp"

#include <sstream>
#include <stdexcept>
#include <string>

namespace simnpo {

// The one exception type the library throws for bad input or a failed
// operation. Its message is a single line that names the file, line or flag.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Throws Error with the parts streamed into one message.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream message;
    (message << ... << parts);
    throw Error(message.str());
}

}  // namespace simnpo
