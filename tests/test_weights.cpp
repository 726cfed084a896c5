#include <boost/test/unit_test.hpp>

#include <simnpo.hpp>

#include "support/temp_dir.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

BOOST_AUTO_TEST_SUITE(test_weights)

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
using simnpo::model::SafetensorsFile;
using simnpo::model::WeightFiles;
using simnpo::model::WeightsWriteOptions;
using simnpo::model::WriteTensor;

namespace {

const std::string index_name = "model.safetensors.index.json";

std::vector<float> from_bits(std::initializer_list<std::uint32_t> bits) {
    std::vector<float> values;
    for (const auto b : bits) values.push_back(std::bit_cast<float>(b));
    return values;
}

std::vector<std::uint32_t> bits_of(const std::vector<float>& values) {
    std::vector<std::uint32_t> bits;
    for (const float v : values) bits.push_back(std::bit_cast<std::uint32_t>(v));
    return bits;
}

std::vector<float> sequence(std::size_t count, float start) {
    std::vector<float> values(count);
    for (std::size_t i = 0; i < count; ++i) values[i] = start + 0.37f * static_cast<float>(i);
    return values;
}

std::vector<float> read_all(const WeightFiles& weights, const std::string& name) {
    const auto* tensor = weights.find(name);
    BOOST_REQUIRE_MESSAGE(tensor != nullptr, "no tensor " << name);
    std::size_t count = 1;
    for (const auto extent : tensor->shape) count *= static_cast<std::size_t>(extent);
    std::vector<float> values(count);
    weights.read(name, std::span<float>(values));
    return values;
}

void save(const fs::path& dir, const std::vector<WriteTensor>& tensors, const WeightsWriteOptions& options = {}) {
    simnpo::DirectoryWriter out(dir);
    simnpo::model::write_weights(out, tensors, options);
    out.commit();
}

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
    return names;
}

// `call` throws an Error whose one-line message starts with `file` and contains `part`.
template <class Call>
void expect_error(Call call, const std::string& file, const std::string& part) {
    BOOST_TEST_CONTEXT("expecting '" << file << ": ..." << part << "'") {
        BOOST_CHECK_EXCEPTION(call(), simnpo::Error, [&](const simnpo::Error& e) {
            const std::string message = e.what();
            BOOST_TEST_MESSAGE(message);
            return message.starts_with(file + ": ") && message.find(part) != std::string::npos &&
                   message.find('\n') == std::string::npos;
        });
    }
}

// Opening `dir` fails naming `file` (a name inside `dir`, or "" for `dir` itself).
void expect_open_error(const TempDir& dir, const std::string& file, const std::string& part) {
    expect_error([&] { WeightFiles::open(dir.path); }, file.empty() ? dir.path.string() : dir.file(file), part);
}

}  // namespace

BOOST_AUTO_TEST_CASE(bfloat16_rounding_by_hand) {
    using simnpo::float_to_bf16;
    const std::pair<std::uint32_t, std::uint16_t> cases[] = {
        {0x3F800000, 0x3F80},  // 1.0: exact
        {0x3F807FFF, 0x3F80},  // just below half an ulp: down
        {0x3F808000, 0x3F80},  // a tie, even below: down
        {0x3F808001, 0x3F81},  // just above half: up
        {0x3F818000, 0x3F82},  // a tie, odd below: up to even
        {0x40490FDB, 0x4049},  // pi
        {0x80000000, 0x8000},  // -0
        {0xBFC00000, 0xBFC0},  // -1.5
        {0x7F800000, 0x7F80},  // inf
        {0xFF800000, 0xFF80},  // -inf
        {0x7F7F7FFF, 0x7F7F},  // below half an ulp above bfloat16's max: its max
        {0x7F7E8000, 0x7F7E},  // a tie below the max, even: down
        {0x7F7F8000, 0x7F80},  // a tie above the max, odd: up, to inf
        {0x7F7FFFFF, 0x7F80},  // float's max overflows to inf
        {0xFF7FFFFF, 0xFF80},  // and its negative to -inf
        {0x00000001, 0x0000},  // the smallest subnormal: to 0
        {0x00008000, 0x0000},  // a subnormal tie, even: down
        {0x00018000, 0x0002},  // a subnormal tie, odd: up
        {0x00008001, 0x0001},
        {0x807FFFFF, 0x8080},  // the largest negative subnormal rounds up to -2^-126
        {0x7FC00000, 0x7FC0},  // NaNs: PyTorch's quiet NaN, whatever the sign or payload
        {0xFFC00000, 0x7FC0},
        {0x7F800001, 0x7FC0},  // a payload only in the low bits would truncate to inf
        {0xFFFFFFFF, 0x7FC0},
    };
    for (const auto& [in, out] : cases)
        BOOST_TEST_CONTEXT("0x" << std::hex << in) { BOOST_TEST(float_to_bf16(std::bit_cast<float>(in)) == out); }
}

