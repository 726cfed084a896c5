// A small Jinja renderer for Hugging Face chat templates (tokenizer_config.json's "chat_template").
//
// It renders as transformers' apply_chat_template does: Jinja2's ImmutableSandboxedEnvironment with
// trim_blocks and lstrip_blocks, the loopcontrols extension (break, continue), transformers' own tojson
// filter (json.dumps with ensure_ascii=False, no sorted keys), the global raise_exception, and in the
// context `messages`, `bos_token`, `eos_token` and `add_generation_prompt`; every other name is undefined.
//
// The subset: {{ }}, {% %}, {# #}, whitespace control (-, +), if/elif/else, for (tuple targets, an `if`
// filter, else, loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem/depth), set (a
// name, names, ns.attr, and the block form), break, continue; literals (strings with Python escapes,
// integers, true/false/none, lists, tuples, dicts); + - * // % ** ~, comparisons (chained), in, not in,
// and, or, not, `x if c else y`, attributes, subscripts, slices; the filters, tests, methods and
// functions in the tables below. Anything else (macros, includes, float literals, `/`, other filters...)
// is an Error when the template is parsed, naming the construct and the line. Values follow Python:
// str() of lists and dicts is their repr, True/False/None print as such, Python's whitespace for trim.
#pragma once
#include "simnpo/core/internal_check.hpp"

#include "simnpo/core/error.hpp"
#include "simnpo/tokenizer/utf8.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simnpo::tokenizer {

struct ChatMessage {
    std::string role;
    std::string content;
};

struct ChatRenderOptions {
    std::string bos_token;  // the tokenizer's BOS text ("" when it has none)
    std::string eos_token;
    bool add_generation_prompt = false;
};

namespace detail::jinja {

// ----------------------------------------------------------------------------------------------------
// Text: UTF-8 code points and Python's notion of whitespace.

// The code point at `pos` (advanced past it); a malformed sequence is one character, its first byte.
inline char32_t next_code_point(std::string_view text, std::size_t& pos) {
    const utf8::Unit unit = utf8::read(text, pos);
    if (!unit.point) return static_cast<unsigned char>(text[pos++]);
    pos += unit.length;
    return *unit.point;
}

// The characters of `text`, each as its UTF-8 bytes.
inline std::vector<std::string_view> characters(std::string_view text) {
    std::vector<std::string_view> out;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t start = pos;
        next_code_point(text, pos);
        out.push_back(text.substr(start, pos - start));
    }
    return out;
}

// Python's str.isspace (also what `\s` matches in Python's re).
inline bool is_python_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// Python's str.strip / lstrip / rstrip: whitespace, or the characters of `chars`.
inline std::string python_strip(std::string_view text, bool left, bool right,
                                const std::optional<std::string>& chars = std::nullopt) {
    std::vector<char32_t> set;
    if (chars)
        for (std::size_t pos = 0; pos < chars->size();) set.push_back(next_code_point(*chars, pos));
    const auto strip_it = [&](char32_t c) {
        return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_python_space(c);
    };
    const auto parts = characters(text);
    std::size_t first = 0;
    std::size_t last = parts.size();
    auto code_point = [&](std::size_t i) {
        std::size_t pos = 0;
        return next_code_point(parts[i], pos);
    };
    if (left)
        while (first < last && strip_it(code_point(first))) ++first;
    if (right)
        while (last > first && strip_it(code_point(last - 1))) --last;
    if (first == last) return {};
    const auto begin = static_cast<std::size_t>(parts[first].data() - text.data());
    const auto end = static_cast<std::size_t>(parts[last - 1].data() - text.data()) + parts[last - 1].size();
    return std::string(text.substr(begin, end - begin));
}

inline bool all_python_space(std::string_view text) {
    for (std::size_t pos = 0; pos < text.size();)
        if (!is_python_space(next_code_point(text, pos))) return false;
    return true;
}

inline std::string hex(std::uint32_t value, int digits) {
    static constexpr char digit[] = "0123456789abcdef";
    std::string out(static_cast<std::size_t>(digits), '0');
    for (int i = digits - 1; i >= 0; --i, value >>= 4) out[static_cast<std::size_t>(i)] = digit[value & 0xF];
    return out;
}

// ----------------------------------------------------------------------------------------------------
// Values: what Jinja's Python objects are here.

struct Sequence;
struct Dict;
struct Namespace;

enum class Kind { undefined, none, boolean, integer, string, sequence, dict, ns, loop };
// list and tuple are Python's; iterator is a generator (select, reject, map, items): iterable once,
// no length, no str(); view is dict.items()/keys()/values(): iterable with a length, no str().
enum class SeqKind { list, tuple, iterator, view };

struct Value {
    Kind kind = Kind::undefined;
    bool boolean = false;
    std::int64_t integer = 0;
    std::string text;  // a string's text; for an undefined value, why it is undefined
    std::shared_ptr<const Sequence> seq;
    std::shared_ptr<const Dict> dict;  // a dict, or a loop's attributes
    std::shared_ptr<Namespace> ns;     // shared and mutable: `set ns.x` is seen by every holder

    static Value make_undefined(std::string why) {
        Value v;
        v.text = std::move(why);
        return v;
    }
    static Value make_none() {
        Value v;
        v.kind = Kind::none;
        return v;
    }
    static Value make_bool(bool b) {
        Value v;
        v.kind = Kind::boolean;
        v.boolean = b;
        return v;
    }
    static Value make_int(std::int64_t i) {
        Value v;
        v.kind = Kind::integer;
        v.integer = i;
        return v;
    }
    static Value make_string(std::string s) {
        Value v;
        v.kind = Kind::string;
        v.text = std::move(s);
        return v;
    }
    static Value make_sequence(std::vector<Value> items, SeqKind seq_kind = SeqKind::list);
    static Value make_dict(std::vector<std::pair<std::string, Value>> items, Kind kind = Kind::dict);

    bool is_undefined() const { return kind == Kind::undefined; }
    bool is_number() const { return kind == Kind::integer || kind == Kind::boolean; }
    std::int64_t number() const { return kind == Kind::boolean ? (boolean ? 1 : 0) : integer; }
};

struct Sequence {
    SeqKind kind = SeqKind::list;
    std::vector<Value> items;
};

struct Dict {
    std::vector<std::pair<std::string, Value>> items;  // in insertion order, as Python's dicts
    const Value* find(std::string_view key) const {
        for (const auto& [k, v] : items)
            if (k == key) return &v;
        return nullptr;
    }
};

struct Namespace {
    Dict attrs;
    void set(const std::string& key, Value value) {
        for (auto& [k, v] : attrs.items)
            if (k == key) {
                v = std::move(value);
                return;
            }
        attrs.items.emplace_back(key, std::move(value));
    }
};

inline Value Value::make_sequence(std::vector<Value> items, SeqKind seq_kind) {
    Value v;
    v.kind = Kind::sequence;
    v.seq = std::make_shared<const Sequence>(Sequence{seq_kind, std::move(items)});
    return v;
}

inline Value Value::make_dict(std::vector<std::pair<std::string, Value>> items, Kind kind) {
    Value v;
    v.kind = kind;
    v.dict = std::make_shared<const Dict>(Dict{std::move(items)});
    return v;
}

// Python's type name, for messages.
inline std::string type_name(const Value& v) {
    switch (v.kind) {
        case Kind::undefined: return "Undefined";
        case Kind::none: return "NoneType";
        case Kind::boolean: return "bool";
        case Kind::integer: return "int";
        case Kind::string: return "str";
        case Kind::sequence:
            switch (v.seq->kind) {
                case SeqKind::list: return "list";
                case SeqKind::tuple: return "tuple";
                case SeqKind::iterator: return "generator";
                case SeqKind::view: return "dict_items";
            }
            return "list";
        case Kind::dict: return "dict";
        case Kind::ns: return "Namespace";
        case Kind::loop: return "LoopContext";
    }
    return "object";
}

// A failure while rendering; the renderer adds "WHERE:LINE: ".
struct RenderError {
    std::string message;
};
// raise_exception(...) from the template; the renderer reports "WHERE: message".
struct RaisedError {
    std::string message;
};

[[noreturn]] inline void render_fail(std::string message) { throw RenderError{std::move(message)}; }

// Using an undefined value where Jinja's Undefined raises (arithmetic, attributes, ...).
inline void check_defined(const Value& v) {
    if (v.is_undefined()) render_fail(v.text);
}

inline bool truthy(const Value& v) {
    switch (v.kind) {
        case Kind::undefined:
        case Kind::none: return false;
        case Kind::boolean: return v.boolean;
        case Kind::integer: return v.integer != 0;
        case Kind::string: return !v.text.empty();
        case Kind::sequence: return v.seq->kind == SeqKind::iterator || !v.seq->items.empty();
        case Kind::dict: return !v.dict->items.empty();
        case Kind::ns:
        case Kind::loop: return true;
    }
    return false;
}

// Python's repr of a string.
inline std::string python_repr_string(std::string_view text) {
    const bool has_single = text.find('\'') != std::string_view::npos;
    const bool has_double = text.find('"') != std::string_view::npos;
    const char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (std::size_t pos = 0; pos < text.size();) {
        const char32_t c = next_code_point(text, pos);
        if (c == static_cast<char32_t>(quote) || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c == '\n') {
            out.append("\\n");
        } else if (c == '\r') {
            out.append("\\r");
        } else if (c == '\t') {
            out.append("\\t");
        } else if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) {
            out.append("\\x").append(hex(static_cast<std::uint32_t>(c), 2));
        } else if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
                   (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF || (c >= 0xD800 && c <= 0xDFFF)) {
            out.append("\\u").append(hex(static_cast<std::uint32_t>(c), 4));
        } else {
            utf8::append(out, c);
        }
    }
    out.push_back(quote);
    return out;
}

inline std::string python_str(const Value& v);

inline std::string python_repr(const Value& v) {
    switch (v.kind) {
        case Kind::undefined: return "Undefined";
        case Kind::string: return python_repr_string(v.text);
        case Kind::sequence: {
            if (v.seq->kind == SeqKind::iterator || v.seq->kind == SeqKind::view)
                render_fail("printing a " + type_name(v) + " is not supported");
            const bool tuple = v.seq->kind == SeqKind::tuple;
            std::string out(tuple ? "(" : "[");
            for (std::size_t i = 0; i < v.seq->items.size(); ++i) {
                if (i) out.append(", ");
                out.append(python_repr(v.seq->items[i]));
            }
            if (tuple && v.seq->items.size() == 1) out.push_back(',');
            out.append(tuple ? ")" : "]");
            return out;
        }
        case Kind::dict: {
            std::string out("{");
            bool first = true;
            for (const auto& [key, value] : v.dict->items) {
                if (!first) out.append(", ");
                first = false;
                out.append(python_repr_string(key)).append(": ").append(python_repr(value));
            }
            out.push_back('}');
            return out;
        }
        default: return python_str(v);
    }
}

// Python's str(), as Jinja prints a value ({{ x }}, ~, join, string).
inline std::string python_str(const Value& v) {
    switch (v.kind) {
        case Kind::undefined: return "";
        case Kind::none: return "None";
        case Kind::boolean: return v.boolean ? "True" : "False";
        case Kind::integer: return std::to_string(v.integer);
        case Kind::string: return v.text;
        case Kind::sequence:
        case Kind::dict: return python_repr(v);
        case Kind::ns:
        case Kind::loop: render_fail("printing a " + type_name(v) + " is not supported");
    }
    return "";
}

// Python's ==.
inline bool equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) return a.number() == b.number();
    if (a.kind != b.kind) return false;
    switch (a.kind) {
        case Kind::undefined:
        case Kind::none: return true;
        case Kind::string: return a.text == b.text;
        case Kind::sequence: {
            if (a.seq == b.seq) return true;
            if (a.seq->kind != b.seq->kind || a.seq->kind == SeqKind::iterator) return false;
            if (a.seq->items.size() != b.seq->items.size()) return false;
            for (std::size_t i = 0; i < a.seq->items.size(); ++i)
                if (!equal(a.seq->items[i], b.seq->items[i])) return false;
            return true;
        }
        case Kind::dict: {
            if (a.dict->items.size() != b.dict->items.size()) return false;
            for (const auto& [key, value] : a.dict->items) {
                const Value* other = b.dict->find(key);
                if (!other || !equal(value, *other)) return false;
            }
            return true;
        }
        case Kind::ns: return a.ns == b.ns;
        case Kind::loop: return a.dict == b.dict;
        default: return false;
    }
}

