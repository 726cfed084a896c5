#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/model/safetensors.hpp"

// The weights of a model directory in Hugging Face's layout: one
// model.safetensors, or shards model-00001-of-0000N.safetensors ... named by
// model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map":
// {tensor name: shard file name}}).
namespace simnpo::model {

inline constexpr std::string_view weights_file_name = "model.safetensors";
inline constexpr std::string_view weights_index_name = "model.safetensors.index.json";

// An index's weight map: which shard holds each tensor.
struct WeightIndex {
    std::vector<std::string> shards;                           // file names, sorted, each once
    std::vector<std::pair<std::string, std::size_t>> tensors;  // name and index into shards, sorted by name
};

namespace detail {

// A name as JSON writes it, quoted and escaped: names come from JSON and may
// hold newlines, which would break a one-line message.
inline std::string quoted(std::string_view name) { return nlohmann::json(name).dump(); }

// The names a save of weights writes; any of them left from an earlier save
// would contradict the new one (two sources of weights, or a stray shard).
inline bool is_weights_file(std::string_view name) {
    if (name == weights_file_name || name == weights_index_name) return true;
    // model-<digits>-of-<digits>.safetensors
    const auto digits = [&] {
        const std::size_t n = std::min(name.find_first_not_of("0123456789"), name.size());
        name.remove_prefix(n);
        return n > 0;
    };
    if (!name.starts_with("model-")) return false;
    name.remove_prefix(6);
    if (!digits() || !name.starts_with("-of-")) return false;
    name.remove_prefix(4);
    return digits() && name == ".safetensors";
}

// Hugging Face's shard name: numbers of at least five digits, from 1.
inline std::string shard_name(std::size_t shard, std::size_t count) {
    const auto padded = [](std::size_t n) {
        std::string digits = std::to_string(n);
        return std::string(digits.size() < 5 ? 5 - digits.size() : 0, '0') + digits;
    };
    return "model-" + padded(shard + 1) + "-of-" + padded(count) + ".safetensors";
}

}  // namespace detail

// Reads the text of `dir`'s model.safetensors.index.json (errors name that
// file). Each shard must be a file name inside `dir`: no '/', not "." or "..".
// The metadata is not checked: the weight map is all a reader needs.
inline WeightIndex parse_weight_index(std::string_view text, const std::filesystem::path& dir) {
    const std::string where = (dir / weights_index_name).string();
    const nlohmann::json index = parse_json(text, where);
    if (!index.is_object()) fail(where, ": is not a JSON object");
    const auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object()) fail(where, ": 'weight_map' is missing or not an object");
    if (map->empty()) fail(where, ": 'weight_map' names no tensors");

    WeightIndex result;
    for (const auto& [name, shard] : map->items()) {
        if (!shard.is_string())
            fail(where, ": 'weight_map' entry for tensor ", detail::quoted(name), " is ", shard.type_name(),
                 ", not a string (a shard's file name)");
        const auto& file = shard.get_ref<const std::string&>();
        if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
            file.find('\0') != std::string::npos)
            fail(where, ": 'weight_map' maps tensor ", detail::quoted(name), " to ", detail::quoted(file),
                 ", which is not a file name inside the model directory");
        result.shards.push_back(file);
    }
    std::sort(result.shards.begin(), result.shards.end());
    result.shards.erase(std::unique(result.shards.begin(), result.shards.end()), result.shards.end());
    for (const auto& [name, shard] : map->items()) {  // a std::map: in name order
        const auto at = std::lower_bound(result.shards.begin(), result.shards.end(), shard.get_ref<const std::string&>());
        result.tensors.emplace_back(name, static_cast<std::size_t>(at - result.shards.begin()));
    }
    return result;
}

// A tensor of a model directory, and which of its files holds it.
struct WeightTensor : SafetensorsTensor {
    std::size_t file = 0;  // index into WeightFiles' files, in file name order
};

// The tensors of a model directory's weight files, each file mapped once
// (SafetensorsFile::open), read with conversion on demand. The index is used
// only when model.safetensors is absent; both present is an error, since one
// of them is stale.
class WeightFiles {
public:
    // Indexes larger than this are refused unread: real ones are kilobytes.
    static constexpr std::uintmax_t max_index_bytes = 100'000'000;

