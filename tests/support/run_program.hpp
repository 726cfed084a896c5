// Runs one of the built programs with a shell command line, capturing what it
// prints, for the tests of the programs themselves.
#pragma once

#include <cstdlib>
#include <string>
#include <sys/wait.h>

#include <simnpo.hpp>

#include "support/temp_dir.hpp"

namespace simnpo::testing {

struct ProgramResult {
    int status;          // the exit status, or -1 when the program did not exit normally
    std::string output;  // stdout and stderr together
};

// Runs `program arguments`; the output goes through a file in `scratch`.
inline ProgramResult run_program(const std::string& program, const std::string& arguments, const TempDir& scratch) {
    const std::string log = scratch.file("output.log");
    const int raw = std::system((program + " " + arguments + " > " + log + " 2>&1").c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_file(log)};
}

}  // namespace simnpo::testing