// Python's <: numbers, strings (code point order is UTF-8 byte order), lists or tuples.
inline bool less(const Value& a, const Value& b) {
    check_defined(a);
    check_defined(b);
    if (a.is_number() && b.is_number()) return a.number() < b.number();
    if (a.kind == Kind::string && b.kind == Kind::string) return a.text < b.text;
    if (a.kind == Kind::sequence && b.kind == Kind::sequence && a.seq->kind == b.seq->kind &&
        (a.seq->kind == SeqKind::list || a.seq->kind == SeqKind::tuple)) {
        const auto& x = a.seq->items;
        const auto& y = b.seq->items;
        for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (equal(x[i], y[i])) continue;
            return less(x[i], y[i]);
        }
        return x.size() < y.size();
    }
    render_fail("'<' is not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

// The items a for loop (or a filter) iterates over.
inline std::vector<Value> iterate(const Value& v) {
    switch (v.kind) {
        case Kind::undefined: return {};
        case Kind::string: {
            std::vector<Value> out;
            for (auto c : characters(v.text)) out.push_back(Value::make_string(std::string(c)));
            return out;
        }
        case Kind::sequence: return v.seq->items;
        case Kind::dict: {
            std::vector<Value> out;
            for (const auto& item : v.dict->items) out.push_back(Value::make_string(item.first));
            return out;
        }
        default: render_fail("'" + type_name(v) + "' object is not iterable");
    }
}

inline std::int64_t length(const Value& v) {
    switch (v.kind) {
        case Kind::undefined: return 0;
        case Kind::string: return static_cast<std::int64_t>(characters(v.text).size());
        case Kind::sequence:
            if (v.seq->kind == SeqKind::iterator) break;
            return static_cast<std::int64_t>(v.seq->items.size());
        case Kind::dict: return static_cast<std::int64_t>(v.dict->items.size());
        default: break;
    }
    render_fail("object of type '" + type_name(v) + "' has no len()");
}

// Python's `needle in haystack`.
inline bool contains(const Value& haystack, const Value& needle) {
    switch (haystack.kind) {
        case Kind::undefined: return false;
        case Kind::string:
            if (needle.kind != Kind::string)
                render_fail("'in <string>' requires string as left operand, not " + type_name(needle));
            return haystack.text.find(needle.text) != std::string::npos;
        case Kind::sequence:
            for (const auto& item : haystack.seq->items)
                if (equal(item, needle)) return true;
            return false;
        case Kind::dict: return needle.kind == Kind::string && haystack.dict->find(needle.text) != nullptr;
        default: render_fail("argument of type '" + type_name(haystack) + "' is not iterable");
    }
}

// The names of Python's methods on a value's type: `x.name` is then the method, not an item or undefined.
inline bool is_python_method(const Value& v, std::string_view name) {
    static const std::vector<std::string_view> str_methods = {
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
        "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
        "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
        "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
        "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
        "title", "translate", "upper", "zfill"};
    static const std::vector<std::string_view> list_methods = {"append", "clear", "copy",   "count",
                                                               "extend", "index", "insert", "pop",
                                                               "remove", "reverse", "sort"};
    static const std::vector<std::string_view> dict_methods = {"clear", "copy",   "fromkeys",   "get",
                                                               "items", "keys",   "pop",        "popitem",
                                                               "setdefault", "update", "values"};
    static const std::vector<std::string_view> int_attrs = {"as_integer_ratio", "bit_count", "bit_length",
                                                            "conjugate", "denominator", "from_bytes", "imag",
                                                            "numerator", "real", "to_bytes"};
    const auto in = [&](const std::vector<std::string_view>& names) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    if (name.size() > 1 && name[0] == '_' && name[1] == '_') return true;
    switch (v.kind) {
        case Kind::string: return in(str_methods);
        case Kind::sequence: return v.seq->kind == SeqKind::list ? in(list_methods) : (name == "count" || name == "index");
        case Kind::dict: return in(dict_methods);
        case Kind::boolean:
        case Kind::integer: return in(int_attrs);
        default: return false;
    }
}

// Jinja's getattr: `obj.name` (Python attribute first, then item).
inline Value get_attribute(const Value& obj, const std::string& name) {
    check_defined(obj);
    if (is_python_method(obj, name))
        render_fail("the attribute '" + name + "' of a " + type_name(obj) + " is only supported as a method call");
    if (obj.kind == Kind::loop && (name == "cycle" || name == "changed"))
        render_fail("loop." + name + " is not supported");
    if (obj.kind == Kind::dict || obj.kind == Kind::loop) {
        if (const Value* found = obj.dict->find(name)) return *found;
    } else if (obj.kind == Kind::ns) {
        if (const Value* found = obj.ns->attrs.find(name)) return *found;
    }
    return Value::make_undefined("'" + type_name(obj) + " object' has no attribute '" + name + "'");
}

// Python's slice indices for a sequence of `size`.
inline std::vector<std::size_t> slice_indices(std::int64_t size, const Value& start_v, const Value& stop_v,
                                              const Value& step_v) {
    const auto as_int = [](const Value& v) -> std::optional<std::int64_t> {
        if (v.kind == Kind::none) return std::nullopt;
        check_defined(v);
        if (!v.is_number()) render_fail("slice indices must be integers or None");
        return v.number();
    };
    const std::int64_t step = as_int(step_v).value_or(1);
    if (step == 0) render_fail("slice step cannot be zero");
    const auto clamp = [&](std::optional<std::int64_t> index, std::int64_t fallback) {
        if (!index) return fallback;
        std::int64_t i = *index;
        if (i < 0) i += size;
        if (step > 0) return std::clamp<std::int64_t>(i, 0, size);
        return std::clamp<std::int64_t>(i, -1, size - 1);
    };
    const std::int64_t start = clamp(as_int(start_v), step > 0 ? 0 : size - 1);
    const std::int64_t stop = clamp(as_int(stop_v), step > 0 ? size : -1);
    std::vector<std::size_t> out;
    if (step > 0)
        for (std::int64_t i = start; i < stop; i += step) out.push_back(static_cast<std::size_t>(i));
    else
        for (std::int64_t i = start; i > stop; i += step) out.push_back(static_cast<std::size_t>(i));
    return out;
}

// Jinja's getitem: `obj[key]` (item first, then attribute); a missing item is undefined.
inline Value get_item(const Value& obj, const Value& key) {
    check_defined(obj);
    const auto missing = [&]() {
        if (key.kind == Kind::string && is_python_method(obj, key.text))
            render_fail("the attribute '" + key.text + "' of a " + type_name(obj) + " is not supported");
        if (obj.kind == Kind::ns && key.kind == Kind::string) return get_attribute(obj, key.text);
        if (obj.kind == Kind::loop && key.kind == Kind::string) return get_attribute(obj, key.text);
        return Value::make_undefined("'" + type_name(obj) + " object' has no attribute " + python_repr(key));
    };
    const auto index_into = [&](std::int64_t size) -> std::optional<std::size_t> {
        std::int64_t i = key.number();
        if (i < 0) i += size;
        if (i < 0 || i >= size) return std::nullopt;
        return static_cast<std::size_t>(i);
    };
    if (obj.kind == Kind::sequence && (obj.seq->kind == SeqKind::list || obj.seq->kind == SeqKind::tuple) &&
        key.is_number()) {
        if (auto i = index_into(static_cast<std::int64_t>(obj.seq->items.size()))) return obj.seq->items[*i];
        return Value::make_undefined(type_name(obj) + " object has no element " + std::to_string(key.number()));
    }
    if (obj.kind == Kind::string && key.is_number()) {
        const auto chars = characters(obj.text);
        if (auto i = index_into(static_cast<std::int64_t>(chars.size()))) return Value::make_string(std::string(chars[*i]));
        return Value::make_undefined("str object has no element " + std::to_string(key.number()));
    }
    if (obj.kind == Kind::dict && key.kind == Kind::string) {
        if (const Value* found = obj.dict->find(key.text)) return *found;
    }
    return missing();
}

inline Value slice_of(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    check_defined(obj);
    if (obj.kind == Kind::sequence && (obj.seq->kind == SeqKind::list || obj.seq->kind == SeqKind::tuple)) {
        std::vector<Value> out;
        for (auto i : slice_indices(static_cast<std::int64_t>(obj.seq->items.size()), start, stop, step))
            out.push_back(obj.seq->items[i]);
        return Value::make_sequence(std::move(out), obj.seq->kind);
    }
    if (obj.kind == Kind::string) {
        const auto chars = characters(obj.text);
        std::string out;
        for (auto i : slice_indices(static_cast<std::int64_t>(chars.size()), start, stop, step)) out.append(chars[i]);
        return Value::make_string(std::move(out));
    }
    return Value::make_undefined("'" + type_name(obj) + "' object is not subscriptable");
}

// Python's json.dumps (transformers' tojson filter).
struct JsonStyle {
    bool ensure_ascii = false;
    std::optional<std::string> indent;
    std::string item_separator = ", ";
    std::string key_separator = ": ";
    bool sort_keys = false;
};

inline void json_string(std::string& out, std::string_view text, bool ensure_ascii) {
    out.push_back('"');
    for (std::size_t pos = 0; pos < text.size();) {
        const char32_t c = next_code_point(text, pos);
        switch (c) {
            case '"': out.append("\\\""); continue;
            case '\\': out.append("\\\\"); continue;
            case '\n': out.append("\\n"); continue;
            case '\r': out.append("\\r"); continue;
            case '\t': out.append("\\t"); continue;
            case '\b': out.append("\\b"); continue;
            case '\f': out.append("\\f"); continue;
            default: break;
        }
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
            if (c >= 0x10000) {
                const char32_t v = c - 0x10000;
                out.append("\\u").append(hex(static_cast<std::uint32_t>(0xD800 | (v >> 10)), 4));
                out.append("\\u").append(hex(static_cast<std::uint32_t>(0xDC00 | (v & 0x3FF)), 4));
            } else {
                out.append("\\u").append(hex(static_cast<std::uint32_t>(c), 4));
            }
        } else {
            utf8::append(out, c);
        }
    }
    out.push_back('"');
}

inline void json_dump(std::string& out, const Value& v, const JsonStyle& style, std::size_t depth) {
    const auto newline = [&](std::size_t level) {
        out.push_back('\n');
        for (std::size_t i = 0; i < level; ++i) out.append(*style.indent);
    };
    switch (v.kind) {
        case Kind::none: out.append("null"); return;
        case Kind::boolean: out.append(v.boolean ? "true" : "false"); return;
        case Kind::integer: out.append(std::to_string(v.integer)); return;
        case Kind::string: json_string(out, v.text, style.ensure_ascii); return;
        case Kind::sequence: {
            if (v.seq->kind != SeqKind::list && v.seq->kind != SeqKind::tuple) break;
            if (v.seq->items.empty()) {
                out.append("[]");
                return;
            }
            out.push_back('[');
            for (std::size_t i = 0; i < v.seq->items.size(); ++i) {
                if (i) out.append(style.item_separator);
                if (style.indent) newline(depth + 1);
                json_dump(out, v.seq->items[i], style, depth + 1);
            }
            if (style.indent) newline(depth);
            out.push_back(']');
            return;
        }
        case Kind::dict: {
            if (v.dict->items.empty()) {
                out.append("{}");
                return;
            }
            std::vector<const std::pair<std::string, Value>*> items;
            for (const auto& item : v.dict->items) items.push_back(&item);
            if (style.sort_keys)
                std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
            out.push_back('{');
            for (std::size_t i = 0; i < items.size(); ++i) {
                if (i) out.append(style.item_separator);
                if (style.indent) newline(depth + 1);
                json_string(out, items[i]->first, style.ensure_ascii);
                out.append(style.key_separator);
                json_dump(out, items[i]->second, style, depth + 1);
            }
            if (style.indent) newline(depth);
            out.push_back('}');
            return;
        }
        default: break;
    }
    render_fail("Object of type " + type_name(v) + " is not JSON serializable");
}

// ----------------------------------------------------------------------------------------------------
// The supported filters, tests, methods and functions, with their parameters (after the subject).