    static WeightFiles open(const std::filesystem::path& dir) {
        namespace fs = std::filesystem;
        std::error_code ec;
        const fs::path single = dir / weights_file_name, index_path = dir / weights_index_name;
        // symlink_status: a dangling link is present, and then fails to open with its cause.
        const bool has_single = fs::exists(fs::symlink_status(single, ec));
        const bool has_index = fs::exists(fs::symlink_status(index_path, ec));
        if (has_single && has_index)
            fail(dir.string(), ": holds both ", weights_file_name, " and ", weights_index_name,
                 " (which one is current cannot be told: remove the stale one)");
        if (!has_single && !has_index) fail(dir.string(), ": no ", weights_file_name, " or ", weights_index_name);

        WeightFiles weights;
        if (has_single) {
            weights.where_ = single.string();
            weights.files_.push_back(SafetensorsFile::open(single));
            weights.collect();
            return weights;
        }
        weights.where_ = index_path.string();
        if (fs::is_regular_file(index_path, ec) && fs::file_size(index_path, ec) > max_index_bytes)
            fail(weights.where_, ": larger than the limit of ", max_index_bytes, " bytes for an index");
        const WeightIndex index = parse_weight_index(read_file(index_path), dir);
        for (const auto& shard : index.shards) {
            const fs::path path = dir / shard;
            if (!fs::exists(fs::symlink_status(path, ec)))
                fail(path.string(), ": not found (", weights.where_, " names it as a shard)");
            weights.files_.push_back(SafetensorsFile::open(path));
        }
        weights.collect();
        weights.check_against(index);
        return weights;
    }

    // Every tensor: file by file, in the order of its data within each.
    const std::vector<WeightTensor>& tensors() const { return tensors_; }

    const WeightTensor* find(std::string_view name) const {
        const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                         [&](std::size_t i, std::string_view key) { return tensors_[i].name < key; });
        return it != by_name_.end() && tensors_[*it].name == name ? &tensors_[*it] : nullptr;
    }

    // Converts `tensor`'s values (F32, F16, BF16 or F64) to Scalar, in row-major order.
    template <class Scalar>
    void read(const WeightTensor& tensor, std::span<Scalar> out) const {
        if (tensor.file >= files_.size()) fail(where_, ": tensor '", tensor.name, "' is not from these files");
        files_[tensor.file].read(tensor, out);
    }

    template <class Scalar>
    void read(std::string_view name, std::span<Scalar> out) const {
        const WeightTensor* tensor = find(name);
        if (tensor == nullptr) fail(where_, ": no tensor ", detail::quoted(name));
        read(*tensor, out);
    }

    // The path of the file holding tensor `name`, for messages; where() when there is none.
    const std::string& where(std::string_view name) const {
        const WeightTensor* tensor = find(name);
        return tensor != nullptr ? files_[tensor->file].where() : where_;
    }

    // The path of model.safetensors, or of the index.
    const std::string& where() const { return where_; }

private:
    WeightFiles() = default;

    // Lists the files' tensors and indexes them by name; a name in two shards is an error.
    void collect() {
        for (std::size_t file = 0; file < files_.size(); ++file)
            for (const auto& tensor : files_[file].tensors()) tensors_.push_back({tensor, file});
        by_name_.resize(tensors_.size());
        for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
        std::sort(by_name_.begin(), by_name_.end(), [&](std::size_t a, std::size_t b) {
            return std::tie(tensors_[a].name, tensors_[a].file) < std::tie(tensors_[b].name, tensors_[b].file);
        });
        for (std::size_t i = 1; i < by_name_.size(); ++i) {
            const WeightTensor &first = tensors_[by_name_[i - 1]], &second = tensors_[by_name_[i]];
            if (first.name == second.name)
                fail(files_[second.file].where(), ": holds tensor ", detail::quoted(second.name), ", which ",
                     files_[first.file].where(), " holds too");
        }
    }

    // Each tensor is where the index says, and the index lists nothing more.
    void check_against(const WeightIndex& index) const {
        for (const auto& tensor : tensors_) {
            const auto it = std::lower_bound(index.tensors.begin(), index.tensors.end(), tensor.name,
                                             [](const auto& entry, const std::string& key) { return entry.first < key; });
            if (it == index.tensors.end() || it->first != tensor.name)
                fail(files_[tensor.file].where(), ": holds tensor ", detail::quoted(tensor.name), ", which ", where_,
                     " does not list");
            if (it->second != tensor.file)
                fail(files_[tensor.file].where(), ": holds tensor ", detail::quoted(tensor.name), ", which ", where_,
                     " maps to ", index.shards[it->second]);
        }
        for (const auto& [name, shard] : index.tensors)
            if (find(name) == nullptr)
                fail(files_[shard].where(), ": does not hold tensor ", detail::quoted(name), ", which ", where_,
                     " maps to it");
    }

    std::string where_;
    std::vector<SafetensorsFile> files_;  // in shard name order, as the index lists them
    std::vector<WeightTensor> tensors_;
    std::vector<std::size_t> by_name_;  // indices into tensors_, sorted by name
};

