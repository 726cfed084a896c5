#pragma once
#include "simnpo/core/internal_check.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/interrupt.hpp"
#include "simnpo/core/json.hpp"

// Files and directories: reading them whole, and writing them so that a crash,
// a full disk, a signal or a concurrent writer never leaves a half-written one.
//
// Every output is written under a temporary name beside it, fsynced, renamed
// into place and its directory fsynced. A directory (a model, a checkpoint) is
// written whole into a temporary sibling and exchanged with the old one in one
// rename, so a reader sees the old directory or the new one, never a mix.
// Temporaries are named ".<name>.tmp-<pid>-<n>": unique among live processes,
// and those of dead processes are removed by the next save of the same name.
namespace simnpo {

// The whole file as bytes; Error naming the file when it cannot be read.
inline std::string read_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(path.string(), ": is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path.string(), ": cannot open for reading: ", std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail(path.string(), ": read error");
    return bytes;
}

// A JSON document from a file; Error naming the file when it is not JSON.
inline nlohmann::json read_json_file(const std::filesystem::path& path) {
    return parse_json(read_file(path), path.string());
}

// A test hook for fault injection: when set, it is asked before every mkdir,
// write, fsync, link and rename that a save makes ("mkdir", "write", "fsync",
// "link", "rename"), with the path; true makes that operation fail as EIO.
inline std::function<bool(std::string_view operation, const std::filesystem::path&)>& file_fault_hook() {
    static std::function<bool(std::string_view, const std::filesystem::path&)> hook;
    return hook;
}

namespace detail {

inline bool injected_fault(std::string_view operation, const std::filesystem::path& path) {
    const auto& hook = file_fault_hook();
    if (hook && hook(operation, path)) {
        errno = EIO;
        return true;
    }
    return false;
}

// `path` without a trailing separator or dot components, so that it has a file name.
inline std::filesystem::path output_path(const std::filesystem::path& path) {
    std::filesystem::path clean = path.lexically_normal();
    if (!clean.has_filename()) clean = clean.parent_path();
    return clean;
}

inline std::filesystem::path parent_of(const std::filesystem::path& path) {
    return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

inline std::string temporary_prefix(const std::filesystem::path& target) {
    std::string prefix(1, '.');  // appended, not "." + name: GCC 12 warns falsely (-Wrestrict) on the latter
    prefix += target.filename().string();
    prefix += ".tmp-";
    return prefix;
}

// A fresh temporary name beside `target`.
inline std::filesystem::path temporary_beside(const std::filesystem::path& target) {
    static std::atomic<unsigned long> counter{0};
    return parent_of(target) / (temporary_prefix(target) + std::to_string(static_cast<long>(::getpid())) + "-" +
                                std::to_string(counter++));
}

// Whether a directory entry's name is a temporary's (of any target, any process).
inline bool is_temporary_name(std::string_view name) {
    return name.starts_with('.') && name.find(".tmp-") != std::string_view::npos;
}

// Removes the temporaries of `target` left by processes that no longer run
// (killed mid-save); those of live processes are theirs.
inline void remove_stale_temporaries(const std::filesystem::path& target) {
    std::error_code ec;
    const std::string prefix = temporary_prefix(target);
    for (const auto& entry : std::filesystem::directory_iterator(parent_of(target), ec)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with(prefix)) continue;
        const std::string rest = name.substr(prefix.size());
        const long pid = std::strtol(rest.c_str(), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
            std::filesystem::remove_all(entry.path(), ec);
    }
}

// Creates `path` (it must not exist) holding `content`, flushed to disk.
inline void write_new_file(const std::filesystem::path& path, std::string_view content) {
    if (injected_fault("write", path)) fail(path.string(), ": cannot create: ", std::strerror(errno));
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(path.string(), ": cannot create: ", std::strerror(errno));
    const char* data = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        const ssize_t written = ::write(fd, data, left);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) {
            const int error = written < 0 ? errno : ENOSPC;
            ::close(fd);
            fail(path.string(), ": write failed: ", std::strerror(error));
        }
        data += written;
        left -= static_cast<std::size_t>(written);
    }
    if (injected_fault("fsync", path) || ::fsync(fd) != 0) {
        const int error = errno;
        ::close(fd);
        fail(path.string(), ": cannot flush to disk: ", std::strerror(error));
    }
    if (::close(fd) != 0) fail(path.string(), ": write failed: ", std::strerror(errno));
}

// Flushes a directory's entries (a rename into it, a new file) to disk.
inline void sync_directory(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(dir.string(), ": cannot open the directory to flush it: ", std::strerror(errno));
    const bool synced = !injected_fault("fsync", dir) && ::fsync(fd) == 0;
    const int error = errno;
    ::close(fd);
    if (!synced) fail(dir.string(), ": cannot flush the directory to disk: ", std::strerror(error));
}

inline void rename_or_fail(const std::filesystem::path& from, const std::filesystem::path& to) {
    if (injected_fault("rename", to) || ::rename(from.c_str(), to.c_str()) != 0)
        fail(to.string(), ": cannot rename '", from.string(), "' into place: ", std::strerror(errno));
}

// Recreates `from` at `to` (which does not exist) with hard links to its files:
// the entries of a directory that a save keeps, carried into the new directory
// without copying their bytes. Where links are refused, the bytes are copied.
// An entry that is gone by the time it is read was another process's (a
// temporary it removed): there is nothing to carry.
inline void link_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::symlink_status(from, ec);
    if (status.type() == fs::file_type::not_found) return;
    if (fs::is_symlink(status)) {
        fs::copy_symlink(from, to, ec);
        if (ec) fail(to.string(), ": cannot copy the symbolic link '", from.string(), "': ", ec.message());
    } else if (fs::is_directory(status)) {
        if (injected_fault("mkdir", to) || ::mkdir(to.c_str(), 0755) != 0)
            fail(to.string(), ": cannot create: ", std::strerror(errno));
        for (const auto& entry : fs::directory_iterator(from)) link_tree(entry.path(), to / entry.path().filename());
        sync_directory(to);
    } else if (fs::is_regular_file(status)) {
        if (injected_fault("link", to)) fail(to.string(), ": cannot link '", from.string(), "': ", std::strerror(errno));
        if (::link(from.c_str(), to.c_str()) != 0) {
            if (errno != EXDEV && errno != EPERM && errno != EMLINK)
                fail(to.string(), ": cannot link '", from.string(), "': ", std::strerror(errno));
            fs::copy_file(from, to, ec);
            if (ec) fail(to.string(), ": cannot copy '", from.string(), "': ", ec.message());
        }
    } else {
        fail(from.string(), ": cannot carry over (not a file, directory or symbolic link)");
    }
}

}  // namespace detail