BOOST_AUTO_TEST_CASE(bfloat16_rounding_matches_a_reference_formula) {
    // Independent check: of the two bfloat16 values around x, the nearer (in
    // double), ties to the even one; past the largest, what IEEE gives (inf).
    using simnpo::float_to_bf16;
    std::mt19937 rng(7);
    int mismatches = 0;
    for (int i = 0; i < 1'000'000; ++i) {
        const auto bits = static_cast<std::uint32_t>(rng());
        const float x = std::bit_cast<float>(bits);
        if (std::isnan(x) || std::isinf(x)) continue;
        const std::uint32_t below = bits & 0xFFFF0000u, above = below + 0x10000u;  // same sign, toward ±inf
        const double low = std::bit_cast<float>(below);
        const double high = (above & 0x7FFFFFFFu) >= 0x7F800000u
                                ? std::copysign(std::ldexp(1.0, 128), static_cast<double>(x))  // rounds to ±inf
                                : static_cast<double>(std::bit_cast<float>(above));
        const double d_low = std::abs(static_cast<double>(x) - low), d_high = std::abs(high - static_cast<double>(x));
        const bool up = d_high < d_low || (d_high == d_low && ((below >> 16) & 1u) != 0);
        mismatches += float_to_bf16(x) != static_cast<std::uint16_t>((up ? above : below) >> 16);
    }
    BOOST_TEST(mismatches == 0);
}

BOOST_AUTO_TEST_CASE(safetensors_bytes_writes_bf16) {
    TempDir dir;
    const auto values = from_bits({0x3F808000, 0x3F818000, 0x7F7FFFFF, 0xFFC00000, 0x80000000});
    const auto f32 = sequence(3, 1.0f);
    simnpo::model::write_safetensors(dir.path / "w.safetensors", {{"b", {5}, values, "BF16"}, {"f", {3}, f32}});
    const auto file = SafetensorsFile::open(dir.path / "w.safetensors");
    const auto* b = file.find("b");
    BOOST_TEST_REQUIRE(b != nullptr);
    BOOST_TEST(b->dtype == "BF16");
    BOOST_TEST(b->end - b->begin == 10u);
    BOOST_TEST(file.find("f")->dtype == "F32");
    std::vector<float> back(5);
    file.read(*b, std::span<float>(back));
    BOOST_TEST(bits_of(back) == std::vector<std::uint32_t>({0x3F800000, 0x3F820000, 0x7F800000, 0x7FC00000, 0x80000000}),
               boost::test_tools::per_element());
    expect_error([&] { simnpo::model::write_safetensors(dir.path / "x.safetensors", {{"b", {5}, values, "F16"}}); },
                 dir.file("x.safetensors"), "cannot write dtype 'F16'");
}