// How write_weights stores a model's tensors.
struct WeightsWriteOptions {
    std::string dtype = "F32";  // every tensor's: F32 or BF16 (each WriteTensor's own dtype is not used)
    // A shard's data bytes (headers not counted, as Hugging Face counts them);
    // a tensor larger than this gets a shard of its own.
    std::uint64_t max_shard_bytes = 5'000'000'000;
};

// Writes `tensors`, in their order, into the directory being written: as
// model.safetensors when they fit one shard, else as shards
// model-00001-of-0000N.safetensors ... with model.safetensors.index.json
// (Hugging Face's layout; a tensor is never split, and a new shard starts when
// the next tensor would take the current one past max_shard_bytes). Weight
// files of an earlier save in the directory are left out of the new one.
// Only one shard's bytes are in memory at a time.
inline void write_weights(DirectoryWriter& out, const std::vector<WriteTensor>& tensors,
                          const WeightsWriteOptions& options = {}) {
    namespace fs = std::filesystem;
    const fs::path& dir = out.directory();
    std::vector<WriteTensor> typed(tensors);  // names, shapes and spans: not the values
    std::vector<std::uint64_t> sizes;
    std::uint64_t total_size = 0;
    for (auto& tensor : typed) {
        tensor.dtype = options.dtype;
        sizes.push_back(detail::write_size(dir, tensor));
        total_size += sizes.back();
    }
    std::vector<std::string_view> names;
    for (const auto& tensor : typed) names.push_back(tensor.name);
    std::sort(names.begin(), names.end());
    if (const auto twice = std::adjacent_find(names.begin(), names.end()); twice != names.end())
        fail(dir.string(), ": tensor name ", detail::quoted(*twice), " is used twice");

    std::vector<std::size_t> starts;  // the first tensor of each shard
    std::uint64_t filled = 0;
    for (std::size_t i = 0; i < typed.size(); ++i) {
        if (starts.empty() || (i > starts.back() && filled + sizes[i] > options.max_shard_bytes)) {
            starts.push_back(i);
            filled = 0;
        }
        filled += sizes[i];
    }
    if (starts.empty()) starts.push_back(0);  // no tensors: one empty model.safetensors
    starts.push_back(typed.size());

    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (detail::is_weights_file(entry.path().filename().string())) out.remove(entry.path().filename().string());

    const std::size_t count = starts.size() - 1;
    if (count == 1) {
        const std::string name(weights_file_name);
        out.write(name, safetensors_bytes(dir / name, typed));
        return;
    }
    nlohmann::json weight_map = nlohmann::json::object();  // a std::map: written sorted by name
    for (std::size_t shard = 0; shard < count; ++shard) {
        const std::string name = detail::shard_name(shard, count);
        const std::vector<WriteTensor> part(typed.begin() + static_cast<std::ptrdiff_t>(starts[shard]),
                                            typed.begin() + static_cast<std::ptrdiff_t>(starts[shard + 1]));
        out.write(name, safetensors_bytes(dir / name, part));
        for (const auto& tensor : part) weight_map[tensor.name] = name;
    }
    const nlohmann::json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
    out.write(std::string(weights_index_name), index.dump(2) + "\n");
}

}  // namespace simnpo::model