// Replaces `path` with `content` atomically: the bytes go to a temporary file in
// the same directory, are flushed to disk, and the file is renamed over `path`.
// A crash at any point leaves either the old file or the new one, whole.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view content) {
    const SaveSection save;
    const std::filesystem::path target = detail::output_path(path);
    std::error_code ec;
    if (std::filesystem::is_directory(target, ec)) fail(target.string(), ": is a directory, not a file");
    detail::remove_stale_temporaries(target);
    const std::filesystem::path temporary = detail::temporary_beside(target);
    try {
        detail::write_new_file(temporary, content);
        detail::rename_or_fail(temporary, target);
    } catch (const Error&) {
        std::filesystem::remove(temporary, ec);
        throw;
    }
    detail::sync_directory(detail::parent_of(target));
}

// Writes a directory whole: files go into a temporary sibling, and commit()
// puts it in place of the old directory in one rename (an exchange when one
// exists). Whatever the old directory held that this save neither writes nor
// remove()s (checkpoints, logs, a lock) is carried into the new one by hard
// links, except temporaries: another process's file in flight there (a
// writability probe, a save refused by the lock) is not the directory's content.
// Destroyed without commit(), it removes the temporary and the old directory
// stays as it was. Signals are held back while it lives (SaveSection).
class DirectoryWriter {
public:
    explicit DirectoryWriter(const std::filesystem::path& dir)
        : dir_(detail::output_path(dir)), stage_(detail::temporary_beside(dir_)) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (fs::exists(fs::symlink_status(dir_, ec)) && !fs::is_directory(dir_, ec))
            fail(dir_.string(), ": exists and is not a directory");
        const fs::path parent = detail::parent_of(dir_);
        fs::create_directories(parent, ec);
        if (ec) fail(parent.string(), ": cannot create the directory: ", ec.message());
        detail::remove_stale_temporaries(dir_);
        if (detail::injected_fault("mkdir", stage_) || ::mkdir(stage_.c_str(), 0755) != 0)
            fail(dir_.string(), ": cannot create the temporary directory '", stage_.string(), "': ", std::strerror(errno));
    }
    ~DirectoryWriter() {
        std::error_code ec;
        if (!committed_) std::filesystem::remove_all(stage_, ec);
    }
    DirectoryWriter(const DirectoryWriter&) = delete;
    DirectoryWriter& operator=(const DirectoryWriter&) = delete;

    const std::filesystem::path& directory() const { return dir_; }

    // Writes the file `name` of the new directory.
    void write(const std::string& name, std::string_view content) {
        if (!written_.insert(name).second) fail((dir_ / name).string(), ": written twice in one save");
        detail::write_new_file(stage_ / name, content);
    }

    // Leaves the old directory's entry `name` out of the new one unless this
    // save writes it: for files the save makes obsolete (a model's shards
    // from a save with more of them).
    void remove(const std::string& name) { removed_.insert(name); }

    void commit() {
        namespace fs = std::filesystem;
        std::error_code ec;
        const bool replacing = fs::is_directory(dir_, ec);
        if (replacing)
            for (const auto& entry : fs::directory_iterator(dir_)) {
                const auto name = entry.path().filename();
                if (!written_.contains(name.string()) && !removed_.contains(name.string()) &&
                    !detail::is_temporary_name(name.string()))
                    detail::link_tree(entry.path(), stage_ / name);
            }
        detail::sync_directory(stage_);
        if (!replacing) {
            detail::rename_or_fail(stage_, dir_);
        } else if (detail::injected_fault("rename", dir_) ||
                   ::renameat2(AT_FDCWD, stage_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) != 0) {
            fail(dir_.string(), ": cannot put the new directory in place of the old one: ", std::strerror(errno));
        }
        committed_ = true;
        if (replacing) fs::remove_all(stage_, ec);  // the old directory, now under the temporary name
        detail::sync_directory(detail::parent_of(dir_));
    }

