#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/model/config.hpp"
#include "simnpo/model/causal_lm.hpp"
#include "simnpo/model/layout.hpp"
#include "simnpo/model/safetensors.hpp"
#include "simnpo/model/weights.hpp"

namespace simnpo::model {

namespace detail {

// A NaN or infinite weight makes every output NaN: refuse it, naming the tensor.
template <class Scalar>
void check_finite(std::span<const Scalar> values, const std::string& tensor, const std::string& where) {
    for (std::size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
            fail(where, ": tensor '", tensor, "' holds a non-finite value (", values[i], ") at element ", i);
}

}  // namespace detail

// The `model_type` of a model directory's config.json ("gpt2" when the key is
// absent: GPT-2 directories written before families had none).
inline std::string model_type(const std::filesystem::path& dir) {
    const auto path = dir / "config.json";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail(path.string(), ": not found");
    const auto json = parse_json(read_file(path), path.string());
    if (!json.is_object()) fail(path.string(), ": expected a JSON object");
    const auto it = json.find("model_type");
    if (it == json.end()) return "gpt2";
    if (!it->is_string()) fail(path.string(), ": 'model_type' must be a string");
    return it->get<std::string>();
}

// Loads a model directory in Hugging Face's layout for `Model`'s family
// (DESIGN §4): config.json and model.safetensors, or the shards that
// model.safetensors.index.json names (F32, F16, BF16 or F64 tensors), onto
// `backend` (its options: simnpo::cuda{.tf32 = true}, say). The files are
// mapped, not read: each tensor is converted straight into the parameter slab
// on the CPU, or through one tensor's host buffer on a GPU, so that a model
// never passes through a second full copy in memory.
template <CausalModel Model>
Model load(const std::filesystem::path& dir, typename Model::backend_type backend = {}) {
    using Family = typename Model::family_type;
    using Scalar = typename Model::scalar_type;
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) fail(dir.string(), ": model directory does not exist");
    if (!std::filesystem::is_directory(dir, ec)) fail(dir.string(), ": is not a directory (a model is a directory)");
    const auto config_path = dir / "config.json";
    if (const auto type = model_type(dir); !Family::handles(type))
        fail(config_path.string(), ": 'model_type' '", type, "' is not a model of the ", Family::model_type,
             " family, which this program loads here");
    auto config = Family::read_config(config_path);
    const auto files = WeightFiles::open(dir);

    // The sizes in config.json drive every allocation below: check them against
    // the files first, so that a wrong n_layer is an error, not gigabytes (the
    // count is computed without laying anything out).
    const std::int64_t expected = config.parameter_count(config_path.string());
    // A tied head (GPT-2's lm_head.weight, a tied Llama's) is no parameter of its own.
    const std::string tied_head_name{Model::layout_type::tied_head_name(config)};
    const auto is_tied_head = [&](std::string_view name) { return !tied_head_name.empty() && name == tied_head_name; };
    std::int64_t held = 0;
    for (const auto& tensor : files.tensors()) {
        if (Family::skipped_tensor(tensor.name) || is_tied_head(Family::canonical_name(tensor.name))) continue;
        std::int64_t elements = 1;
        for (const auto extent : tensor.shape) elements *= extent;  // fits: the file holds its bytes
        held += elements;
    }
    if (expected != held)
        fail(config_path.string(), ": says ", expected, " parameters, but ", files.where(), " holds ", held);
    // The model's parameters and gradients.
    check_fits_in_memory(config, 2 * sizeof(Scalar), config_path.string());

