#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include "support/temp_dir.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

BOOST_AUTO_TEST_SUITE(test_safetensors)

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
using simnpo::model::SafetensorsFile;
using simnpo::model::SafetensorsTensor;
using simnpo::model::WriteTensor;

namespace {

const std::string where = "dir/weights.safetensors";

// A safetensors file: 8-byte little-endian header length, header, data.
std::string build(const std::string& header, const std::string& data = "") {
    std::string bytes(8, '\0');
    const std::uint64_t size = header.size();
    std::memcpy(bytes.data(), &size, 8);
    return bytes + header + data;
}

// A header object from "name":{...} entries.
std::string object(std::initializer_list<std::string> entries) {
    std::string text = "{";
    for (const auto& entry : entries) {
        if (text.size() > 1) text += ',';
        text += entry;
    }
    return text + '}';
}

template <class T>
std::string raw(const std::vector<T>& values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Parsing `bytes` throws an Error whose one-line message names the file and contains `part`.
void expect_error(const std::string& bytes, const std::string& part) {
    BOOST_TEST_CONTEXT("expecting '" << part << "'") {
        BOOST_CHECK_EXCEPTION(SafetensorsFile::parse(bytes, where), simnpo::Error, [&](const simnpo::Error& e) {
            const std::string message = e.what();
            BOOST_TEST_MESSAGE(message);
            return message.starts_with(where + ": ") && message.find(part) != std::string::npos &&
                   message.find('\n') == std::string::npos;
        });
    }
}

std::string f32_entry(const std::string& name, const std::string& shape, std::size_t begin, std::size_t end) {
    return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) +
           "," + std::to_string(end) + "]}";
}

template <class Scalar>
std::vector<Scalar> read_all(const SafetensorsFile& file, const std::string& name) {
    const SafetensorsTensor* tensor = file.find(name);
    BOOST_REQUIRE(tensor != nullptr);
    std::size_t count = 1;
    for (const auto extent : tensor->shape) count *= static_cast<std::size_t>(extent);
    std::vector<Scalar> values(count);
    file.read(*tensor, std::span<Scalar>(values));
    return values;
}


}  // namespace

BOOST_AUTO_TEST_CASE(truncated_file) {
    expect_error("", "too short");
    expect_error(std::string(7, '\0'), "too short");
}

BOOST_AUTO_TEST_CASE(header_length) {
    std::string bytes = build("{}");
    const std::uint64_t longer = 3;
    std::memcpy(bytes.data(), &longer, 8);
    expect_error(bytes, "runs past the end of the file");
    const std::uint64_t absurd = std::numeric_limits<std::uint64_t>::max();
    std::memcpy(bytes.data(), &absurd, 8);
    expect_error(bytes, "exceeds the limit");
    const std::uint64_t just_over = SafetensorsFile::max_header_bytes + 1;
    std::memcpy(bytes.data(), &just_over, 8);
    expect_error(bytes, "exceeds the limit");
}

BOOST_AUTO_TEST_CASE(header_not_json_or_not_object) {
    expect_error(build("{\"a\":"), "not valid JSON");
    expect_error(build(""), "not valid JSON");
    expect_error(build("{\"a\":1} x"), "not valid JSON");
    expect_error(build("{\"a\":1e999}"), "not valid JSON");
    expect_error(build("[1,2]"), "not a JSON object");
    expect_error(build("\"text\""), "not a JSON object");
    expect_error(build("{\"__metadata__\":[1]}"), "'__metadata__' is not an object");
}

BOOST_AUTO_TEST_CASE(malformed_entries) {
    const std::string data(16, '\0');
    expect_error(build("{\"x\":5}", data), "entry 'x' is not an object");
    expect_error(build("{\"x\":{\"shape\":[4],\"data_offsets\":[0,16]}}", data), "'dtype' is missing");
    expect_error(build("{\"x\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}", data), "'dtype' is missing");
    expect_error(build("{\"x\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}}", data),
                 "unknown dtype 'Q7'");
    expect_error(build("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", data), "'shape' is missing");
    expect_error(build("{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", data), "'shape' is missing");
    expect_error(build("{\"x\":{\"dtype\":\"F32\",\"shape\":[4]}}", data), "'data_offsets' must be");
}

BOOST_AUTO_TEST_CASE(bad_shape_entries) {
    const std::string data(16, '\0');
    expect_error(build(object({f32_entry("x", "[-4]", 0, 16)}), data), "non-negative integers");
    expect_error(build(object({f32_entry("x", "[4.0]", 0, 16)}), data), "non-negative integers");
    expect_error(build(object({f32_entry("x", "[\"4\"]", 0, 16)}), data), "non-negative integers");
    expect_error(build(object({f32_entry("x", "[true]", 0, 16)}), data), "non-negative integers");
    expect_error(build(object({f32_entry("x", "[4294967296,4294967296]", 0, 16)}), data), "overflows");
    expect_error(build(object({f32_entry("x", "[9223372036854775808]", 0, 16)}), data), "overflows");
    expect_error(build(object({f32_entry("x", "[18446744073709551615]", 0, 16)}), data), "overflows");
}