private:
    std::filesystem::path dir_, stage_;
    std::set<std::string> written_, removed_;
    bool committed_ = false;
    SaveSection save_;
};

// An advisory lock (flock) on an output directory for a run's duration, held
// in DIR/.simnpo.lock, which records the holder's pid: a second run on the same
// directory is refused with an Error naming that pid. Creates the directory if
// needed, and removes it on release if the run left nothing in it.
class OutputLock {
public:
    static constexpr const char* file_name = ".simnpo.lock";

    explicit OutputLock(const std::filesystem::path& dir) : dir_(detail::output_path(dir)) {
        namespace fs = std::filesystem;
        std::error_code ec;
        created_ = !fs::exists(fs::symlink_status(dir_, ec));
        fs::create_directories(dir_, ec);
        if (ec) fail(dir_.string(), ": cannot create the output directory: ", ec.message());
        const fs::path path = dir_ / file_name;
        for (;;) {
            fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (fd_ < 0) fail(path.string(), ": cannot open the lock file: ", std::strerror(errno));
            if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
                const int error = errno;
                char pid[32] = {};
                const ssize_t n = ::pread(fd_, pid, sizeof(pid) - 1, 0);
                ::close(fd_);
                if (error == EWOULDBLOCK)
                    fail(dir_.string(), ": in use by another simnpo run (pid ",
                         n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : std::string("unknown"), ")");
                fail(path.string(), ": cannot lock: ", std::strerror(error));
            }
            // The holder before us may have removed the file as it released it: lock the one in place.
            struct stat held {}, named {};
            if (::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
                held.st_dev == named.st_dev)
                break;
            ::close(fd_);
        }
        const std::string pid = std::to_string(static_cast<long>(::getpid()));
        if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
            const int error = errno;
            ::close(fd_);
            fail(path.string(), ": cannot write the lock file: ", std::strerror(error));
        }
    }
    ~OutputLock() {
        std::error_code ec;
        ::unlink((dir_ / file_name).c_str());  // before unlocking: a waiter then finds it gone and retries
        ::close(fd_);
        if (created_ && std::filesystem::is_empty(dir_, ec)) std::filesystem::remove(dir_, ec);
    }
    OutputLock(const OutputLock&) = delete;
    OutputLock& operator=(const OutputLock&) = delete;

private:
    std::filesystem::path dir_;
    int fd_ = -1;
    bool created_ = false;
};

namespace detail {

// Fails, naming `flag`, unless a file can be created in `dir` now.
inline void check_writable(const std::filesystem::path& dir, const std::string& flag, const std::filesystem::path& out) {
    const std::filesystem::path probe = temporary_beside(dir / "probe");
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(flag, " '", out.string(), "': cannot write in '", dir.string(), "': ", std::strerror(errno));
    ::close(fd);
    ::unlink(probe.c_str());
}

// The checks both kinds of output share: a name, no dangling link, and a
// nearest existing ancestor that is a directory taking new files (the save
// creates what is missing below it).
inline std::filesystem::path check_output(const std::filesystem::path& out, const std::string& flag) {
    namespace fs = std::filesystem;
    if (out.empty()) fail(flag, " is empty");
    const fs::path target = output_path(out);
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(target, ec)) && !fs::exists(fs::status(target, ec)))
        fail(flag, " '", out.string(), "' is a dangling symbolic link (to '", fs::read_symlink(target, ec).string(), "')");
    fs::path ancestor = parent_of(target);
    while (!fs::exists(ancestor, ec) && ancestor.has_parent_path() && ancestor.parent_path() != ancestor)
        ancestor = ancestor.parent_path();
    if (!fs::exists(ancestor, ec)) ancestor = ".";
    if (!fs::is_directory(ancestor, ec)) fail(flag, " '", out.string(), "': '", ancestor.string(), "' is not a directory");
    check_writable(ancestor, flag, out);
    return target;
}

}  // namespace detail

// Checks before any work that `dir` can be written as an output directory
// (Error naming `flag` otherwise): so that a bad --out fails at once, not after
// hours of training.
inline void check_output_directory(const std::filesystem::path& dir, const std::string& flag) {
    const auto target = detail::check_output(dir, flag);
    std::error_code ec;
    if (std::filesystem::exists(target, ec)) {
        if (!std::filesystem::is_directory(target, ec))
            fail(flag, " '", dir.string(), "' exists and is not a directory");
        detail::check_writable(target, flag, dir);
    }
}

// The same for an output file.
inline void check_output_file(const std::filesystem::path& file, const std::string& flag) {
    const auto target = detail::check_output(file, flag);
    std::error_code ec;
    if (std::filesystem::is_directory(target, ec)) fail(flag, " '", file.string(), "' is a directory, not a file");
}

}  // namespace simnpo