struct Signature {
    std::string_view name;
    std::vector<std::string_view> params;
    bool variadic = false;   // extra positional arguments (select's test arguments, ...)
    bool positional_only = false;
};

inline const std::vector<Signature>& filter_signatures() {
    static const std::vector<Signature> table = {
        {"trim", {"chars"}},
        {"length", {}},
        {"count", {}},
        {"tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}},
        {"join", {"d", "attribute"}},
        {"select", {}, true},
        {"reject", {}, true},
        {"selectattr", {}, true},
        {"rejectattr", {}, true},
        {"map", {}, true},
        {"first", {}},
        {"last", {}},
        {"upper", {}},
        {"lower", {}},
        {"default", {"default_value", "boolean"}},
        {"d", {"default_value", "boolean"}},
        {"string", {}},
        {"items", {}},
        {"list", {}},
        {"replace", {"old", "new", "count"}},
    };
    return table;
}

inline const std::vector<Signature>& test_signatures() {
    static const std::vector<Signature> table = {
        {"defined", {}},      {"undefined", {}},   {"none", {}},         {"boolean", {}},     {"true", {}},
        {"false", {}},        {"integer", {}},     {"number", {}},       {"string", {}},      {"mapping", {}},
        {"iterable", {}},     {"sequence", {}},    {"odd", {}},          {"even", {}},
        {"divisibleby", {"num"}},                  {"equalto", {"other"}}, {"eq", {"other"}}, {"==", {"other"}},
        {"ne", {"other"}},    {"!=", {"other"}},   {"lt", {"other"}},    {"<", {"other"}},    {"le", {"other"}},
        {"<=", {"other"}},    {"gt", {"other"}},   {">", {"other"}},     {"greaterthan", {"other"}}, {"lessthan", {"other"}},     {"ge", {"other"}},   {">=", {"other"}},
        {"in", {"seq"}},
    };
    return table;
}

inline const std::vector<Signature>& method_signatures() {
    static const std::vector<Signature> table = {
        {"strip", {"chars"}, false, true},       {"lstrip", {"chars"}, false, true},
        {"rstrip", {"chars"}, false, true},      {"upper", {}, false, true},
        {"lower", {}, false, true},              {"startswith", {"prefix"}, false, true},
        {"endswith", {"suffix"}, false, true},   {"replace", {"old", "new", "count"}, false, true},
        {"split", {"sep", "maxsplit"}},          {"items", {}, false, true},
        {"keys", {}, false, true},               {"values", {}, false, true},
        {"get", {"key", "default"}, false, true},
    };
    return table;
}

inline const Signature* find_signature(const std::vector<Signature>& table, std::string_view name) {
    for (const auto& signature : table)
        if (signature.name == name) return &signature;
    return nullptr;
}

// ----------------------------------------------------------------------------------------------------
// Lexer: Jinja's, with trim_blocks, lstrip_blocks and keep_trailing_newline=False.

enum class Tok { data, variable_begin, variable_end, block_begin, block_end, name, string, integer, op, eof };

struct Token {
    Tok type = Tok::eof;
    std::string value;  // data text, name, string value, operator
    std::int64_t integer = 0;
    int line = 1;
};

class Lexer {
public:
    Lexer(std::string_view source, const std::string& where) : where_(where) {
        // Jinja: \r\n and \r are newlines; one trailing newline is dropped.
        for (std::size_t i = 0; i < source.size(); ++i) {
            if (source[i] == '\r') {
                source_.push_back('\n');
                if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
            } else {
                source_.push_back(source[i]);
            }
        }
        if (!source_.empty() && source_.back() == '\n') source_.erase(source_.size() - 1);
    }

    std::vector<Token> run() {
        while (pos_ < source_.size()) {
            const std::size_t start = next_tag(pos_);
            if (start == std::string::npos) {
                emit(Tok::data, source_.substr(pos_));
                break;
            }
            const char kind = source_[start + 1];
            std::size_t after = start + 2;
            char sign = 0;
            if (after < source_.size() && (source_[after] == '-' || source_[after] == '+')) sign = source_[after++];
            std::string text = source_.substr(pos_, start - pos_);
            const int text_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
            if (sign == '-') {
                text = python_strip(text, false, true);
            } else if (sign != '+' && kind != '{') {  // lstrip_blocks, for blocks and comments
                const std::size_t newline = text.rfind('\n');
                const std::size_t l_pos = newline == std::string::npos ? 0 : newline + 1;
                if ((l_pos > 0 || line_starting_) && l_pos < text.size() && all_python_space(text.substr(l_pos)))
                    text.erase(l_pos);
            }
            if (!text.empty()) emit(Tok::data, std::move(text));
            line_ += text_lines;
            pos_ = after;
            if (kind == '#')
                comment();
            else
                tag(kind == '%');
        }
        emit(Tok::eof, "");
        return std::move(tokens_);
    }

private:
    [[noreturn]] void fail_at(int line, const std::string& message) const { simnpo::fail(where_, ":", line, ": ", message); }

    void emit(Tok type, std::string value) {
        Token token;
        token.type = type;
        token.value = std::move(value);
        token.line = line_;
        tokens_.push_back(std::move(token));
    }

    std::size_t next_tag(std::size_t from) const {
        for (std::size_t i = source_.find('{', from); i != std::string::npos; i = source_.find('{', i + 1))
            if (i + 1 < source_.size() && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#'))
                return i;
        return std::string::npos;
    }

    bool at(std::string_view text) const { return source_.compare(pos_, text.size(), text) == 0; }

    // Python whitespace from pos_ (the `\s*` after `-%}`); returns whether it ended with a newline.
    bool skip_space() {
        bool newline_last = false;
        while (pos_ < source_.size()) {
            std::size_t next = pos_;
            if (!is_python_space(next_code_point(source_, next))) break;
            newline_last = source_[pos_] == '\n';
            if (newline_last) ++line_;
            pos_ = next;
        }
        return newline_last;
    }

    void comment() {
        const int opened = line_;
        const std::size_t content = pos_;
        const std::size_t end = source_.find("#}", pos_);
        if (end == std::string::npos) fail_at(opened, "the comment opened here is not closed");
        line_ += static_cast<int>(std::count(source_.begin() + static_cast<std::ptrdiff_t>(pos_),
                                             source_.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
        pos_ = end + 2;
        if (end > content && source_[end - 1] == '-') {
            line_starting_ = skip_space();
        } else if (end > content && source_[end - 1] == '+') {
            line_starting_ = false;
        } else {
            line_starting_ = trim_newline();
        }
    }

    bool trim_newline() {  // trim_blocks: the newline right after a block or a comment
        if (pos_ < source_.size() && source_[pos_] == '\n') {
            ++pos_;
            ++line_;
            return true;
        }
        return false;
    }

    void tag(bool block) {
        const int opened = line_;
        emit(block ? Tok::block_begin : Tok::variable_begin, "");
        if (block) {  // {% raw %} would need its own lexing
            std::size_t p = pos_;
            while (p < source_.size() && (source_[p] == ' ' || source_[p] == '\t' || source_[p] == '\n')) ++p;
            if (source_.compare(p, 3, "raw") == 0) {
                std::size_t q = p + 3;
                while (q < source_.size() && (source_[q] == ' ' || source_[q] == '\t' || source_[q] == '\n')) ++q;
                if (source_.compare(q, 2, "%}") == 0 || source_.compare(q, 3, "-%}") == 0)
                    fail_at(opened, "the statement 'raw' is not supported");
            }
        }
        std::vector<char> brackets;
        while (true) {
            if (pos_ >= source_.size())
                fail_at(opened, std::string("unexpected end of template: the ") + (block ? "block tag '{%'" : "'{{'") +
                                    " opened here is not closed");
            if (brackets.empty()) {
                if (block) {
                    if (at("+%}")) {
                        pos_ += 3;
                        line_starting_ = false;
                        break;
                    }
                    if (at("-%}")) {
                        pos_ += 3;
                        line_starting_ = skip_space();
                        break;
                    }
                    if (at("%}")) {
                        pos_ += 2;
                        line_starting_ = trim_newline();
                        break;
                    }
                } else {
                    if (at("-}}")) {
                        pos_ += 3;
                        line_starting_ = skip_space();
                        break;
                    }
                    if (at("}}")) {
                        pos_ += 2;
                        line_starting_ = false;
                        break;
                    }
                }
            }
            std::size_t next = pos_;
            if (is_python_space(next_code_point(source_, next))) {
                skip_space();
                continue;
            }
            const char c = source_[pos_];
            if (c >= '0' && c <= '9') {
                number();
            } else if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                std::size_t end = pos_;
                while (end < source_.size() && (source_[end] == '_' || std::isalnum(static_cast<unsigned char>(source_[end]))))
                    ++end;
                if (end < source_.size() && static_cast<unsigned char>(source_[end]) >= 0x80)
                    fail_at(line_, "non-ASCII names are not supported");
                emit(Tok::name, source_.substr(pos_, end - pos_));
                pos_ = end;
            } else if (c == '\'' || c == '"') {
                string_literal();
            } else {
                op(brackets);
            }
        }
        emit(block ? Tok::block_end : Tok::variable_end, "");
    }

    // An integer as Jinja's integer_re: 0x.., 0o.., 0b.., or decimal digits with single underscores
    // between them (a decimal with a leading zero is only zeros); a float literal is not supported.
    void number() {
        const auto is_digit_of = [](char c, int base) {
            const int lower = std::tolower(static_cast<unsigned char>(c));
            if (base == 16) return std::isxdigit(static_cast<unsigned char>(c)) != 0;
            return lower >= '0' && lower < '0' + base;
        };
        int base = 10;
        std::size_t start = pos_;
        if (source_[pos_] == '0' && pos_ + 1 < source_.size()) {
            const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(source_[pos_ + 1])));
            base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
            if (base != 10) start = pos_ + 2;
        }
        // digits with optional single underscores between them ("1_000"); for 0x.. one may lead ("0x_ff")
        const auto digits = [&](std::size_t p) {
            while (p < source_.size()) {
                if (is_digit_of(source_[p], base)) {
                    ++p;
                } else if (source_[p] == '_' && p + 1 < source_.size() && is_digit_of(source_[p + 1], base) &&
                           (p > start || base != 10)) {
                    p += 2;
                } else {
                    break;
                }
            }
            return p;
        };
        std::size_t end = digits(start);
        if (base != 10) {
            if (end == start) fail_at(line_, "a number literal with no digits");
            std::int64_t value = 0;
            for (std::size_t p = start; p < end; ++p) {
                if (source_[p] == '_') continue;
                const int lower = std::tolower(static_cast<unsigned char>(source_[p]));
                const int digit = lower <= '9' ? lower - '0' : lower - 'a' + 10;
                if (value > (INT64_MAX - digit) / base) fail_at(line_, "the integer literal is too large");
                value = value * base + digit;
            }
            Token token;
            token.type = Tok::integer;
            token.value = source_.substr(pos_, end - pos_);
            token.integer = value;
            token.line = line_;
            tokens_.push_back(std::move(token));
            pos_ = end;
            return;
        }
        if (source_[pos_] == '0') {  // Jinja: 0(_?0)*, so "007" would be two integers, a syntax error
            for (std::size_t p = pos_; p < end; ++p)
                if (source_[p] != '0' && source_[p] != '_') fail_at(line_, "a decimal literal with a leading zero");
        }
        const bool fraction = end + 1 < source_.size() && source_[end] == '.' &&
                              std::isdigit(static_cast<unsigned char>(source_[end + 1]));
        std::size_t e = end + 1;
        if (e < source_.size() && (source_[e] == '+' || source_[e] == '-')) ++e;
        const bool exponent = end < source_.size() && (source_[end] == 'e' || source_[end] == 'E') &&
                              e < source_.size() && std::isdigit(static_cast<unsigned char>(source_[e]));
        if (fraction || exponent) fail_at(line_, "float literals are not supported");
        std::int64_t value = 0;
        for (std::size_t p = pos_; p < end; ++p) {
            if (source_[p] == '_') continue;
            if (value > (INT64_MAX - (source_[p] - '0')) / 10) fail_at(line_, "the integer literal is too large");
            value = value * 10 + (source_[p] - '0');
        }
        Token token;
        token.type = Tok::integer;
        token.value = source_.substr(pos_, end - pos_);
        token.integer = value;
        token.line = line_;
        tokens_.push_back(std::move(token));
        pos_ = end;
    }

    // A string literal, unescaped as Python's "unicode-escape" codec does (as Jinja does).
    void string_literal() {
        const char quote = source_[pos_];
        const int line = line_;
        std::size_t p = pos_ + 1;
        std::string raw;
        while (true) {
            if (p >= source_.size()) fail_at(line, "the string literal is not closed");
            const char c = source_[p];
            if (c == quote) break;
            if (c == '\\' && p + 1 < source_.size()) {
                raw.push_back(c);
                ++p;
            }
            if (source_[p] == '\n') ++line_;
            raw.push_back(source_[p]);
            ++p;
        }
        pos_ = p + 1;
        std::string value;
        for (std::size_t i = 0; i < raw.size();) {
            if (raw[i] != '\\' || i + 1 >= raw.size()) {
                value.push_back(raw[i++]);
                continue;
            }
            const char e = raw[i + 1];
            i += 2;
            const auto hex_escape = [&](std::size_t count) {
                char32_t cp = 0;
                for (std::size_t k = 0; k < count; ++k, ++i) {
                    if (i >= raw.size() || !std::isxdigit(static_cast<unsigned char>(raw[i])))
                        fail_at(line, "a truncated \\" + std::string(1, e) + " escape in a string literal");
                    const char h = static_cast<char>(std::tolower(static_cast<unsigned char>(raw[i])));
                    cp = cp * 16 + static_cast<char32_t>(h <= '9' ? h - '0' : h - 'a' + 10);
                }
                if (cp > 0x10FFFF) fail_at(line, "an escape in a string literal is out of range");
                utf8::append(value, cp);
            };
            switch (e) {
                case '\\': value.push_back('\\'); break;
                case '\'': value.push_back('\''); break;
                case '"': value.push_back('"'); break;
                case 'a': value.push_back('\a'); break;
                case 'b': value.push_back('\b'); break;
                case 'f': value.push_back('\f'); break;
                case 'n': value.push_back('\n'); break;
                case 'r': value.push_back('\r'); break;
                case 't': value.push_back('\t'); break;
                case 'v': value.push_back('\v'); break;
                case '\n': break;  // a line continuation
                case 'x': hex_escape(2); break;
                case 'u': hex_escape(4); break;
                case 'U': hex_escape(8); break;
                case 'N': fail_at(line, "\\N{...} escapes are not supported");
                default:
                    if (e >= '0' && e <= '7') {
                        char32_t cp = static_cast<char32_t>(e - '0');
                        for (int k = 0; k < 2 && i < raw.size() && raw[i] >= '0' && raw[i] <= '7'; ++k, ++i)
                            cp = cp * 8 + static_cast<char32_t>(raw[i] - '0');
                        utf8::append(value, cp);
                    } else if (static_cast<unsigned char>(e) >= 0x80) {
                        // Jinja escapes the non-ASCII character first (\xe9), so the backslash stays
                        // and the character becomes its escape's text.
                        std::size_t start = i - 1;
                        const char32_t cp = next_code_point(raw, start);
                        i = start;
                        value.push_back('\\');
                        if (cp < 0x100)
                            value.append("x").append(hex(static_cast<std::uint32_t>(cp), 2));
                        else if (cp < 0x10000)
                            value.append("u").append(hex(static_cast<std::uint32_t>(cp), 4));
                        else
                            value.append("U").append(hex(static_cast<std::uint32_t>(cp), 8));
                    } else {
                        value.push_back('\\');
                        value.push_back(e);
                    }
            }
        }
        Token token;
        token.type = Tok::string;
        token.value = std::move(value);
        token.line = line;
        tokens_.push_back(std::move(token));
    }

    void op(std::vector<char>& brackets) {
        static constexpr std::string_view two[] = {"//", "**", "==", "!=", ">=", "<="};
        for (auto o : two)
            if (at(o)) {
                emit(Tok::op, std::string(o));
                pos_ += 2;
                return;
            }
        const char c = source_[pos_];
        if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
            std::size_t next = pos_;
            std::string shown;
            utf8::append(shown, next_code_point(source_, next));
            fail_at(line_, "unexpected character '" + shown + "'");
        }
        if (c == '(' || c == '[' || c == '{') brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        if (c == ')' || c == ']' || c == '}') {
            if (brackets.empty()) fail_at(line_, std::string("unexpected '") + c + "'");
            if (brackets.back() != c) fail_at(line_, std::string("unexpected '") + c + "', expected '" + brackets.back() + "'");
            brackets.pop_back();
        }
        emit(Tok::op, std::string(1, c));
        ++pos_;
    }

    const std::string& where_;
    std::string source_;
    std::size_t pos_ = 0;
    int line_ = 1;
    bool line_starting_ = true;
    std::vector<Token> tokens_;
};