BOOST_AUTO_TEST_CASE(bad_data_offsets) {
    const std::string data(16, '\0');
    const auto entry = [](const std::string& offsets) {
        return "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + offsets + "}}";
    };
    expect_error(build(entry("[0]"), data), "'data_offsets' must be two");
    expect_error(build(entry("[0,8,16]"), data), "'data_offsets' must be two");
    expect_error(build(entry("[-8,0]"), data), "'data_offsets' must be two");
    expect_error(build(entry("[0.0,8]"), data), "'data_offsets' must be two");
    expect_error(build(entry("{\"a\":0,\"b\":8}"), data), "'data_offsets' must be two");
    expect_error(build(entry("[16,8]"), data), "not ascending");
    expect_error(build(entry("[12,20]"), data), "run past the data section (16 bytes)");
    expect_error(build(entry("[0,18446744073709551615]"), data), "run past the data section");
}

BOOST_AUTO_TEST_CASE(byte_size_must_match_shape_and_dtype) {
    const std::string data(16, '\0');
    expect_error(build(object({f32_entry("x", "[3]", 0, 16)}), data), "holds 16 bytes but shape [3] of F32 needs 12");
    expect_error(build("{\"x\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", data),
                 "holds 16 bytes but shape [2,2] of F16 needs 8");
    // A truncated file: the header promises more data than there is.
    expect_error(build(object({f32_entry("x", "[4]", 0, 16)}), std::string(12, '\0')), "run past the data section");
}

BOOST_AUTO_TEST_CASE(overlapping_tensors) {
    const std::string data(16, '\0');
    expect_error(build(object({f32_entry("a", "[3]", 0, 12), f32_entry("b", "[2]", 8, 16)}), data),
                 "tensors 'a' and 'b' overlap");
    // 'big' covers 'small' entirely; the empty 'tail' right after it overlaps nothing.
    expect_error(build(object({f32_entry("big", "[4]", 0, 16), f32_entry("small", "[1]", 4, 8),
                               f32_entry("tail", "[0]", 16, 16)}),
                       data),
                 "tensors 'big' and 'small' overlap");
    expect_error(build(object({f32_entry("a", "[4]", 0, 16), f32_entry("b", "[1]", 12, 16)}), data),
                 "overlap");
}

BOOST_AUTO_TEST_CASE(adjacent_and_empty_tensors_are_fine) {
    const std::vector<float> values{1, 2, 3, 4};
    // Written out of data order on purpose; the empty tensor sits inside 'a'.
    const auto file = SafetensorsFile::parse(
        build(object({f32_entry("b", "[1]", 12, 16), f32_entry("a", "[3]", 0, 12),
                      f32_entry("empty", "[0,5]", 4, 4)}) +
                  "   ",
              raw(values)),
        where);
    BOOST_TEST_REQUIRE(file.tensors().size() == 3u);
    BOOST_TEST(file.tensors()[0].name == "a");
    BOOST_TEST(file.tensors()[2].name == "b");
    BOOST_TEST(read_all<float>(file, "a") == std::vector<float>({1, 2, 3}), boost::test_tools::per_element());
    BOOST_TEST(read_all<float>(file, "b") == std::vector<float>({4}), boost::test_tools::per_element());
    BOOST_TEST(read_all<float>(file, "empty").empty());
    BOOST_TEST(file.find("missing") == nullptr);
    BOOST_TEST(file.metadata().is_object());
    BOOST_TEST(file.metadata().empty());
}

BOOST_AUTO_TEST_CASE(metadata_is_read) {
    const auto file = SafetensorsFile::parse(
        build("{\"__metadata__\":{\"format\":\"pt\",\"step\":\"7\"}," + f32_entry("w", "[1]", 0, 4) + "}",
              raw(std::vector<float>{5})),
        where);
    BOOST_TEST(file.metadata().at("format") == "pt");
    BOOST_TEST(file.metadata().at("step") == "7");
    BOOST_TEST(file.tensors().size() == 1u);
    BOOST_TEST(file.find("__metadata__") == nullptr);
}

