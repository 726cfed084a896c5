// Command-line flags for the simnpo subcommands: `--name value` pairs and
// `--switch` flags, each validated with a one-line error naming the flag.
#pragma once

#include <charconv>
#include <cmath>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <simnpo.hpp>

namespace simnpo::cli {

class Args {
public:
    // `valued` flags take a value; `switches` do not. Anything else is an error.
    Args(std::string command, const std::vector<std::string>& words, std::set<std::string> valued,
         std::set<std::string> switches = {})
        : command_(std::move(command)) {
        for (std::size_t i = 0; i < words.size(); ++i) {
            const std::string& word = words[i];
            if (word == "--help" || word == "-h") {
                help_ = true;
                continue;
            }
            if (!word.starts_with("--")) fail(command_, ": unexpected argument '", word, "'");
            if (switches.contains(word)) {
                switches_.insert(word);
            } else if (valued.contains(word)) {
                if (i + 1 >= words.size()) fail(command_, ": flag ", word, " needs a value");
                if (values_.contains(word)) fail(command_, ": flag ", word, " given twice");
                values_[word] = words[++i];
            } else {
                fail(command_, ": unknown flag '", word, "' (see --help)");
            }
        }
    }

    bool help() const { return help_; }
    const std::string& command() const { return command_; }
    bool has(const std::string& flag) const { return values_.contains(flag) || switches_.contains(flag); }

    std::string required(const std::string& flag) const {
        const auto it = values_.find(flag);
        if (it == values_.end()) fail(command_, ": missing required flag ", flag);
        return it->second;
    }

    std::string text(const std::string& flag, std::string fallback) const {
        const auto it = values_.find(flag);
        return it == values_.end() ? fallback : it->second;
    }

    // An integer in [low, high]; `fallback` when the flag is absent.
    long long integer(const std::string& flag, long long fallback, long long low, long long high) const {
        const auto it = values_.find(flag);
        if (it == values_.end()) return fallback;
        const std::string& value = it->second;
        long long result = 0;
        const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
        const bool whole = end == value.data() + value.size();
        // An integer too large for long long (2^64 - 1, say) is out of the range, not "not an integer".
        if (whole && (error == std::errc::result_out_of_range || (error == std::errc{} && (result < low || result > high))))
            fail(command_, ": flag ", flag, " must be in [", low, ", ", high, "], got ", value);
        if (error != std::errc{} || !whole) fail(command_, ": flag ", flag, " expects an integer, got '", value, "'");
        return result;
    }

    // A finite real number in [low, high]; `fallback` when the flag is absent.
    double real(const std::string& flag, double fallback, double low, double high) const {
        const auto it = values_.find(flag);
        if (it == values_.end()) return fallback;
        const std::string& value = it->second;
        double result = 0;
        const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), result);
        if (error != std::errc{} || end != value.data() + value.size() || !std::isfinite(result))
            fail(command_, ": flag ", flag, " expects a finite number, got '", value, "'");
        if (result < low || result > high)
            fail(command_, ": flag ", flag, " must be in [", low, ", ", high, "], got ", value);
        return result;
    }

    // One of `choices`; `fallback` when the flag is absent.
    std::string choice(const std::string& flag, std::string fallback, const std::set<std::string>& choices) const {
        const std::string value = text(flag, std::move(fallback));
        if (!choices.contains(value)) {
            std::string listed;
            for (const auto& option : choices) listed += (listed.empty() ? "" : ", ") + option;
            fail(command_, ": flag ", flag, " must be one of {", listed, "}, got '", value, "'");
        }
        return value;
    }

    // --threads N, when given: the CPU threads, at most simnpo::max_threads(); a
    // warning on stderr when N is more than the cores (the threads take turns).
    void apply_threads() const {
        if (!has("--threads")) return;
        const auto threads = static_cast<int>(integer("--threads", 1, 1, max_threads()));
        if (threads > core_count())
            std::cerr << command_ << ": warning: --threads " << threads << " is more than the " << core_count()
                      << " cores of this machine\n";
        set_threads(threads);
    }

private:
    std::string command_;
    std::map<std::string, std::string> values_;
    std::set<std::string> switches_;
    bool help_ = false;
};

}  // namespace simnpo::cli