// ----------------------------------------------------------------------------------------------------
// The syntax tree.

enum class ExprKind {
    constant, name, getattr, getitem, slice, list, tuple, dict, neg, pos, binary, concat, compare,
    and_, or_, not_, cond, filter, test, call_function, call_method
};

// One node; its children's meaning depends on the kind:
//   getattr [obj] name; getitem [obj, key]; slice [obj, start, stop, step] (none when absent);
//   list/tuple [items]; dict [k0, v0, k1, v1...]; neg/pos/not_ [x]; binary name [a, b]; concat [items];
//   compare [first, others...] ops; and_/or_ [a, b]; cond [test, then, else?];
//   filter/test name [subject, positional..., keyword values] keywords; call_function name [args];
//   call_method name [obj, args...] keywords.
struct Expr {
    ExprKind kind = ExprKind::constant;
    int line = 0;
    std::string name;
    Value constant;
    std::vector<Expr> args;
    std::vector<std::string> keywords;  // the names of the last keywords.size() arguments
    std::vector<std::string> ops;
};

enum class StmtKind { text, print, if_, for_, set, set_attr, set_block, break_, continue_ };

// text text; print [expr]; if_ [conditions...] bodies (one per condition, then else if has_else);
// for_ targets [iterable, filter?] bodies [body, else]; set targets [value] (tuple_target: unpack);
// set_attr targets[0].text = [value]; set_block targets bodies [body].
struct Stmt {
    StmtKind kind = StmtKind::text;
    int line = 0;
    std::string text;
    std::vector<std::string> targets;
    bool tuple_target = false;
    bool has_else = false;
    bool has_filter = false;
    std::vector<Expr> exprs;
    std::vector<std::vector<Stmt>> bodies;
};

// ----------------------------------------------------------------------------------------------------
// Parser: Jinja's grammar and precedence (parser.py), restricted to the subset.

class Parser {
public:
    Parser(std::vector<Token> tokens, const std::string& where) : tokens_(std::move(tokens)), where_(where) {}

    std::vector<Stmt> parse_template() {
        auto body = subparse({});
        if (current().type != Tok::eof) fail_here("unexpected '" + current().value + "'");
        return body;
    }

private:
    struct OpenBlock {
        std::string name;
        int line;
    };

    [[noreturn]] void fail_at(int line, const std::string& message) const { simnpo::fail(where_, ":", line, ": ", message); }
    [[noreturn]] void fail_here(const std::string& message) const { fail_at(current().line, message); }

    const Token& current() const { return tokens_[index_]; }
    const Token& look() const { return tokens_[std::min(index_ + 1, tokens_.size() - 1)]; }
    const Token& advance() {
        const Token& token = tokens_[index_];
        if (index_ + 1 < tokens_.size()) ++index_;
        return token;
    }
    bool is_op(std::string_view o) const { return current().type == Tok::op && current().value == o; }
    bool is_name(std::string_view n) const { return current().type == Tok::name && current().value == n; }
    bool skip_op(std::string_view o) {
        if (!is_op(o)) return false;
        advance();
        return true;
    }
    bool skip_name(std::string_view n) {
        if (!is_name(n)) return false;
        advance();
        return true;
    }
    static std::string describe(const Token& token) {
        switch (token.type) {
            case Tok::eof: return "end of template";
            case Tok::block_end: return "end of statement block";
            case Tok::variable_end: return "end of print statement";
            case Tok::data: return "template data";
            case Tok::string: return "string";
            case Tok::integer: return "integer";
            default: return "'" + token.value + "'";
        }
    }
    void expect_op(std::string_view o) {
        if (!skip_op(o)) fail_here("expected '" + std::string(o) + "', got " + describe(current()));
    }
    std::string expect_name() {
        if (current().type != Tok::name) fail_here("expected a name, got " + describe(current()));
        return advance().value;
    }
    void expect(Tok type, std::string_view what) {
        if (current().type != type) {
            if (current().type == Tok::eof) fail_eof();
            fail_here("expected " + std::string(what) + ", got " + describe(current()));
        }
        advance();
    }
    [[noreturn]] void fail_eof() const {
        if (open_.empty()) fail_here("unexpected end of template");
        const auto& block = open_.back();
        fail_here("unexpected end of template: the '" + block.name + "' block opened on line " +
                  std::to_string(block.line) + " is not closed (expected 'end" + block.name + "')");
    }

    // Template data and tags until a block tag whose name is one of `end_names` (left current).
    std::vector<Stmt> subparse(const std::vector<std::string_view>& end_names) {
        std::vector<Stmt> body;
        while (true) {
            const Token& token = current();
            if (token.type == Tok::eof) {
                if (!end_names.empty()) fail_eof();
                return body;
            }
            if (token.type == Tok::data) {
                Stmt stmt;
                stmt.kind = StmtKind::text;
                stmt.line = token.line;
                stmt.text = token.value;
                body.push_back(std::move(stmt));
                advance();
            } else if (token.type == Tok::variable_begin) {
                advance();
                Stmt stmt;
                stmt.kind = StmtKind::print;
                stmt.line = token.line;
                stmt.exprs.push_back(parse_tuple(false, true, {}));
                expect(Tok::variable_end, "end of print statement");
                body.push_back(std::move(stmt));
            } else if (token.type == Tok::block_begin) {
                advance();
                if (current().type == Tok::name &&
                    std::find(end_names.begin(), end_names.end(), current().value) != end_names.end())
                    return body;
                body.push_back(parse_statement());
                expect(Tok::block_end, "end of statement block");
            } else {
                fail_here("unexpected " + describe(token));
            }
        }
    }

    // The header's end, then the body up to one of `end_names`; `drop` consumes that name.
    std::vector<Stmt> parse_statements(const std::vector<std::string_view>& end_names, bool drop) {
        expect(Tok::block_end, "end of statement block");
        auto body = subparse(end_names);
        if (drop) advance();
        return body;
    }

    Stmt parse_statement() {
        if (current().type != Tok::name) fail_here("expected a statement name, got " + describe(current()));
        const Token& token = current();
        const std::string name = token.value;
        const int line = token.line;
        if (name == "if") return parse_if();
        if (name == "for") return parse_for();
        if (name == "set") return parse_set();
        if (name == "break" || name == "continue") {
            advance();
            if (loop_depth_ == 0) fail_at(line, "'" + name + "' outside a loop");
            Stmt stmt;
            stmt.kind = name == "break" ? StmtKind::break_ : StmtKind::continue_;
            stmt.line = line;
            return stmt;
        }
        static const std::vector<std::string_view> ends = {"endif", "endfor", "endset", "elif", "else"};
        if (std::find(ends.begin(), ends.end(), name) != ends.end()) fail_at(line, "unexpected '" + name + "'");
        fail_at(line, "the statement '" + name + "' is not supported");
    }

    Stmt parse_if() {
        Stmt stmt;
        stmt.kind = StmtKind::if_;
        stmt.line = advance().line;
        open_.push_back({"if", stmt.line});
        while (true) {
            stmt.exprs.push_back(parse_tuple(false, false, {}));
            stmt.bodies.push_back(parse_statements({"elif", "else", "endif"}, false));
            const std::string which = advance().value;
            if (which == "elif") continue;
            if (which == "else") {
                stmt.has_else = true;
                stmt.bodies.push_back(parse_statements({"endif"}, true));
            }
            break;
        }
        open_.pop_back();
        return stmt;
    }