BOOST_AUTO_TEST_CASE(open_maps_and_reads_like_parse) {
    TempDir dir;
    const auto a = from_bits({0x3F800000, 0x80000000, 0x00000001, 0x7F7FFFFF, 0xFF800000, 0x7FC00001});
    const fs::path path = dir.path / "w.safetensors";
    simnpo::model::write_safetensors(path, {{"a", {2, 3}, a}, {"s", {}, std::span<const float>(a).first(1)}});
    auto file = SafetensorsFile::open(path);
    BOOST_TEST(file.where() == path.string());
    const auto moved = std::move(file);  // the mapping moves with it
    std::vector<float> back(6);
    moved.read(*moved.find("a"), std::span<float>(back));
    BOOST_TEST(bits_of(back) == bits_of(a), boost::test_tools::per_element());
    std::vector<double> wide(6);
    moved.read(*moved.find("a"), std::span<double>(wide));
    BOOST_TEST(wide[0] == 1.0);
    BOOST_TEST(moved.tensors().size() == 2u);

    // parse() of the same bytes, moved too (a small string's bytes move with it).
    auto parsed = SafetensorsFile::parse(simnpo::read_file(path), "mem");
    const auto parsed_moved = std::move(parsed);
    std::vector<float> again(6);
    parsed_moved.read(*parsed_moved.find("a"), std::span<float>(again));
    BOOST_TEST(bits_of(again) == bits_of(a), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(open_errors_name_the_file) {
    TempDir dir;
    const auto open = [](const std::string& path) { return [path] { SafetensorsFile::open(path); }; };
    expect_error(open(dir.file("missing.safetensors")), dir.file("missing.safetensors"),
                 "cannot open for reading: No such file or directory");
    dir.write("empty.safetensors", "");
    expect_error(open(dir.file("empty.safetensors")), dir.file("empty.safetensors"), "file of 0 bytes is too short");
    dir.write("short.safetensors", "abc");
    expect_error(open(dir.file("short.safetensors")), dir.file("short.safetensors"), "file of 3 bytes is too short");
    expect_error(open(dir.path.string()), dir.path.string(), "is a directory");
    BOOST_TEST_REQUIRE(::mkfifo(dir.file("pipe").c_str(), 0644) == 0);
    expect_error(open(dir.file("pipe")), dir.file("pipe"), "is not a regular file");

    // A file cut short: the header promises data that is not there.
    const auto values = sequence(8, 0.0f);
    simnpo::model::write_safetensors(dir.path / "whole.safetensors", {{"w", {8}, values}});
    const std::string bytes = simnpo::read_file(dir.path / "whole.safetensors");
    dir.write("cut.safetensors", bytes.substr(0, bytes.size() - 4));
    expect_error(open(dir.file("cut.safetensors")), dir.file("cut.safetensors"), "run past the data section");
    dir.write("cut_header.safetensors", bytes.substr(0, 20));
    expect_error(open(dir.file("cut_header.safetensors")), dir.file("cut_header.safetensors"),
                 "runs past the end of the file");
}

BOOST_AUTO_TEST_CASE(single_file_round_trip) {
    TempDir dir;
    const auto a = from_bits({0x3F800000, 0x80000000, 0x00000001, 0x7F7FFFFF, 0xFF800000, 0x3DCCCCCD});
    const auto b = sequence(5, -2.0f);
    save(dir.path, {{"zeta", {2, 3}, a}, {"alpha", {5}, b}, {"empty", {0}, {}}});
    BOOST_TEST((listing(dir.path) == std::set<std::string>{"model.safetensors"}));
    const auto weights = WeightFiles::open(dir.path);
    BOOST_TEST(weights.where() == dir.file("model.safetensors"));
    BOOST_TEST(weights.where("alpha") == dir.file("model.safetensors"));
    BOOST_TEST_REQUIRE(weights.tensors().size() == 3u);
    BOOST_TEST(weights.tensors()[0].name == "zeta");  // data order, as given
    BOOST_TEST(weights.tensors()[0].file == 0u);
    BOOST_TEST(weights.find("zeta")->shape == std::vector<std::int64_t>({2, 3}), boost::test_tools::per_element());
    BOOST_TEST(bits_of(read_all(weights, "zeta")) == bits_of(a), boost::test_tools::per_element());
    BOOST_TEST(bits_of(read_all(weights, "alpha")) == bits_of(b), boost::test_tools::per_element());
    BOOST_TEST(read_all(weights, "empty").empty());
    BOOST_TEST(weights.find("missing") == nullptr);
    std::vector<float> out(1);
    expect_error([&] { weights.read("missing", std::span<float>(out)); }, dir.file("model.safetensors"),
                 "no tensor \"missing\"");

    // BF16: each value comes back as its rounding.
    save(dir.path, {{"zeta", {2, 3}, a}, {"alpha", {5}, b}}, {.dtype = "BF16"});
    const auto bf16 = WeightFiles::open(dir.path);
    BOOST_TEST(bf16.find("zeta")->dtype == "BF16");
    std::vector<std::uint32_t> rounded;
    for (const float v : a) rounded.push_back(std::uint32_t{simnpo::float_to_bf16(v)} << 16);
    BOOST_TEST(bits_of(read_all(bf16, "zeta")) == rounded, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(three_shards_names_and_index) {
    TempDir dir;
    const auto four = sequence(4, 1.0f), two = sequence(2, 9.0f);
    // 16 + 16 | 16 + 16 | 8 bytes under a limit of 32: the third tensor would pass it.
    save(dir.path, {{"b", {4}, four}, {"a", {2, 2}, four}, {"d", {4}, four}, {"c", {4}, four}, {"e", {2}, two}},
         {.max_shard_bytes = 32});
    const std::string s1 = "model-00001-of-00003.safetensors", s2 = "model-00002-of-00003.safetensors",
                      s3 = "model-00003-of-00003.safetensors";
    BOOST_TEST((listing(dir.path) == std::set<std::string>{s1, s2, s3, index_name}));
    BOOST_TEST(simnpo::read_file(dir.path / index_name) ==
               "{\n  \"metadata\": {\n    \"total_size\": 72\n  },\n  \"weight_map\": {\n"
               "    \"a\": \"" + s1 + "\",\n    \"b\": \"" + s1 + "\",\n    \"c\": \"" + s2 + "\",\n"
               "    \"d\": \"" + s2 + "\",\n    \"e\": \"" + s3 + "\"\n  }\n}\n");
    const auto first = SafetensorsFile::open(dir.path / s1);
    BOOST_TEST_REQUIRE(first.tensors().size() == 2u);
    BOOST_TEST(first.tensors()[0].name == "b");  // the given order within a shard
    BOOST_TEST(SafetensorsFile::open(dir.path / s3).tensors().size() == 1u);

    const auto weights = WeightFiles::open(dir.path);
    BOOST_TEST(weights.where() == dir.file(index_name));
    BOOST_TEST(weights.where("c") == dir.file(s2));
    BOOST_TEST(weights.where("nothing") == dir.file(index_name));
    std::vector<std::string> order;
    for (const auto& tensor : weights.tensors()) order.push_back(tensor.name);
    BOOST_TEST(order == std::vector<std::string>({"b", "a", "d", "c", "e"}), boost::test_tools::per_element());
    BOOST_TEST(weights.find("e")->file == 2u);
    BOOST_TEST(bits_of(read_all(weights, "a")) == bits_of(four), boost::test_tools::per_element());
    BOOST_TEST(bits_of(read_all(weights, "e")) == bits_of(two), boost::test_tools::per_element());

    // A tensor over the limit gets a shard of its own; BF16 halves the sizes.
    TempDir big;
    std::vector<float> sixteen(16);
    for (std::size_t i = 0; i < sixteen.size(); ++i) sixteen[i] = static_cast<float>(i) - 8.5f;  // exact in BF16
    save(big.path, {{"x", {2}, two}, {"huge", {16}, sixteen}, {"y", {2}, two}}, {.dtype = "BF16", .max_shard_bytes = 8});
    const auto shards = WeightFiles::open(big.path);
    BOOST_TEST(shards.where("x") == big.file(s1));
    BOOST_TEST(shards.where("huge") == big.file(s2));
    BOOST_TEST(shards.where("y") == big.file(s3));
    BOOST_TEST(simnpo::read_json_file(big.path / index_name).at("metadata").at("total_size") == 40);
    BOOST_TEST(bits_of(read_all(shards, "huge")) == bits_of(sixteen), boost::test_tools::per_element());  // exact in BF16
}

BOOST_AUTO_TEST_CASE(sharded_round_trip_is_bit_exact) {
    TempDir dir;
    std::mt19937 rng(3);
    std::vector<std::vector<float>> values;
    std::vector<WriteTensor> tensors;
    for (int i = 0; i < 12; ++i) {
        values.emplace_back(static_cast<std::size_t>(10 + 7 * i));
        for (auto& v : values.back()) v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()) & 0xBFFFFFFFu);  // finite: exponent below 255
    }
    for (int i = 0; i < 12; ++i)
        tensors.push_back({"layers." + std::to_string(i) + ".w", {static_cast<std::int64_t>(values[i].size())}, values[i]});
    save(dir.path, tensors, {.max_shard_bytes = 300});
    const auto weights = WeightFiles::open(dir.path);
    BOOST_TEST(listing(dir.path).size() > 3u);
    for (int i = 0; i < 12; ++i)
        BOOST_TEST(bits_of(read_all(weights, tensors[i].name)) == bits_of(values[i]), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(write_weights_rejects_bad_input) {
    TempDir dir;
    const auto four = sequence(4, 1.0f);
    const fs::path out = dir.path / "model";
    const auto write = [&](std::vector<WriteTensor> tensors, WeightsWriteOptions options = {}) {
        return [=] { save(out, tensors, options); };
    };
    // The same name in two shards is caught before anything is written.
    expect_error(write({{"a", {4}, four}, {"a", {4}, four}}, {.max_shard_bytes = 16}), out.string(),
                 "tensor name \"a\" is used twice");
    expect_error(write({{"a", {4}, four}}, {.dtype = "F16"}), out.string(), "cannot write dtype 'F16'");
    expect_error(write({{"a", {3}, four}}), out.string(), "has shape [3] but 4 values");
    expect_error(write({{"__metadata__", {4}, four}}), out.string(), "reserved");
    BOOST_TEST(!fs::exists(out));
}

BOOST_AUTO_TEST_CASE(directory_writer_remove_drops_carried_entries) {
    TempDir dir;
    const fs::path model = dir.path / "m";
    {
        simnpo::DirectoryWriter out(model);
        out.write("a.txt", "old a");
        out.write("b.txt", "old b");
        out.write("c.txt", "old c");
        out.commit();
    }
    simnpo::DirectoryWriter out(model);
    out.remove("a.txt");
    out.remove("b.txt");
    out.write("b.txt", "new b");  // removed and written: the new one is kept
    out.remove("absent.txt");
    out.commit();
    BOOST_TEST((listing(model) == std::set<std::string>{"b.txt", "c.txt"}));
    BOOST_TEST(simnpo::read_file(model / "b.txt") == "new b");
    BOOST_TEST(simnpo::read_file(model / "c.txt") == "old c");
}

BOOST_AUTO_TEST_CASE(resave_leaves_no_stale_weights) {
    TempDir dir;
    const auto four = sequence(4, 1.0f);
    const std::vector<WriteTensor> tensors{{"a", {4}, four}, {"b", {4}, four}, {"c", {4}, four}};
    save(dir.path, tensors, {.max_shard_bytes = 16});
    dir.write("config.json", "{}");
    dir.write("model-notes.safetensors.txt", "kept");  // not a weight file's name
    BOOST_TEST(listing(dir.path).size() == 6u);

    save(dir.path, tensors, {.max_shard_bytes = 32});  // 2 shards
    BOOST_TEST((listing(dir.path) == std::set<std::string>{"config.json", "model-notes.safetensors.txt", index_name,
                                                            "model-00001-of-00002.safetensors",
                                                            "model-00002-of-00002.safetensors"}));
    BOOST_TEST(WeightFiles::open(dir.path).tensors().size() == 3u);

    save(dir.path, tensors);  // one file
    BOOST_TEST((listing(dir.path) ==
                std::set<std::string>{"config.json", "model-notes.safetensors.txt", "model.safetensors"}));
    BOOST_TEST(WeightFiles::open(dir.path).tensors().size() == 3u);

    save(dir.path, tensors, {.max_shard_bytes = 16});  // and back to shards: model.safetensors goes
    BOOST_TEST(!fs::exists(dir.path / "model.safetensors"));
    BOOST_TEST(WeightFiles::open(dir.path).where("c") == dir.file("model-00003-of-00003.safetensors"));
}

BOOST_AUTO_TEST_CASE(malformed_index_errors) {
    const auto four = sequence(4, 1.0f);
    const auto with_index = [&](const std::string& index) {
        auto dir = std::make_unique<TempDir>();
        simnpo::model::write_safetensors(dir->path / "s1.safetensors", {{"a", {4}, four}, {"b", {4}, four}});
        simnpo::model::write_safetensors(dir->path / "s2.safetensors", {{"c", {4}, four}});
        dir->write(index_name, index);
        return dir;
    };
    const auto index_error = [&](const std::string& index, const std::string& part) {
        const auto dir = with_index(index);
        expect_open_error(*dir, index_name, part);
    };
    index_error("{\"weight_map\": {", "not valid JSON");
    index_error("", "not valid JSON");
    index_error("[1, 2]", "is not a JSON object");
    index_error("{\"metadata\": {}}", "'weight_map' is missing or not an object");
    index_error("{\"weight_map\": [\"s1.safetensors\"]}", "'weight_map' is missing or not an object");
    index_error("{\"weight_map\": {}}", "'weight_map' names no tensors");
    index_error("{\"weight_map\": {\"a\": 1}}", "entry for tensor \"a\" is number, not a string");
    index_error("{\"weight_map\": {\"a\": [\"s1.safetensors\"]}}", "entry for tensor \"a\" is array, not a string");
    index_error("{\"weight_map\": {\"a\": \"s1.safetensors\", \"a\": \"s1.safetensors\"}}", "duplicate key \"a\"");
    for (const std::string shard : {"../s1.safetensors", "sub/s1.safetensors", "/tmp/s1.safetensors", "..", ".", ""})
        index_error("{\"weight_map\": {\"a\\nb\": \"" + shard + "\"}}",
                    "maps tensor \"a\\nb\" to \"" + shard + "\", which is not a file name inside the model directory");

    {  // a shard that is not there
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"z\": \"gone.safetensors\"}}");
        expect_open_error(*dir, "gone.safetensors", "not found (" + dir->file(index_name) + " names it as a shard)");
    }
    {  // a tensor mapped to a shard that does not hold it
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\", "
                                    "\"c\": \"s2.safetensors\", \"x\": \"s2.safetensors\"}}");
        expect_open_error(*dir, "s2.safetensors", "does not hold tensor \"x\", which " + dir->file(index_name) +
                                                      " maps to it");
    }
    {  // a tensor a shard holds that the index does not list
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"s2.safetensors\"}}");
        expect_open_error(*dir, "s1.safetensors", "holds tensor \"b\", which " + dir->file(index_name) +
                                                      " does not list");
    }
    {  // ... or maps to another shard
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\", "
                                    "\"c\": \"s2.safetensors\"}}");
        expect_open_error(*dir, "s1.safetensors", "holds tensor \"b\", which " + dir->file(index_name) +
                                                      " maps to s2.safetensors");
    }
    {  // the same tensor in two shards
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\", "
                                    "\"c\": \"s2.safetensors\"}}");
        simnpo::model::write_safetensors(dir->path / "s2.safetensors", {{"c", {4}, four}, {"a", {4}, four}});
        expect_open_error(*dir, "s2.safetensors", "holds tensor \"a\", which " + dir->file("s1.safetensors") +
                                                      " holds too");
    }
    {  // a shard that is not a safetensors file
        const auto dir = with_index("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\", "
                                    "\"c\": \"s2.safetensors\"}}");
        dir->write("s2.safetensors", "");
        expect_open_error(*dir, "s2.safetensors", "too short");
    }
    {  // HF's metadata is not checked: the weight map is what loaders use
        const auto dir = with_index("{\"metadata\": {\"total_size\": 1, \"other\": []}, \"weight_map\": "
                                    "{\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\", \"c\": \"s2.safetensors\"}}");
        const auto weights = WeightFiles::open(dir->path);
        BOOST_TEST(weights.tensors().size() == 3u);
        BOOST_TEST(weights.where("c") == dir->file("s2.safetensors"));
    }
}