BOOST_AUTO_TEST_CASE(f16_decoding) {
    const std::vector<std::uint16_t> bits{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0xFC00, 0x8000,
                                          0x03FF, 0x0400, 0x3555, 0x8001, 0x7E00, 0x7C01};
    const std::vector<double> expected{1.0,
                                       -2.0,
                                       65504.0,
                                       std::ldexp(1.0, -24),
                                       std::numeric_limits<double>::infinity(),
                                       -std::numeric_limits<double>::infinity(),
                                       -0.0,
                                       std::ldexp(1023.0, -24),
                                       std::ldexp(1.0, -14),
                                       0.333251953125,
                                       -std::ldexp(1.0, -24)};
    const auto file = SafetensorsFile::parse(
        build("{\"h\":{\"dtype\":\"F16\",\"shape\":[13],\"data_offsets\":[0,26]}}", raw(bits)), where);
    const auto as_float = read_all<float>(file, "h");
    const auto as_double = read_all<double>(file, "h");
    for (std::size_t i = 0; i < expected.size(); ++i) {
        BOOST_TEST_CONTEXT("element " << i) {
            BOOST_TEST(as_double[i] == expected[i]);
            BOOST_TEST(as_float[i] == static_cast<float>(expected[i]));
            BOOST_TEST(std::signbit(as_double[i]) == std::signbit(expected[i]));
        }
    }
    // NaNs stay NaN, quiet or signalling, with their payload in the top mantissa bits.
    BOOST_TEST(std::isnan(as_float[11]));
    BOOST_TEST(std::isnan(as_float[12]));
    BOOST_TEST(std::bit_cast<std::uint32_t>(as_float[11]) == 0x7fc00000u);
    BOOST_TEST(std::bit_cast<std::uint32_t>(as_float[12]) == 0x7f802000u);
}

BOOST_AUTO_TEST_CASE(f16_every_value_matches_a_reference_formula) {
    // Independent check of all finite halves: (-1)^s · 2^(e-15) · (1 + m/1024), or m · 2^-24 for e = 0.
    std::vector<std::uint16_t> bits(65536);
    for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<std::uint16_t>(i);
    const auto file = SafetensorsFile::parse(
        build("{\"all\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]}}", raw(bits)), where);
    const auto values = read_all<float>(file, "all");
    int mismatches = 0;
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const std::uint32_t e = (i >> 10) & 0x1f, m = i & 0x3ff;
        const double sign = (i & 0x8000) ? -1.0 : 1.0;
        if (e == 0x1f) {
            mismatches += m == 0 ? !(std::isinf(values[i]) && std::signbit(values[i]) == (sign < 0))
                                 : !std::isnan(values[i]);
            continue;
        }
        const double magnitude = e == 0 ? std::ldexp(static_cast<double>(m), -24)
                                        : std::ldexp(1.0 + static_cast<double>(m) / 1024.0, static_cast<int>(e) - 15);
        mismatches += static_cast<double>(values[i]) != sign * magnitude ||
                      std::signbit(values[i]) != (sign < 0);
    }
    BOOST_TEST(mismatches == 0);
}

BOOST_AUTO_TEST_CASE(bf16_decoding) {
    const std::vector<std::uint16_t> bits{0x3F80, 0x4049, 0xC000, 0x7F80, 0x0001, 0x8000, 0x7FC0};
    const auto file = SafetensorsFile::parse(
        build("{\"b\":{\"dtype\":\"BF16\",\"shape\":[7],\"data_offsets\":[0,14]}}", raw(bits)), where);
    const auto values = read_all<double>(file, "b");
    BOOST_TEST(values[0] == 1.0);
    BOOST_TEST(values[1] == 3.140625);
    BOOST_TEST(values[2] == -2.0);
    BOOST_TEST(values[3] == std::numeric_limits<double>::infinity());
    BOOST_TEST(values[4] == std::ldexp(1.0, -133));
    BOOST_TEST((values[5] == 0.0 && std::signbit(values[5])));
    BOOST_TEST(std::isnan(values[6]));
}

BOOST_AUTO_TEST_CASE(f64_and_f32_conversion) {
    const std::vector<double> doubles{1.5, -0.1, 1e300};
    const std::vector<float> floats{0.1f, -3.0f};
    const auto file = SafetensorsFile::parse(
        build("{\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}," + f32_entry("f", "[2]", 24, 32) + "}",
              raw(doubles) + raw(floats)),
        where);
    BOOST_TEST(read_all<double>(file, "d") == doubles, boost::test_tools::per_element());
    const auto narrowed = read_all<float>(file, "d");
    BOOST_TEST(narrowed[1] == static_cast<float>(-0.1));
    BOOST_TEST(std::isinf(narrowed[2]));
    BOOST_TEST(read_all<float>(file, "f") == floats, boost::test_tools::per_element());
    const auto widened = read_all<double>(file, "f");
    BOOST_TEST(widened[0] == static_cast<double>(0.1f));
}

