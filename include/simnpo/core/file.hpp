#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"

namespace simnpo {

// The whole file as bytes; Error naming the file when it cannot be read.
inline std::string read_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(path.string(), ": is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path.string(), ": cannot open for reading");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail(path.string(), ": read error");
    return bytes;
}

// A JSON document; Error "<where>: not valid JSON ..." when it is not one
// (nlohmann reports a number out of range as out_of_range, not parse_error).
inline nlohmann::json parse_json(std::string_view text, const std::string& where) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& error) {
        fail(where, ": not valid JSON (at byte ", error.byte, ")");
    } catch (const nlohmann::json::out_of_range&) {
        fail(where, ": not valid JSON (a number is out of range)");
    }
}

// A JSON document from a file; Error naming the file when it is not JSON.
inline nlohmann::json read_json_file(const std::filesystem::path& path) {
    return parse_json(read_file(path), path.string());
}

// Replaces `path` with `content` atomically: the bytes go to a temporary file in
// the same directory, are flushed to disk, and the file is renamed over `path`.
// A crash at any point leaves either the old file or the new one, whole.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view content) {
    const std::filesystem::path temporary =
        path.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()));
    std::FILE* file = std::fopen(temporary.c_str(), "wb");
    if (file == nullptr) fail(path.string(), ": cannot open '", temporary.string(), "' for writing");
    const bool written = std::fwrite(content.data(), 1, content.size(), file) == content.size() &&
                         std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
    const bool closed = std::fclose(file) == 0;
    std::error_code ec;
    if (!written || !closed) {
        std::filesystem::remove(temporary, ec);
        fail(path.string(), ": write failed (disk full?)");
    }
    std::filesystem::rename(temporary, path, ec);
    if (ec) {
        std::filesystem::remove(temporary, ec);
        fail(path.string(), ": cannot rename the temporary file into place: ", ec.message());
    }
}

}  // namespace simnpo