    // Names (a, b) as a target of for or set.
    void parse_targets(Stmt& stmt, std::string_view end_name) {
        const bool parenthesised = skip_op("(");
        while (true) {
            if (current().type != Tok::name) fail_here("can't assign to " + describe(current()));
            const std::string name = advance().value;
            if (name == "true" || name == "false" || name == "none" || name == "True" || name == "False" ||
                name == "None")
                fail_here("can't assign to '" + name + "'");
            stmt.targets.push_back(name);
            if (!skip_op(",")) break;
            stmt.tuple_target = true;
            if ((parenthesised && is_op(")")) || is_name(end_name) || is_op("=") ||
                current().type == Tok::block_end)
                break;
        }
        if (parenthesised) {
            stmt.tuple_target = true;
            expect_op(")");
        }
    }

    Stmt parse_for() {
        Stmt stmt;
        stmt.kind = StmtKind::for_;
        stmt.line = advance().line;
        parse_targets(stmt, "in");
        if (!skip_name("in")) fail_here("expected 'in', got " + describe(current()));
        stmt.exprs.push_back(parse_tuple(false, false, {"recursive"}));
        if (skip_name("if")) {
            stmt.has_filter = true;
            stmt.exprs.push_back(parse_expression(true));
        }
        if (is_name("recursive")) fail_here("recursive loops are not supported");
        open_.push_back({"for", stmt.line});
        ++loop_depth_;
        stmt.bodies.push_back(parse_statements({"endfor", "else"}, false));
        --loop_depth_;
        if (advance().value == "else") {
            stmt.has_else = true;
            stmt.bodies.push_back(parse_statements({"endfor"}, true));
        } else {
            stmt.bodies.emplace_back();
        }
        open_.pop_back();
        return stmt;
    }

    Stmt parse_set() {
        Stmt stmt;
        stmt.line = advance().line;
        if (current().type == Tok::name && look().type == Tok::op && look().value == ".") {
            stmt.kind = StmtKind::set_attr;
            stmt.targets.push_back(advance().value);
            advance();
            stmt.text = expect_name();
            expect_op("=");
            stmt.exprs.push_back(parse_tuple(false, true, {}));
            return stmt;
        }
        parse_targets(stmt, "");
        if (skip_op("=")) {
            stmt.kind = StmtKind::set;
            stmt.exprs.push_back(parse_tuple(false, true, {}));
            return stmt;
        }
        if (stmt.tuple_target) fail_here("expected '=', got " + describe(current()));
        if (is_op("|")) fail_here("a filter on a block 'set' is not supported");
        stmt.kind = StmtKind::set_block;
        open_.push_back({"set", stmt.line});
        stmt.bodies.push_back(parse_statements({"endset"}, true));
        open_.pop_back();
        return stmt;
    }

    // ---- expressions

    Expr node(ExprKind kind, int line, std::vector<Expr> args = {}, std::string name = {}) {
        Expr e;
        e.kind = kind;
        e.line = line;
        e.args = std::move(args);
        e.name = std::move(name);
        return e;
    }
    Expr constant(Value v, int line) {
        Expr e = node(ExprKind::constant, line);
        e.constant = std::move(v);
        return e;
    }

    bool is_tuple_end(const std::vector<std::string_view>& extra_end) const {
        const Token& t = current();
        if (t.type == Tok::variable_end || t.type == Tok::block_end || t.type == Tok::eof) return true;
        if (t.type == Tok::op && t.value == ")") return true;
        return t.type == Tok::name && std::find(extra_end.begin(), extra_end.end(), t.value) != extra_end.end();
    }

    Expr parse_tuple(bool explicit_parentheses, bool with_condexpr, const std::vector<std::string_view>& extra_end) {
        const int line = current().line;
        std::vector<Expr> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (is_tuple_end(extra_end)) break;
            items.push_back(parse_expression(with_condexpr));
            if (is_op(","))
                is_tuple = true;
            else
                break;
        }
        if (!is_tuple) {
            if (!items.empty()) return std::move(items.front());
            if (!explicit_parentheses) fail_here("expected an expression, got " + describe(current()));
        }
        return node(ExprKind::tuple, line, std::move(items));
    }

    Expr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

    Expr parse_condexpr() {
        Expr expr = parse_or();
        while (is_name("if")) {
            const int line = advance().line;
            Expr test = parse_or();
            std::vector<Expr> args;
            args.push_back(std::move(test));
            args.push_back(std::move(expr));
            if (skip_name("else")) args.push_back(parse_condexpr());
            expr = node(ExprKind::cond, line, std::move(args));
        }
        return expr;
    }

    Expr parse_or() {
        Expr left = parse_and();
        while (is_name("or")) {
            const int line = advance().line;
            std::vector<Expr> args;
            args.push_back(std::move(left));
            args.push_back(parse_and());
            left = node(ExprKind::or_, line, std::move(args));
        }
        return left;
    }

    Expr parse_and() {
        Expr left = parse_not();
        while (is_name("and")) {
            const int line = advance().line;
            std::vector<Expr> args;
            args.push_back(std::move(left));
            args.push_back(parse_not());
            left = node(ExprKind::and_, line, std::move(args));
        }
        return left;
    }

    Expr parse_not() {
        if (is_name("not")) {
            const int line = advance().line;
            std::vector<Expr> args;
            args.push_back(parse_not());
            return node(ExprKind::not_, line, std::move(args));
        }
        return parse_compare();
    }

    Expr parse_compare() {
        const int line = current().line;
        Expr first = parse_math1();
        std::vector<Expr> args;
        std::vector<std::string> ops;
        while (true) {
            static constexpr std::string_view comparisons[] = {"==", "!=", "<", "<=", ">", ">="};
            if (current().type == Tok::op &&
                std::find(std::begin(comparisons), std::end(comparisons), current().value) != std::end(comparisons)) {
                ops.push_back(advance().value);
            } else if (is_name("in")) {
                advance();
                ops.push_back("in");
            } else if (is_name("not") && look().type == Tok::name && look().value == "in") {
                advance();
                advance();
                ops.push_back("notin");
            } else {
                break;
            }
            args.push_back(parse_math1());
        }
        if (ops.empty()) return first;
        args.insert(args.begin(), std::move(first));
        Expr e = node(ExprKind::compare, line, std::move(args));
        e.ops = std::move(ops);
        return e;
    }

    Expr binary(std::string op, Expr a, Expr b, int line) {
        std::vector<Expr> args;
        args.push_back(std::move(a));
        args.push_back(std::move(b));
        return node(ExprKind::binary, line, std::move(args), std::move(op));
    }

    Expr parse_math1() {
        Expr left = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& token = advance();
            const int line = token.line;
            std::string op = token.value;
            left = binary(std::move(op), std::move(left), parse_concat(), line);
        }
        return left;
    }

    Expr parse_concat() {
        const int line = current().line;
        std::vector<Expr> args;
        args.push_back(parse_math2());
        while (skip_op("~")) args.push_back(parse_math2());
        if (args.size() == 1) return std::move(args.front());
        return node(ExprKind::concat, line, std::move(args));
    }

    Expr parse_math2() {
        Expr left = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            if (is_op("/")) fail_here("the operator '/' is not supported (it gives a float)");
            const Token& token = advance();
            const int line = token.line;
            std::string op = token.value;
            left = binary(std::move(op), std::move(left), parse_pow(), line);
        }
        return left;
    }

    Expr parse_pow() {
        Expr left = parse_unary(true);
        while (is_op("**")) {
            const int line = advance().line;
            left = binary("**", std::move(left), parse_unary(true), line);
        }
        return left;
    }

    Expr parse_unary(bool with_filter) {
        Expr expr;
        if (is_op("-") || is_op("+")) {
            const Token& token = advance();
            const bool neg = token.value == "-";
            const int line = token.line;
            std::vector<Expr> args;
            args.push_back(parse_unary(false));
            expr = node(neg ? ExprKind::neg : ExprKind::pos, line, std::move(args));
        } else {
            expr = parse_primary();
        }
        expr = parse_postfix(std::move(expr));
        if (with_filter) expr = parse_filter_expr(std::move(expr));
        return expr;
    }

    Expr parse_primary() {
        const Token& token = current();
        const int line = token.line;
        if (token.type == Tok::name) {
            const std::string name = advance().value;
            if (name == "true" || name == "True") return constant(Value::make_bool(true), line);
            if (name == "false" || name == "False") return constant(Value::make_bool(false), line);
            if (name == "none" || name == "None") return constant(Value::make_none(), line);
            return node(ExprKind::name, line, {}, name);
        }
        if (token.type == Tok::string) {
            std::string text;
            while (current().type == Tok::string) text.append(advance().value);
            return constant(Value::make_string(std::move(text)), line);
        }
        if (token.type == Tok::integer) return constant(Value::make_int(advance().integer), line);
        if (skip_op("(")) {
            Expr e = parse_tuple(true, true, {});
            expect_op(")");
            return e;
        }
        if (skip_op("[")) {
            std::vector<Expr> items;
            while (!is_op("]")) {
                if (!items.empty()) expect_op(",");
                if (is_op("]")) break;
                items.push_back(parse_expression(true));
            }
            expect_op("]");
            return node(ExprKind::list, line, std::move(items));
        }
        if (skip_op("{")) {
            std::vector<Expr> items;
            while (!is_op("}")) {
                if (!items.empty()) expect_op(",");
                if (is_op("}")) break;
                items.push_back(parse_expression(true));
                expect_op(":");
                items.push_back(parse_expression(true));
            }
            expect_op("}");
            return node(ExprKind::dict, line, std::move(items));
        }
        if (token.type == Tok::eof) fail_eof();
        fail_here("unexpected " + describe(token));
    }

    Expr parse_postfix(Expr expr) {
        while (true) {
            if (is_op(".") || is_op("["))
                expr = parse_subscript(std::move(expr));
            else if (is_op("("))
                expr = parse_call(std::move(expr));
            else
                return expr;
        }
    }

    Expr parse_filter_expr(Expr expr) {
        while (true) {
            if (is_op("|"))
                expr = parse_filter(std::move(expr));
            else if (is_name("is"))
                expr = parse_test(std::move(expr));
            else if (is_op("("))
                expr = parse_call(std::move(expr));
            else
                return expr;
        }
    }

    Expr parse_subscript(Expr obj) {
        const Token& token = advance();
        const int line = token.line;
        if (token.value == ".") {
            if (current().type == Tok::name) {
                std::vector<Expr> args;
                args.push_back(std::move(obj));
                return node(ExprKind::getattr, line, std::move(args), advance().value);
            }
            if (current().type == Tok::integer) {
                std::vector<Expr> args;
                args.push_back(std::move(obj));
                args.push_back(constant(Value::make_int(advance().integer), line));
                return node(ExprKind::getitem, line, std::move(args));
            }
            fail_here("expected a name or a number after '.', got " + describe(current()));
        }
        // '[': one subscript or slice; several (a tuple key) is not supported
        Expr key = parse_subscribed(obj);
        if (is_op(",")) fail_here("a tuple as a subscript is not supported");
        expect_op("]");
        if (key.kind == ExprKind::slice) return key;
        std::vector<Expr> args;
        args.push_back(std::move(obj));
        args.push_back(std::move(key));
        return node(ExprKind::getitem, line, std::move(args));
    }

    // A subscript, or a slice of `obj` (then obj is moved into the slice node).
    Expr parse_subscribed(Expr& obj) {
        const int line = current().line;
        std::vector<Expr> parts;
        if (is_op(":")) {
            advance();
            parts.push_back(constant(Value::make_none(), line));
        } else {
            Expr e = parse_expression(true);
            if (!is_op(":")) return e;
            advance();
            parts.push_back(std::move(e));
        }
        if (is_op(":") || is_op("]") || is_op(","))
            parts.push_back(constant(Value::make_none(), line));
        else
            parts.push_back(parse_expression(true));
        if (skip_op(":")) {
            if (is_op("]") || is_op(","))
                parts.push_back(constant(Value::make_none(), line));
            else
                parts.push_back(parse_expression(true));
        } else {
            parts.push_back(constant(Value::make_none(), line));
        }
        parts.insert(parts.begin(), std::move(obj));
        return node(ExprKind::slice, line, std::move(parts));
    }

    // The arguments of a call: positional then keyword ones, appended to e.args / e.keywords.
    void parse_arguments(Expr& e) {
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (is_op("*") || is_op("**")) fail_here("*args and **kwargs in calls are not supported");
            if (current().type == Tok::name && look().type == Tok::op && look().value == "=") {
                e.keywords.push_back(advance().value);
                advance();
                e.args.push_back(parse_expression(true));
            } else {
                if (!e.keywords.empty()) fail_here("a positional argument after a keyword argument");
                e.args.push_back(parse_expression(true));
            }
        }
        expect_op(")");
    }

    // Checks the arguments of `e` (subject first when `subject`) against a signature.
    void check_arguments(const Expr& e, const Signature& signature, std::size_t subject, const std::string& what) {
        const std::size_t positional = e.args.size() - subject - e.keywords.size();
        if (!signature.variadic && positional > signature.params.size())
            fail_at(e.line, what + " takes at most " + std::to_string(signature.params.size()) + " arguments");
        if (signature.positional_only && !e.keywords.empty())
            fail_at(e.line, what + " takes no keyword arguments");
        for (const auto& keyword : e.keywords) {
            const auto found = std::find(signature.params.begin(), signature.params.end(), keyword);
            if (signature.name == "map" && (keyword == "attribute" || keyword == "default")) continue;
            if (found == signature.params.end())
                fail_at(e.line, what + " has no argument '" + keyword + "' here");
            if (static_cast<std::size_t>(found - signature.params.begin()) < positional)
                fail_at(e.line, what + " got the argument '" + keyword + "' twice");
        }
    }

    Expr parse_call(Expr callee) {
        const int line = current().line;
        Expr e;
        e.line = line;
        if (callee.kind == ExprKind::name) {
            e.kind = ExprKind::call_function;
            e.name = callee.name;
            parse_arguments(e);
            if (e.name == "raise_exception") {
                if (e.args.size() != 1 || !e.keywords.empty()) fail_at(line, "raise_exception takes one argument");
            } else if (e.name == "namespace") {
                if (e.keywords.size() != e.args.size())
                    fail_at(line, "namespace(...) is only supported with keyword arguments");
            } else {
                fail_at(line, "the function '" + e.name + "' is not supported");
            }
            return e;
        }
        if (callee.kind == ExprKind::getattr) {
            e.kind = ExprKind::call_method;
            e.name = callee.name;
            e.args.push_back(std::move(callee.args.front()));
            const Signature* signature = find_signature(method_signatures(), e.name);
            if (!signature) fail_at(line, "the method '" + e.name + "' is not supported");
            parse_arguments(e);
            check_arguments(e, *signature, 1, "the method '" + e.name + "'");
            return e;
        }
        fail_at(line, "calling this expression is not supported");
    }

    Expr parse_filter(Expr subject) {
        while (skip_op("|")) {
            const int line = current().line;
            std::string name = expect_name();
            while (is_op(".")) {
                advance();
                name.append(".").append(expect_name());
            }
            const Signature* signature = find_signature(filter_signatures(), name);
            if (!signature) fail_at(line, "the filter '" + name + "' is not supported");
            Expr e;
            e.kind = ExprKind::filter;
            e.line = line;
            e.name = name;
            e.args.push_back(std::move(subject));
            if (is_op("(")) parse_arguments(e);
            check_arguments(e, *signature, 1, "the filter '" + name + "'");
            check_filter_names(e);
            subject = std::move(e);
        }
        return subject;
    }

    // select('test'), reject, selectattr('a', 'test'), map('filter'): a constant name must be supported.
    void check_filter_names(const Expr& e) {
        const std::size_t positional = e.args.size() - 1 - e.keywords.size();
        const auto constant_at = [&](std::size_t i) -> const Value* {
            if (i >= positional) return nullptr;
            const Expr& arg = e.args[1 + i];
            return arg.kind == ExprKind::constant && arg.constant.kind == Kind::string ? &arg.constant : nullptr;
        };
        std::optional<std::size_t> test_at;
        if (e.name == "select" || e.name == "reject") test_at = 0;
        if (e.name == "selectattr" || e.name == "rejectattr") {
            if (positional == 0) fail_at(e.line, "the filter '" + e.name + "' needs an attribute");
            test_at = 1;
        }
        if (test_at) {
            if (positional > *test_at && !constant_at(*test_at))
                fail_at(e.line, "the filter '" + e.name + "' is only supported with a test name that is a string literal");
            if (const Value* test = constant_at(*test_at); test && !find_signature(test_signatures(), test->text))
                fail_at(e.line, "the test '" + test->text + "' is not supported");
            if (!e.keywords.empty()) fail_at(e.line, "the filter '" + e.name + "' takes no keyword arguments");
        }
        if (e.name == "map") {
            if (positional > 0) {
                const Value* filter = constant_at(0);
                if (!filter) fail_at(e.line, "the filter 'map' is only supported with a filter name that is a string literal");
                const Signature* signature = find_signature(filter_signatures(), filter->text);
                if (!signature || signature->variadic) fail_at(e.line, "the filter '" + filter->text + "' is not supported in map");
                if (!e.keywords.empty()) fail_at(e.line, "map with a filter name and keyword arguments is not supported");
                if (positional - 1 > signature->params.size())
                    fail_at(e.line, "the filter '" + filter->text + "' takes at most " +
                                        std::to_string(signature->params.size()) + " arguments");
            } else if (std::find(e.keywords.begin(), e.keywords.end(), "attribute") == e.keywords.end()) {
                fail_at(e.line, "the filter 'map' needs a filter name or attribute=");
            }
        }
    }

    Expr parse_test(Expr subject) {
        const int line = advance().line;  // 'is'
        const bool negated = skip_name("not");
        std::string name = expect_name();
        while (is_op(".")) {
            advance();
            name.append(".").append(expect_name());
        }
        const Signature* signature = find_signature(test_signatures(), name);
        if (!signature) fail_at(line, "the test '" + name + "' is not supported");
        Expr e;
        e.kind = ExprKind::test;
        e.line = line;
        e.name = name;
        e.args.push_back(std::move(subject));
        const Token& t = current();
        if (is_op("(")) {
            parse_arguments(e);
        } else if ((t.type == Tok::name || t.type == Tok::string || t.type == Tok::integer ||
                    (t.type == Tok::op && (t.value == "(" || t.value == "[" || t.value == "{"))) &&
                   !(t.type == Tok::name && (t.value == "else" || t.value == "or" || t.value == "and"))) {
            if (is_name("is")) fail_here("you cannot chain multiple tests with 'is'");
            e.args.push_back(parse_postfix(parse_primary()));
        }
        check_arguments(e, *signature, 1, "the test '" + name + "'");
        if (e.args.size() - 1 != signature->params.size())
            fail_at(line, "the test '" + name + "' takes " + std::to_string(signature->params.size()) + " arguments");
        if (!negated) return e;
        std::vector<Expr> args;
        args.push_back(std::move(e));
        return node(ExprKind::not_, line, std::move(args));
    }

    std::vector<Token> tokens_;
    std::size_t index_ = 0;
    const std::string& where_;
    std::vector<OpenBlock> open_;
    int loop_depth_ = 0;
};