BOOST_AUTO_TEST_CASE(unsupported_dtype_and_wrong_output_size) {
    const auto file = SafetensorsFile::parse(
        build("{\"x\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}," + f32_entry("f", "[2]", 16, 24) + "}",
              std::string(24, '\0')),
        where);
    std::vector<float> out(2);
    BOOST_CHECK_EXCEPTION(file.read(*file.find("x"), std::span<float>(out)), simnpo::Error,
                          [](const simnpo::Error& e) {
                              return std::string(e.what()) ==
                                     where + ": unsupported dtype 'I64' for tensor 'x' (F32, F16, BF16 and F64 can be "
                                             "read)";
                          });
    std::vector<float> wrong(3);
    BOOST_CHECK_EXCEPTION(file.read(*file.find("f"), std::span<float>(wrong)), simnpo::Error,
                          [](const simnpo::Error& e) { return std::string(e.what()).starts_with(where + ": "); });
}

BOOST_AUTO_TEST_CASE(write_parse_read_round_trip) {
    TempDir dir;
    const fs::path path = dir.path / "out.safetensors";
    const std::vector<float> a{1.0f, -0.0f, std::numeric_limits<float>::denorm_min(), 3.0e38f, -7.25f, 0.1f};
    const std::vector<float> b{std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(), 42.0f};
    const std::vector<float> scalar{2.5f};
    // Names in non-alphabetical order: offsets must follow the given order, not the header's key order.
    simnpo::model::write_safetensors(path, {{"zeta", {2, 3}, a}, {"alpha", {3}, b}, {"empty", {0, 4}, {}},
                                            {"s", {}, scalar}});
    const std::string bytes = simnpo::read_file(path);

    std::uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data(), 8);
    BOOST_TEST(header_size % 8 == 0u);
    BOOST_TEST(bytes.size() == 8 + header_size + (6 + 3 + 1) * 4);
    const std::string header = bytes.substr(8, header_size);
    BOOST_TEST(header.front() == '{');
    BOOST_TEST(header.find_last_not_of(' ') == header.rfind('}'));

    const auto file = SafetensorsFile::parse(bytes, path.string());
    BOOST_TEST_REQUIRE(file.tensors().size() == 4u);
    const SafetensorsTensor* zeta = file.find("zeta");
    const SafetensorsTensor* alpha = file.find("alpha");
    const SafetensorsTensor* s = file.find("s");
    BOOST_TEST_REQUIRE((zeta && alpha && s && file.find("empty")));
    BOOST_TEST(zeta->dtype == "F32");
    BOOST_TEST(zeta->shape == std::vector<std::int64_t>({2, 3}), boost::test_tools::per_element());
    BOOST_TEST(s->shape.empty());
    BOOST_TEST(file.find("empty")->shape == std::vector<std::int64_t>({0, 4}), boost::test_tools::per_element());
    BOOST_TEST(zeta->begin == 0u);
    BOOST_TEST(zeta->end == 24u);
    BOOST_TEST(alpha->begin == 24u);
    BOOST_TEST(alpha->end == 36u);
    BOOST_TEST(s->begin == 36u);

    const auto bits = [](const std::vector<float>& values) {
        std::vector<std::uint32_t> out;
        for (const float v : values) out.push_back(std::bit_cast<std::uint32_t>(v));
        return out;
    };
    BOOST_TEST(bits(read_all<float>(file, "zeta")) == bits(a), boost::test_tools::per_element());
    BOOST_TEST(bits(read_all<float>(file, "alpha")) == bits(b), boost::test_tools::per_element());
    BOOST_TEST(read_all<float>(file, "s") == scalar, boost::test_tools::per_element());
    BOOST_TEST(read_all<float>(file, "empty").empty());

    // Overwriting leaves only the file itself: the temporary was renamed into place.
    simnpo::model::write_safetensors(path, {{"zeta", {6}, a}});
    BOOST_TEST(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
    BOOST_TEST(SafetensorsFile::parse(simnpo::read_file(path), path.string()).tensors().size() == 1u);
}

BOOST_AUTO_TEST_CASE(write_rejects_bad_input) {
    TempDir dir;
    const fs::path path = dir.path / "bad.safetensors";
    const std::vector<float> values{1, 2, 3};
    const auto names_file = [&](const simnpo::Error& e) {
        return std::string(e.what()).starts_with(path.string() + ": ");
    };
    BOOST_CHECK_EXCEPTION(simnpo::model::write_safetensors(path, {{"x", {2, 2}, values}}), simnpo::Error, names_file);
    BOOST_CHECK_EXCEPTION(simnpo::model::write_safetensors(path, {{"x", {3}, values}, {"x", {3}, values}}),
                          simnpo::Error, names_file);
    BOOST_CHECK_EXCEPTION(simnpo::model::write_safetensors(path, {{"__metadata__", {3}, values}}), simnpo::Error,
                          names_file);
    BOOST_CHECK_EXCEPTION(simnpo::model::write_safetensors(path, {{"x", {-3}, values}}), simnpo::Error, names_file);
    BOOST_TEST(!fs::exists(path));
}

BOOST_AUTO_TEST_SUITE_END()  // test_safetensors