BOOST_AUTO_TEST_CASE(which_files_a_directory_has) {
    const auto four = sequence(4, 1.0f);
    TempDir none;
    expect_open_error(none, "", "no model.safetensors or model.safetensors.index.json");
    TempDir both;
    save(both.path, {{"a", {4}, four}, {"b", {4}, four}}, {.max_shard_bytes = 16});
    simnpo::model::write_safetensors(both.path / "model.safetensors", {{"a", {4}, four}});
    expect_open_error(both, "", "holds both model.safetensors and model.safetensors.index.json");
    TempDir dangling;
    fs::create_symlink(dangling.path / "elsewhere", dangling.path / "model.safetensors");
    expect_open_error(dangling, "model.safetensors", "cannot open for reading: No such file or directory");
}

BOOST_AUTO_TEST_CASE(llama_fixtures_read_and_rewrite) {
    // The sharded BF16 fixture (written by the Python reference): read, written
    // back as BF16 shards and as F32, and read again, every value the same.
    const fs::path fixture = fs::path(SIMNPO_FIXTURES_DIR) / "llama" / "llama3";
    const auto original = WeightFiles::open(fixture);
    BOOST_TEST(original.where() == (fixture / index_name).string());
    BOOST_TEST(original.where("lm_head.weight") == (fixture / "model-00002-of-00002.safetensors").string());
    std::vector<std::vector<float>> values;
    std::vector<WriteTensor> tensors;
    for (const auto& tensor : original.tensors()) values.push_back(read_all(original, tensor.name));
    for (std::size_t i = 0; i < values.size(); ++i)
        tensors.push_back({original.tensors()[i].name, original.tensors()[i].shape, values[i]});
    for (const WeightsWriteOptions& options :
         {WeightsWriteOptions{.dtype = "BF16", .max_shard_bytes = 20000}, WeightsWriteOptions{}}) {
        TempDir dir;
        save(dir.path, tensors, options);
        const auto again = WeightFiles::open(dir.path);
        BOOST_TEST(again.tensors().size() == original.tensors().size());
        for (std::size_t i = 0; i < values.size(); ++i) {
            BOOST_TEST(again.find(tensors[i].name)->dtype == options.dtype);
            BOOST_TEST(bits_of(read_all(again, tensors[i].name)) == bits_of(values[i]), boost::test_tools::per_element());
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()  // test_weights
