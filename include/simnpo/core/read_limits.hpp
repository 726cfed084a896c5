#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "simnpo/core/error.hpp"

namespace simnpo {

// The longest line a line-oriented input (JSON Lines data, merges.txt, a
// questions file) may have: far beyond any real record, and small enough that
// a file without newlines (/dev/zero, a binary file) is refused after 16 MiB
// instead of filling memory.
inline constexpr std::size_t max_line_bytes = std::size_t{16} << 20;

// The most read from a file that is not a regular file (a pipe, a device),
// whose size cannot be known beforehand: 1 GiB.
inline constexpr std::size_t max_stream_bytes = std::size_t{1} << 30;

// Error "<where>:<line>: line longer than ... bytes".
[[noreturn]] inline void fail_long_line(const std::string& where, std::size_t line) {
    fail(where, ":", line, ": line longer than ", max_line_bytes, " bytes (16 MiB, the limit for one line)");
}

// A line-oriented text file's bytes, read in chunks so that a bad input is
// refused as it is read: a line (1-based, as editors count) longer than
// max_line_bytes, or more than max_stream_bytes from a pipe or device.
inline std::string read_text_file(const std::filesystem::path& path) {
    const std::string where = path.string();
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(where, ": is a directory, not a file");
    const bool regular = std::filesystem::is_regular_file(path, ec);
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(where, ": cannot open for reading: ", std::strerror(errno));
    std::string text;
    if (regular) text.reserve(static_cast<std::size_t>(std::filesystem::file_size(path, ec)));
    constexpr std::size_t chunk = std::size_t{1} << 20;
    std::size_t line = 1, line_start = 0;  // the current line's number and first byte
    while (in) {
        const std::size_t scanned = text.size();
        text.resize(scanned + chunk);
        in.read(text.data() + scanned, static_cast<std::streamsize>(chunk));
        text.resize(scanned + static_cast<std::size_t>(in.gcount()));
        for (std::size_t at = text.find('\n', scanned); at != std::string::npos; at = text.find('\n', at + 1)) {
            if (at - line_start > max_line_bytes) fail_long_line(where, line);
            ++line;
            line_start = at + 1;
        }
        if (text.size() - line_start > max_line_bytes) fail_long_line(where, line);
        if (!regular && text.size() > max_stream_bytes)
            fail(where, ": more than ", max_stream_bytes, " bytes (1 GiB, the limit for a file that is not a "
                 "regular file)");
    }
    if (in.bad()) fail(where, ": read error");
    return text;
}

}  // namespace simnpo