    std::optional<Model> loaded;
    try {
        loaded.emplace(std::move(config), backend);
    } catch (const std::bad_alloc&) {
        fail(dir.string(), ": out of memory allocating a model of ", expected, " parameters");
    }
    Model& model = *loaded;
    const auto& layout = model.layout();
    constexpr bool on_host = std::is_same_v<typename Model::backend_type, simnpo::cpu>;
    std::vector<Scalar> staging;  // one tensor, on its way to a GPU
    // Reads `tensor` into the slot's place in the parameter slab; returns the values as read.
    const auto read_into = [&](const WeightTensor& tensor, const TensorSlot& slot) {
        std::span<Scalar> values;
        if constexpr (on_host) {
            values = std::span<Scalar>(model.params().data() + slot.offset, slot.size);
        } else {
            staging.resize(slot.size);
            values = staging;
        }
        files.read(tensor, values);
        detail::check_finite<Scalar>(values, tensor.name, files.where(tensor.name));
        if constexpr (!on_host) copy_to_device(model.backend(), model.params().data() + slot.offset, std::span<const Scalar>(values));
    };
    std::vector<bool> seen(layout.slots().size(), false);
    const WeightTensor* tied_head = nullptr;
    for (const auto& tensor : files.tensors()) {
        if (Family::skipped_tensor(tensor.name)) continue;
        const std::string_view name = Family::canonical_name(tensor.name);
        const std::string& where = files.where(tensor.name);
        if (is_tied_head(name)) {
            tied_head = &tensor;
            continue;
        }
        const TensorSlot* slot = layout.find(name);
        if (slot == nullptr) fail(where, ": unknown tensor '", tensor.name, "'");
        const auto index = static_cast<std::size_t>(slot - layout.slots().data());
        if (seen[index]) fail(where, ": tensor '", name, "' appears twice (under two spellings of its name)");
        seen[index] = true;
        if (tensor.shape != slot->shape)
            fail(where, ": tensor '", tensor.name, "' has shape ", detail::shape_string(tensor.shape), ", expected ",
                 detail::shape_string(slot->shape), " from config.json");
        read_into(tensor, *slot);
    }
    // No tensor is missing: each one read filled a slot of its own, and together they hold every parameter.

    // A tied head may be stored as a copy of the embedding: accept only an
    // exact copy, since a different head would be dropped silently.
    if (tied_head != nullptr) {
        const TensorSlot& embedding = layout.slots()[layout.embedding_slot()];
        bool tied = tied_head->shape == embedding.shape;
        if (tied) {
            std::vector<Scalar> head(embedding.size), stored(embedding.size);
            files.read(*tied_head, std::span<Scalar>(head));
            copy_to_host(model.backend(), std::span<Scalar>(stored), model.params().data() + embedding.offset);
            tied = std::memcmp(head.data(), stored.data(), embedding.size * sizeof(Scalar)) == 0;
        }
        if (!tied)
            fail(files.where(tied_head->name), ": ", tied_head_name, " differs from ", embedding.name,
                 " (the model's head is tied to its embedding)");
    }
    return std::move(model);
}

// Writes `model`'s files (config.json and its weights: model.safetensors, or
// shards with their index above options.max_shard_bytes; F32 or BF16 as
// options.dtype asks) into a directory being written, beside whatever else
// the caller puts there (a tokenizer, a checkpoint's optimizer state).
template <CausalModel Model>
void write_into(DirectoryWriter& out, const Model& model, const WeightsWriteOptions& options = {}) {
    using Scalar = typename Model::scalar_type;
    const auto& layout = model.layout();
    // A float CPU model's tensors are written from the slab itself; others through one float copy.
    std::vector<float> host;
    std::span<const float> values;
    if constexpr (std::is_same_v<Scalar, float> && std::is_same_v<typename Model::backend_type, simnpo::cpu>) {
        values = std::span<const float>(model.params().data(), model.params().size());
    } else {
        std::vector<Scalar> copied(layout.total());
        copy_to_host(model.backend(), std::span<Scalar>(copied), model.params().data());
        host.assign(copied.begin(), copied.end());
        values = host;
    }
    std::vector<WriteTensor> tensors;
    tensors.reserve(layout.slots().size());
    for (const auto& slot : layout.slots())
        tensors.push_back({slot.name, slot.shape, values.subspan(slot.offset, slot.size)});
    write_weights(out, tensors, options);
    out.write("config.json", Model::family_type::config_json(model.config()).dump(2) + "\n");
}

// Writes `model` to the model directory `dir` as one step (DirectoryWriter):
// a crash, a full disk or a signal leaves the old directory whole or the new
// one, never new weights beside an old config.json.
template <CausalModel Model>
void save(const Model& model, const std::filesystem::path& dir, const WeightsWriteOptions& options = {}) {
    DirectoryWriter out(dir);
    write_into(out, model, options);
    out.commit();
}

}  // namespace simnpo::model
