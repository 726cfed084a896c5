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
#include "simnpo/model/gpt.hpp"
#include "simnpo/model/layout.hpp"
#include "simnpo/model/safetensors.hpp"

namespace simnpo::model {

namespace detail {

// Hugging Face's causal-mask buffers, h.N.attn.bias and h.N.attn.masked_bias:
// constants of the architecture, not parameters. (h.N.attn.c_attn.bias is one.)
inline bool is_attention_mask_buffer(std::string_view name) {
    if (!name.starts_with("h.")) return false;
    name.remove_prefix(2);
    std::size_t digits = 0;
    while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9') ++digits;
    if (digits == 0) return false;
    name.remove_prefix(digits);
    return name == ".attn.bias" || name == ".attn.masked_bias";
}

// A tensor's name without Hugging Face's optional "transformer." prefix.
inline std::string_view parameter_name(const SafetensorsTensor& tensor) {
    std::string_view name = tensor.name;
    if (name.starts_with("transformer.")) name.remove_prefix(std::string_view("transformer.").size());
    return name;
}

// The elements of the tensors load reads as parameters: all but the
// causal-mask buffers and the tied lm_head.weight.
inline std::int64_t parameters_held(const SafetensorsFile& file) {
    std::int64_t count = 0;
    for (const auto& tensor : file.tensors()) {
        const std::string_view name = parameter_name(tensor);
        if (name == "lm_head.weight" || is_attention_mask_buffer(name)) continue;
        std::int64_t elements = 1;
        for (const auto extent : tensor.shape) elements *= extent;  // fits: the file holds its bytes
        count += elements;
    }
    return count;
}

// A NaN or infinite weight makes every output NaN: refuse it, naming the tensor.
template <class Scalar>
void check_finite(std::span<const Scalar> values, const std::string& tensor, const std::string& where) {
    for (std::size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
            fail(where, ": tensor '", tensor, "' holds a non-finite value (", values[i], ") at element ", i);
}

}  // namespace detail

// Loads a model directory in Hugging Face's GPT-2 layout (DESIGN §4):
// config.json and model.safetensors (F32, F16, BF16 or F64 tensors), onto
// `backend` (its options: simnpo::cuda{.tf32 = true}, say).
template <class Backend = simnpo::cpu, class Scalar = float>
Gpt<Backend, Scalar> load(const std::filesystem::path& dir, Backend backend = {}) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) fail(dir.string(), ": model directory does not exist");
    if (!std::filesystem::is_directory(dir, ec)) fail(dir.string(), ": is not a directory (a model is a directory)");
    const auto config_path = dir / "config.json";
    const auto weights_path = dir / "model.safetensors";
    if (!std::filesystem::exists(config_path, ec)) fail(config_path.string(), ": not found");
    Config config = read_config(config_path);
    if (!std::filesystem::exists(weights_path, ec)) fail(weights_path.string(), ": not found");
    const auto file = SafetensorsFile::parse(read_file(weights_path), weights_path.string());
    const std::string where = weights_path.string();

    // The sizes in config.json drive every allocation below: check them against
    // the file first, so that a wrong n_layer is an error, not gigabytes.
    const std::int64_t expected = config.parameter_count(config_path.string());
    const std::int64_t held = detail::parameters_held(file);
    if (expected != held)
        fail(config_path.string(), ": says ", expected, " parameters, but ", where, " holds ", held);
    // The file's bytes, the model's parameters and gradients, and the host copy below.
    check_fits_in_memory(config, 3 * sizeof(Scalar), config_path.string());

    std::optional<Gpt<Backend, Scalar>> loaded;
    std::vector<Scalar> host;
    try {
        loaded.emplace(std::move(config), backend);
        host.resize(loaded->layout().total());
    } catch (const std::bad_alloc&) {
        fail(dir.string(), ": out of memory allocating a model of ", expected, " parameters");
    }
    Gpt<Backend, Scalar>& model = *loaded;
    const ParamLayout& layout = model.layout();
    std::vector<bool> seen(layout.slots().size(), false);
    const SafetensorsTensor* lm_head = nullptr;
    for (const auto& tensor : file.tensors()) {
        std::string_view name = detail::parameter_name(tensor);
        if (name == "lm_head.weight") {
            lm_head = &tensor;
            continue;
        }
        if (detail::is_attention_mask_buffer(name)) continue;
        const TensorSlot* slot = layout.find(name);
        if (slot == nullptr) fail(where, ": unknown tensor '", tensor.name, "'");
        const std::size_t index = static_cast<std::size_t>(slot - layout.slots().data());
        if (seen[index]) fail(where, ": tensor '", name, "' appears twice (with and without the 'transformer.' prefix)");
        seen[index] = true;
        if (tensor.shape != slot->shape)
            fail(where, ": tensor '", tensor.name, "' has shape ", detail::shape_string(tensor.shape), ", expected ",
                 detail::shape_string(slot->shape), " from config.json");
        const auto values = std::span<Scalar>(host).subspan(slot->offset, slot->size);
        file.read(tensor, values);
        detail::check_finite<Scalar>(values, tensor.name, where);
    }
    // No tensor is missing: each one read filled a slot of its own, and together they hold every parameter.

    // The LM head is tied to wte: accept only a copy of it, since a different head would be dropped silently.
    if (lm_head != nullptr) {
        const TensorSlot& wte = *layout.find("wte.weight");
        bool tied = lm_head->shape == wte.shape;
        if (tied) {
            std::vector<Scalar> head(wte.size);
            file.read(*lm_head, std::span<Scalar>(head));
            tied = std::memcmp(head.data(), host.data() + wte.offset, wte.size * sizeof(Scalar)) == 0;
        }
        if (!tied) fail(where, ": lm_head.weight differs from wte.weight (untied heads are not supported)");
    }

    copy_to_device(model.backend(), model.params().data(), std::span<const Scalar>(host));
    return std::move(model);
}

// Writes `model`'s files (config.json and an F32 model.safetensors) into a
// directory being written, beside whatever else the caller puts there (a
// tokenizer, a checkpoint's optimizer state).
template <class Backend, class Scalar>
void write_into(DirectoryWriter& out, const Gpt<Backend, Scalar>& model) {
    const ParamLayout& layout = model.layout();
    std::vector<Scalar> host(layout.total());
    copy_to_host(model.backend(), std::span<Scalar>(host), model.params().data());
    std::vector<float> converted;
    std::span<const float> values;
    if constexpr (std::is_same_v<Scalar, float>) {
        values = host;
    } else {
        converted.assign(host.begin(), host.end());
        values = converted;
    }

    std::vector<WriteTensor> tensors;
    tensors.reserve(layout.slots().size());
    for (const auto& slot : layout.slots())
        tensors.push_back({slot.name, slot.shape, values.subspan(slot.offset, slot.size)});
    out.write("model.safetensors", safetensors_bytes(out.directory() / "model.safetensors", tensors));
    out.write("config.json", config_to_json(model.config()).dump(2) + "\n");
}

// Writes `model` to the model directory `dir` as one step (DirectoryWriter):
// a crash, a full disk or a signal leaves the old directory whole or the new
// one, never new weights beside an old config.json.
template <class Backend, class Scalar>
void save(const Gpt<Backend, Scalar>& model, const std::filesystem::path& dir) {
    DirectoryWriter out(dir);
    write_into(out, model);
    out.commit();
}

}  // namespace simnpo::model