// ----------------------------------------------------------------------------------------------------
// Evaluator.

// Python's arithmetic, on 64-bit integers (an overflow is an error, not Python's big integer).
template <class Op>
std::int64_t checked(Op op, std::int64_t x, std::int64_t y) {
    std::int64_t result = 0;
    if (op(x, y, &result)) render_fail("integer overflow");
    return result;
}
inline bool add_overflow(std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_add_overflow(x, y, r); }
inline bool sub_overflow(std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_sub_overflow(x, y, r); }
inline bool mul_overflow(std::int64_t x, std::int64_t y, std::int64_t* r) { return __builtin_mul_overflow(x, y, r); }

inline Value arithmetic(const std::string& op, const Value& a, const Value& b) {
    check_defined(a);
    check_defined(b);
    const auto unsupported = [&]() -> Value {
        render_fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
    };
    if (a.is_number() && b.is_number()) {
        const std::int64_t x = a.number();
        const std::int64_t y = b.number();
        if (op == "+") return Value::make_int(checked(add_overflow, x, y));
        if (op == "-") return Value::make_int(checked(sub_overflow, x, y));
        if (op == "*") return Value::make_int(checked(mul_overflow, x, y));
        if (op == "//" || op == "%") {
            if (y == 0) render_fail("integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) render_fail("integer overflow");
            std::int64_t q = x / y;
            std::int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                --q;
                m += y;
            }
            return Value::make_int(op == "//" ? q : m);
        }
        if (op == "**") {
            if (y < 0) render_fail("a negative power (a float) is not supported");
            std::int64_t result = 1;
            for (std::int64_t i = 0; i < y; ++i) result = checked(mul_overflow, result, x);
            return Value::make_int(result);
        }
        return unsupported();
    }
    if (op == "+") {
        if (a.kind == Kind::string && b.kind == Kind::string) {
            std::string out = a.text;
            out.append(b.text);
            return Value::make_string(std::move(out));
        }
        if (a.kind == Kind::sequence && b.kind == Kind::sequence && a.seq->kind == b.seq->kind &&
            (a.seq->kind == SeqKind::list || a.seq->kind == SeqKind::tuple)) {
            std::vector<Value> items = a.seq->items;
            items.insert(items.end(), b.seq->items.begin(), b.seq->items.end());
            return Value::make_sequence(std::move(items), a.seq->kind);
        }
        return unsupported();
    }
    if (op == "*") {
        const Value& text = a.is_number() ? b : a;
        const Value& count = a.is_number() ? a : b;
        if (!count.is_number()) return unsupported();
        const std::int64_t n = std::max<std::int64_t>(0, count.number());
        if (text.kind == Kind::string) {
            if (n > 0 && text.text.size() * static_cast<std::size_t>(n) > (std::size_t{1} << 30))
                render_fail("the repeated string is too long");
            std::string out;
            for (std::int64_t i = 0; i < n; ++i) out.append(text.text);
            return Value::make_string(std::move(out));
        }
        if (text.kind == Kind::sequence && (text.seq->kind == SeqKind::list || text.seq->kind == SeqKind::tuple)) {
            if (n > 0 && text.seq->items.size() * static_cast<std::size_t>(n) > (std::size_t{1} << 24))
                render_fail("the repeated list is too long");
            std::vector<Value> items;
            for (std::int64_t i = 0; i < n; ++i) items.insert(items.end(), text.seq->items.begin(), text.seq->items.end());
            return Value::make_sequence(std::move(items), text.seq->kind);
        }
        return unsupported();
    }
    if (op == "%" && a.kind == Kind::string) render_fail("string formatting with '%' is not supported");
    return unsupported();
}

struct Bound {  // a call's arguments by parameter name
    std::vector<std::optional<Value>> params;
    std::vector<Value> extra;  // variadic positional ones
    std::vector<std::pair<std::string, Value>> keywords;  // map's attribute= / default=
    const Value* get(std::size_t i) const { return i < params.size() && params[i] ? &*params[i] : nullptr; }
};

class Renderer {
public:
    Renderer(const std::string& where, std::map<std::string, Value> context) : where_(where) {
        scopes_.push_back(std::move(context));
    }

    std::string run(const std::vector<Stmt>& body) {
        std::string out;
        try {
            exec(body, out);
        } catch (const RenderError& error) {
            simnpo::fail(where_, ":", line_, ": ", error.message);
        }
        return out;
    }

private:
    enum class Flow { normal, break_, continue_ };

    Value lookup(const std::string& name) const {
        for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
            if (auto found = it->find(name); found != it->end()) return found->second;
        return Value::make_undefined("'" + name + "' is undefined");
    }

    void assign(const std::string& name, Value value) { scopes_.back()[name] = std::move(value); }

    void assign_targets(const Stmt& stmt, const Value& value) {
        if (!stmt.tuple_target) {
            assign(stmt.targets.front(), value);
            return;
        }
        const auto items = iterate(value);
        if (items.size() != stmt.targets.size())
            render_fail("cannot unpack " + std::to_string(items.size()) + " values into " +
                        std::to_string(stmt.targets.size()) + " names");
        for (std::size_t i = 0; i < items.size(); ++i) assign(stmt.targets[i], items[i]);
    }

    Flow exec(const std::vector<Stmt>& body, std::string& out) {
        for (const auto& stmt : body) {
            const Flow flow = exec_one(stmt, out);
            if (flow != Flow::normal) return flow;
        }
        return Flow::normal;
    }

