#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"

namespace simnpo {

namespace detail {

// json::parse, except that a key given twice in one object is an Error naming
// `where` and the key: nlohmann keeps the last one silently, so a config.json
// with two "n_layer" would mean whichever came last. Syntax errors are left as
// nlohmann's exceptions, for the caller to place.
inline nlohmann::json parse_json_rejecting_duplicates(std::string_view text, const std::string& where) {
    using event = nlohmann::json::parse_event_t;
    std::vector<std::set<std::string>> keys;  // one set per object being read, innermost last
    return nlohmann::json::parse(text, [&](int, event kind, nlohmann::json& parsed) {
        if (kind == event::object_start) {
            keys.emplace_back();
        } else if (kind == event::object_end) {
            keys.pop_back();
        } else if (kind == event::key && !keys.back().insert(parsed.get<std::string>()).second) {
            fail(where, ": duplicate key ", parsed.dump(), " (each key may appear once in an object)");
        }
        return true;
    });
}

}  // namespace detail

// A JSON document: Error "<where>: not valid JSON (at byte N)" for bad syntax,
// "<where>: not valid JSON (a number is out of range)" for a number that fits
// no double (nlohmann reports it as out_of_range), and "<where>: duplicate key
// "k" ..." for a key given twice in one object.
inline nlohmann::json parse_json(std::string_view text, const std::string& where) {
    try {
        return detail::parse_json_rejecting_duplicates(text, where);
    } catch (const nlohmann::json::parse_error& error) {
        fail(where, ": not valid JSON (at byte ", error.byte, ")");
    } catch (const nlohmann::json::out_of_range&) {
        fail(where, ": not valid JSON (a number is out of range)");
    }
}

// `value` as a signed 64-bit integer; `what` ("config.json: 'n_layer'") starts
// the error. nlohmann reads 1e3 as a real number and keeps integers up to
// 2^64 - 1 unsigned, where get<std::int64_t>() would wrap 2^64 - 1 to -1.
inline std::int64_t json_int64(const nlohmann::json& value, const std::string& what) {
    if (!value.is_number_integer())
        fail(what, " must be an integer (no decimal point or exponent), got ",
             value.is_number() ? value.dump() : std::string(value.type_name()));
    if (value.is_number_unsigned() &&
        value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(what, " = ", value.dump(), " does not fit a signed 64-bit integer");
    return value.get<std::int64_t>();
}

}  // namespace simnpo