    Flow exec_one(const Stmt& stmt, std::string& out) {
        line_ = stmt.line;
        switch (stmt.kind) {
                case StmtKind::text: out.append(stmt.text); return Flow::normal;
                case StmtKind::print: out.append(python_str(eval(stmt.exprs[0]))); return Flow::normal;
                case StmtKind::if_:
                    for (std::size_t i = 0; i < stmt.exprs.size(); ++i)
                        if (truthy(eval(stmt.exprs[i]))) return exec(stmt.bodies[i], out);
                    if (stmt.has_else) return exec(stmt.bodies.back(), out);
                    return Flow::normal;
                case StmtKind::for_: exec_for(stmt, out); return Flow::normal;
                case StmtKind::set: assign_targets(stmt, eval(stmt.exprs[0])); return Flow::normal;
                case StmtKind::set_attr: {
                    const Value target = lookup(stmt.targets[0]);
                    if (target.kind != Kind::ns) render_fail("cannot assign attribute on non-namespace object");
                    target.ns->set(stmt.text, eval(stmt.exprs[0]));
                    return Flow::normal;
                }
                case StmtKind::set_block: {
                    std::string text;
                    scopes_.emplace_back();
                    exec(stmt.bodies[0], text);
                    scopes_.pop_back();
                    assign(stmt.targets[0], Value::make_string(std::move(text)));
                    return Flow::normal;
                }
                case StmtKind::break_: return Flow::break_;
                case StmtKind::continue_: return Flow::continue_;
        }
        return Flow::normal;
    }

    void exec_for(const Stmt& stmt, std::string& out) {
        std::vector<Value> items = iterate(eval(stmt.exprs[0]));
        if (stmt.has_filter) {
            std::vector<Value> kept;
            for (auto& item : items) {
                scopes_.emplace_back();
                assign_targets(stmt, item);
                const bool keep = truthy(eval(stmt.exprs[1]));
                scopes_.pop_back();
                if (keep) kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        const auto n = static_cast<std::int64_t>(items.size());
        for (std::int64_t i = 0; i < n; ++i) {
            const auto at = static_cast<std::size_t>(i);
            Value loop = Value::make_dict(
                {{"index", Value::make_int(i + 1)},
                 {"index0", Value::make_int(i)},
                 {"revindex", Value::make_int(n - i)},
                 {"revindex0", Value::make_int(n - i - 1)},
                 {"first", Value::make_bool(i == 0)},
                 {"last", Value::make_bool(i == n - 1)},
                 {"length", Value::make_int(n)},
                 {"depth", Value::make_int(1)},  // the depth of a recursive loop; others are 1
                 {"depth0", Value::make_int(0)},
                 {"previtem", i > 0 ? items[at - 1] : Value::make_undefined("there is no previous item")},
                 {"nextitem", i + 1 < n ? items[at + 1] : Value::make_undefined("there is no next item")}},
                Kind::loop);
            scopes_.emplace_back();  // each iteration is a fresh scope, as Jinja's
            assign("loop", std::move(loop));
            assign_targets(stmt, items[at]);
            const Flow flow = exec(stmt.bodies[0], out);
            scopes_.pop_back();
            if (flow == Flow::break_) break;
        }
        if (n == 0 && stmt.has_else) {
            scopes_.emplace_back();
            exec(stmt.bodies[1], out);
            scopes_.pop_back();
        }
    }

    Bound bind(const Expr& e, const Signature& signature, std::size_t subject) {
        Bound bound;
        bound.params.resize(signature.params.size());
        const std::size_t positional = e.args.size() - subject - e.keywords.size();
        for (std::size_t i = 0; i < positional; ++i) {
            Value v = eval(e.args[subject + i]);
            if (i < bound.params.size())
                bound.params[i] = std::move(v);
            else
                bound.extra.push_back(std::move(v));
        }
        for (std::size_t k = 0; k < e.keywords.size(); ++k) {
            Value v = eval(e.args[subject + positional + k]);
            const auto found = std::find(signature.params.begin(), signature.params.end(), e.keywords[k]);
            if (found != signature.params.end())
                bound.params[static_cast<std::size_t>(found - signature.params.begin())] = std::move(v);
            else
                bound.keywords.emplace_back(e.keywords[k], std::move(v));
        }
        return bound;
    }

    Value eval(const Expr& e) {
        line_ = e.line;  // a failure is reported at the line of the innermost expression evaluated
        switch (e.kind) {
            case ExprKind::constant: return e.constant;
            case ExprKind::name: return lookup(e.name);
            case ExprKind::getattr: return get_attribute(eval(e.args[0]), e.name);
            case ExprKind::getitem: {
                Value obj = eval(e.args[0]);
                return get_item(obj, eval(e.args[1]));
            }
            case ExprKind::slice: {
                Value obj = eval(e.args[0]);
                Value start = eval(e.args[1]);
                Value stop = eval(e.args[2]);
                return slice_of(obj, start, stop, eval(e.args[3]));
            }
            case ExprKind::list:
            case ExprKind::tuple: {
                std::vector<Value> items;
                for (const auto& arg : e.args) items.push_back(eval(arg));
                return Value::make_sequence(std::move(items), e.kind == ExprKind::list ? SeqKind::list : SeqKind::tuple);
            }
            case ExprKind::dict: {
                std::vector<std::pair<std::string, Value>> items;
                for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
                    Value key = eval(e.args[i]);
                    if (key.kind != Kind::string) render_fail("dict keys other than strings are not supported");
                    Value value = eval(e.args[i + 1]);
                    auto found = std::find_if(items.begin(), items.end(), [&](auto& item) { return item.first == key.text; });
                    if (found != items.end())
                        found->second = std::move(value);
                    else
                        items.emplace_back(key.text, std::move(value));
                }
                return Value::make_dict(std::move(items));
            }
            case ExprKind::neg:
            case ExprKind::pos: {
                Value x = eval(e.args[0]);
                check_defined(x);
                if (!x.is_number()) render_fail("bad operand type for unary " + std::string(e.kind == ExprKind::neg ? "-" : "+") + ": '" + type_name(x) + "'");
                if (e.kind == ExprKind::pos) return Value::make_int(x.number());
                if (x.number() == INT64_MIN) render_fail("integer overflow");
                return Value::make_int(-x.number());
            }
            case ExprKind::binary: {
                Value a = eval(e.args[0]);
                return arithmetic(e.name, a, eval(e.args[1]));
            }
            case ExprKind::concat: {
                std::string out;
                for (const auto& arg : e.args) out.append(python_str(eval(arg)));
                return Value::make_string(std::move(out));
            }
            case ExprKind::compare: {
                Value left = eval(e.args[0]);
                for (std::size_t i = 0; i < e.ops.size(); ++i) {
                    Value right = eval(e.args[i + 1]);
                    const std::string& op = e.ops[i];
                    bool result = false;
                    if (op == "==") result = equal(left, right);
                    else if (op == "!=") result = !equal(left, right);
                    else if (op == "<") result = less(left, right);
                    else if (op == ">") result = less(right, left);
                    else if (op == "<=") result = !less(right, left);
                    else if (op == ">=") result = !less(left, right);
                    else if (op == "in") result = contains(right, left);
                    else result = !contains(right, left);
                    if (!result) return Value::make_bool(false);
                    left = std::move(right);
                }
                return Value::make_bool(true);
            }
            case ExprKind::and_: {
                Value a = eval(e.args[0]);
                return truthy(a) ? eval(e.args[1]) : a;
            }
            case ExprKind::or_: {
                Value a = eval(e.args[0]);
                return truthy(a) ? a : eval(e.args[1]);
            }
            case ExprKind::not_: return Value::make_bool(!truthy(eval(e.args[0])));
            case ExprKind::cond:
                if (truthy(eval(e.args[0]))) return eval(e.args[1]);
                if (e.args.size() > 2) return eval(e.args[2]);
                return Value::make_undefined("the conditional expression evaluated to false and had no else");
            case ExprKind::filter: return eval_filter(e);
            case ExprKind::test: {
                Value subject = eval(e.args[0]);
                std::vector<Value> args;
                for (std::size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(e.args[i]));
                return Value::make_bool(run_test(e.name, subject, args));
            }
            case ExprKind::call_function: return call_function(e);
            case ExprKind::call_method: return call_method(e);
        }
        return {};
    }

    Value call_function(const Expr& e) {
        if (e.name == "raise_exception") throw RaisedError{python_str(eval(e.args[0]))};
        // namespace(a=..., b=...)
        Value v;
        v.kind = Kind::ns;
        v.ns = std::make_shared<Namespace>();
        for (std::size_t k = 0; k < e.keywords.size(); ++k) v.ns->set(e.keywords[k], eval(e.args[k]));
        return v;
    }

    static std::optional<std::string> optional_text(const Value* v, const char* what) {
        if (!v || v->kind == Kind::none) return std::nullopt;
        if (v->kind != Kind::string) render_fail(std::string(what) + " must be None or a string, not " + type_name(*v));
        return v->text;
    }

    static std::string python_replace(const std::string& text, const std::string& old, const std::string& replacement,
                                      std::int64_t count) {
        std::string out;
        if (old.empty()) {
            const auto chars = characters(text);
            std::int64_t done = 0;
            for (std::size_t i = 0; i <= chars.size(); ++i) {
                if (count < 0 || done < count) {
                    out.append(replacement);
                    ++done;
                }
                if (i < chars.size()) out.append(chars[i]);
            }
            return out;
        }
        std::size_t pos = 0;
        std::int64_t done = 0;
        while (count < 0 || done < count) {
            const std::size_t found = text.find(old, pos);
            if (found == std::string::npos) break;
            out.append(text, pos, found - pos);
            out.append(replacement);
            pos = found + old.size();
            ++done;
        }
        out.append(text, pos, std::string::npos);
        return out;
    }

    static std::string ascii_case(const std::string& text, bool upper) {
        std::string out = text;
        for (auto& c : out) {
            if (static_cast<unsigned char>(c) >= 0x80)
                render_fail("upper/lower of non-ASCII text is not supported");
            c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
        }
        return out;
    }

    static std::int64_t int_arg(const Value* v, std::int64_t fallback, const char* what) {
        if (!v) return fallback;
        if (!v->is_number()) render_fail(std::string(what) + " must be an integer, not " + type_name(*v));
        return v->number();
    }

    Value call_method(const Expr& e) {
        Value obj = eval(e.args[0]);
        check_defined(obj);
        const Signature& signature = *find_signature(method_signatures(), e.name);
        const Bound bound = bind(e, signature, 1);
        const std::string& m = e.name;
        const bool dict_method = m == "items" || m == "keys" || m == "values" || m == "get";
        if (dict_method ? obj.kind != Kind::dict : obj.kind != Kind::string)
            render_fail("'" + type_name(obj) + "' object has no method '" + m + "'");
        if (m == "strip" || m == "lstrip" || m == "rstrip")
            return Value::make_string(python_strip(obj.text, m != "rstrip", m != "lstrip", optional_text(bound.get(0), "chars")));
        if (m == "upper" || m == "lower") return Value::make_string(ascii_case(obj.text, m == "upper"));
        if (m == "startswith" || m == "endswith") {
            const Value* arg = bound.get(0);
            if (!arg) render_fail(m + "() takes one argument");
            std::vector<std::string> options;
            if (arg->kind == Kind::string) {
                options.push_back(arg->text);
            } else if (arg->kind == Kind::sequence && arg->seq->kind == SeqKind::tuple) {
                for (const auto& item : arg->seq->items) {
                    if (item.kind != Kind::string) render_fail(m + "() takes a string or a tuple of strings");
                    options.push_back(item.text);
                }
            } else {
                render_fail(m + "() takes a string or a tuple of strings");
            }
            for (const auto& option : options) {
                const std::string& t = obj.text;
                if (option.size() > t.size()) continue;
                if (m == "startswith" ? t.compare(0, option.size(), option) == 0
                                      : t.compare(t.size() - option.size(), option.size(), option) == 0)
                    return Value::make_bool(true);
            }
            return Value::make_bool(false);
        }
        if (m == "replace") {
            const Value* old = bound.get(0);
            const Value* replacement = bound.get(1);
            if (!old || !replacement || old->kind != Kind::string || replacement->kind != Kind::string)
                render_fail("replace() takes two strings");
            return Value::make_string(python_replace(obj.text, old->text, replacement->text, int_arg(bound.get(2), -1, "count")));
        }
        if (m == "split") {
            const auto sep = optional_text(bound.get(0), "sep");
            const std::int64_t maxsplit = int_arg(bound.get(1), -1, "maxsplit");
            std::vector<Value> parts;
            const std::string& t = obj.text;
            if (sep) {
                if (sep->empty()) render_fail("empty separator");
                std::size_t pos = 0;
                while (maxsplit < 0 || static_cast<std::int64_t>(parts.size()) < maxsplit) {
                    const std::size_t found = t.find(*sep, pos);
                    if (found == std::string::npos) break;
                    parts.push_back(Value::make_string(t.substr(pos, found - pos)));
                    pos = found + sep->size();
                }
                parts.push_back(Value::make_string(t.substr(pos)));
            } else {
                const auto chars = characters(t);
                const auto space = [&](std::size_t i) {
                    std::size_t p = 0;
                    return is_python_space(next_code_point(chars[i], p));
                };
                std::size_t i = 0;
                while (true) {
                    while (i < chars.size() && space(i)) ++i;
                    if (i == chars.size()) break;
                    if (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit) {
                        std::string rest;
                        for (std::size_t k = i; k < chars.size(); ++k) rest.append(chars[k]);
                        parts.push_back(Value::make_string(std::move(rest)));
                        break;
                    }
                    std::string word;
                    while (i < chars.size() && !space(i)) word.append(chars[i++]);
                    parts.push_back(Value::make_string(std::move(word)));
                }
            }
            return Value::make_sequence(std::move(parts));
        }
        if (m == "get") {
            const Value* key = bound.get(0);
            if (!key) render_fail("get() takes a key");
            if (key->kind == Kind::string)
                if (const Value* found = obj.dict->find(key->text)) return *found;
            return bound.get(1) ? *bound.get(1) : Value::make_none();
        }
        std::vector<Value> items;  // items / keys / values
        for (const auto& [key, value] : obj.dict->items) {
            if (m == "keys")
                items.push_back(Value::make_string(key));
            else if (m == "values")
                items.push_back(value);
            else
                items.push_back(Value::make_sequence({Value::make_string(key), value}, SeqKind::tuple));
        }
        return Value::make_sequence(std::move(items), SeqKind::view);
    }

    bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args) {
        const auto arg = [&]() -> const Value& {
            if (args.size() != 1) render_fail("the test '" + name + "' takes one argument");
            return args[0];
        };
        if (name == "defined") return !v.is_undefined();
        if (name == "undefined") return v.is_undefined();
        if (name == "none") return v.kind == Kind::none;
        if (name == "boolean") return v.kind == Kind::boolean;
        if (name == "true") return v.kind == Kind::boolean && v.boolean;
        if (name == "false") return v.kind == Kind::boolean && !v.boolean;
        if (name == "integer") return v.kind == Kind::integer;
        if (name == "number") return v.is_number();
        if (name == "string") return v.kind == Kind::string;
        if (name == "mapping") return v.kind == Kind::dict;
        if (name == "iterable")
            return v.kind == Kind::undefined || v.kind == Kind::string || v.kind == Kind::sequence ||
                   v.kind == Kind::dict || v.kind == Kind::loop;
        if (name == "sequence")
            return v.kind == Kind::undefined || v.kind == Kind::string || v.kind == Kind::dict ||
                   (v.kind == Kind::sequence && (v.seq->kind == SeqKind::list || v.seq->kind == SeqKind::tuple));
        if (name == "odd" || name == "even" || name == "divisibleby") {
            check_defined(v);
            if (!v.is_number()) render_fail("the test '" + name + "' needs an integer, not " + type_name(v));
            if (name == "divisibleby") {
                const Value& n = arg();
                if (!n.is_number()) render_fail("divisibleby needs an integer");
                if (n.number() == 0) render_fail("integer division or modulo by zero");
                return arithmetic("%", v, n).integer == 0;
            }
            const bool odd = (v.number() % 2) != 0;
            return name == "odd" ? odd : !odd;
        }
        if (name == "equalto" || name == "eq" || name == "==") return equal(v, arg());
        if (name == "ne" || name == "!=") return !equal(v, arg());
        if (name == "lt" || name == "<" || name == "lessthan") return less(v, arg());
        if (name == "gt" || name == ">" || name == "greaterthan") return less(arg(), v);
        if (name == "le" || name == "<=") return !less(arg(), v);
        if (name == "ge" || name == ">=") return !less(v, arg());
        if (name == "in") return contains(arg(), v);
        render_fail("the test '" + name + "' is not supported");
    }

    // Jinja's make_attrgetter: "a.b.0" looked up with getitem, part by part.
    static Value attribute_of(const Value& item, const std::string& path) {
        Value v = item;
        std::size_t pos = 0;
        while (true) {
            const std::size_t dot = path.find('.', pos);
            const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
            const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
            v = get_item(v, digits ? Value::make_int(std::stoll(part)) : Value::make_string(part));
            if (dot == std::string::npos) return v;
            pos = dot + 1;
        }
    }

    Value apply_filter(const std::string& name, const Value& v, const Bound& b) {
        if (name == "trim") return Value::make_string(python_strip(python_str(v), true, true, optional_text(b.get(0), "chars")));
        if (name == "length" || name == "count") return Value::make_int(length(v));
        if (name == "string") return Value::make_string(python_str(v));
        if (name == "upper" || name == "lower") return Value::make_string(ascii_case(python_str(v), name == "upper"));
        if (name == "default" || name == "d") {
            const bool boolean = b.get(1) && truthy(*b.get(1));
            if (v.is_undefined() || (boolean && !truthy(v)))
                return b.get(0) ? *b.get(0) : Value::make_string("");
            return v;
        }
        if (name == "replace") {
            if (!b.get(0) || !b.get(1)) render_fail("replace needs old and new");
            return Value::make_string(python_replace(python_str(v), python_str(*b.get(0)), python_str(*b.get(1)),
                                                     int_arg(b.get(2), -1, "count")));
        }
        if (name == "tojson") {
            JsonStyle style;
            style.ensure_ascii = b.get(0) && truthy(*b.get(0));
            if (const Value* indent = b.get(1); indent && indent->kind != Kind::none) {
                if (indent->is_number())
                    style.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, indent->number())), ' ');
                else if (indent->kind == Kind::string)
                    style.indent = indent->text;
                else
                    render_fail("tojson's indent must be an integer or a string");
                style.item_separator = ",";
            }
            if (const Value* separators = b.get(2); separators && separators->kind != Kind::none) {
                if (separators->kind != Kind::sequence || separators->seq->items.size() != 2 ||
                    separators->seq->items[0].kind != Kind::string || separators->seq->items[1].kind != Kind::string)
                    render_fail("tojson's separators must be two strings");
                style.item_separator = separators->seq->items[0].text;
                style.key_separator = separators->seq->items[1].text;
            }
            style.sort_keys = b.get(3) && truthy(*b.get(3));
            std::string out;
            json_dump(out, v, style, 0);
            return Value::make_string(std::move(out));
        }
        if (name == "join") {
            const std::string separator = b.get(0) ? python_str(*b.get(0)) : std::string();
            std::string out;
            bool first = true;
            for (const auto& item : iterate(v)) {
                if (!first) out.append(separator);
                first = false;
                out.append(python_str(b.get(1) ? attribute_of(item, python_str(*b.get(1))) : item));
            }
            return Value::make_string(std::move(out));
        }
        if (name == "first") {
            auto items = iterate(v);
            return items.empty() ? Value::make_undefined("No first item, sequence was empty.") : items.front();
        }
        if (name == "last") {
            if (v.kind == Kind::sequence && v.seq->kind != SeqKind::list && v.seq->kind != SeqKind::tuple)
                render_fail("'" + type_name(v) + "' object is not reversible");
            auto items = iterate(v);
            return items.empty() ? Value::make_undefined("No last item, sequence was empty.") : items.back();
        }
        if (name == "list") return Value::make_sequence(iterate(v));
        if (name == "items") {
            if (v.is_undefined()) return Value::make_sequence({}, SeqKind::iterator);
            if (v.kind != Kind::dict) render_fail("Can only get item pairs from a mapping.");
            std::vector<Value> items;
            for (const auto& [key, value] : v.dict->items)
                items.push_back(Value::make_sequence({Value::make_string(key), value}, SeqKind::tuple));
            return Value::make_sequence(std::move(items), SeqKind::iterator);
        }
        if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
            const bool attr = name == "selectattr" || name == "rejectattr";
            const bool select = name == "select" || name == "selectattr";
            const std::string attribute = attr ? python_str(b.extra.at(0)) : std::string();
            const std::size_t test_at = attr ? 1 : 0;
            std::optional<std::string> test;
            if (b.extra.size() > test_at) test = python_str(b.extra[test_at]);
            const std::vector<Value> test_args(b.extra.begin() + static_cast<std::ptrdiff_t>(std::min(b.extra.size(), test_at + 1)),
                                               b.extra.end());
            std::vector<Value> kept;
            for (const auto& item : iterate(v)) {
                const Value subject = attr ? attribute_of(item, attribute) : item;
                const bool passed = test ? run_test(*test, subject, test_args) : truthy(subject);
                if (passed == select) kept.push_back(item);
            }
            return Value::make_sequence(std::move(kept), SeqKind::iterator);
        }
        if (name == "map") {
            std::vector<Value> mapped;
            if (!b.extra.empty()) {
                const std::string filter = python_str(b.extra[0]);
                const Signature& signature = *find_signature(filter_signatures(), filter);
                Bound inner;
                inner.params.resize(signature.params.size());
                for (std::size_t i = 1; i < b.extra.size(); ++i) inner.params[i - 1] = b.extra[i];
                for (const auto& item : iterate(v)) mapped.push_back(apply_filter(filter, item, inner));
            } else {
                std::string attribute;
                std::optional<Value> fallback;
                for (const auto& [key, value] : b.keywords) {
                    if (key == "attribute") attribute = python_str(value);
                    if (key == "default") fallback = value;
                }
                for (const auto& item : iterate(v)) {
                    Value got = attribute_of(item, attribute);
                    mapped.push_back(got.is_undefined() && fallback ? *fallback : got);
                }
            }
            return Value::make_sequence(std::move(mapped), SeqKind::iterator);
        }
        render_fail("the filter '" + name + "' is not supported");
    }

    Value eval_filter(const Expr& e) {
        Value subject = eval(e.args[0]);
        const Signature& signature = *find_signature(filter_signatures(), e.name);
        const Bound bound = bind(e, signature, 1);
        return apply_filter(e.name, subject, bound);
    }

    const std::string& where_;
    std::vector<std::map<std::string, Value>> scopes_;
    int line_ = 0;
};

}  // namespace detail::jinja

class ChatTemplate {
public:
    // Parses a template; an unsupported construct or a syntax error is a simnpo::Error
    // "WHERE:LINE: ..." naming the construct.
    static ChatTemplate parse(std::string_view source, std::string where) {
        ChatTemplate result;
        result.source_ = std::string(source);
        result.where_ = std::move(where);
        detail::jinja::Lexer lexer(source, result.where_);
        detail::jinja::Parser parser(lexer.run(), result.where_);
        result.body_ = std::make_shared<const std::vector<detail::jinja::Stmt>>(parser.parse_template());
        return result;
    }

    // Renders as transformers' apply_chat_template does. raise_exception('msg') -> simnpo::Error "WHERE: msg".
    std::string render(std::span<const ChatMessage> messages, const ChatRenderOptions& options) const {
        using detail::jinja::Value;
        std::vector<Value> list;
        list.reserve(messages.size());
        for (const auto& message : messages)
            list.push_back(Value::make_dict(
                {{"role", Value::make_string(message.role)}, {"content", Value::make_string(message.content)}}));
        std::map<std::string, Value> context;
        context["messages"] = Value::make_sequence(std::move(list));
        context["bos_token"] = Value::make_string(options.bos_token);
        context["eos_token"] = Value::make_string(options.eos_token);
        context["add_generation_prompt"] = Value::make_bool(options.add_generation_prompt);
        detail::jinja::Renderer renderer(where_, std::move(context));
        try {
            return renderer.run(*body_);
        } catch (const detail::jinja::RaisedError& raised) {
            simnpo::fail(where_, ": ", raised.message);
        }
    }

    const std::string& source() const { return source_; }

private:
    ChatTemplate() = default;

    std::string source_;
    std::string where_;
    std::shared_ptr<const std::vector<detail::jinja::Stmt>> body_;
};

}  // namespace simnpo::tokenizer
